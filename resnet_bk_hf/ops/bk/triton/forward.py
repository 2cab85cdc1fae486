"""The forward of the Triton BK scan (version 4: sub-chunks as matrices; docs/design.md 2.3, 2.6).

Five launches, every one parallel over chunks of L = block_t positions, b * h and channel blocks:

  1. `_g_maps_chunked_kernel` ("g_maps"): per chunk, the product of its Moebius matrices (complex_math.py),
     as NS = L / block_sub sub-chunk products, each an associative scan on an (LS, K) tile.
  2. `_g_scan_kernel` ("g_scan", chunk_scans.py): g at every chunk start.
  3. `_y_chunk_mm_kernel` MODE 0 ("y_maps"): per chunk and channel block, the chunk's affine map of y.
  4. `_affine_scan_kernel` ("y_scan", chunk_scans.py): y at every chunk start (chunk-boundary states only).
  5. `_y_chunk_mm_kernel` MODE 1 ("output"): g and y inside the chunk again from the chunk-start states; writes
     o. Reads a, hop, u, C; writes o. With the factored W (below) this is two launches, "output" (WF 1) and
     "output_fallback" (WF 2).
Returns o and the chunk-boundary states Gs, Ys that the backward restarts from.

The in-chunk passes walk a chunk as sub-chunks of LS = block_sub positions in the manner of Mamba-2's SSD.
Per sub-chunk and shift k, with c_t = -hop_t g_t and T[t, s] = prod_{s < r <= t} c_r:

    y_t = Tinc(t) y_in + sum_{s <= t} T[t, s] g_s u_s,          Tinc(t) = prod_{r <= t} c_r
    o_t = sum_k Re(conj(C_t) y_t) = (W u)_t + Re(Q_t y_in),     W[t, s] = sum_k Re(conj(C_t) T[t, s] g_s)

so the output is o = W u + Re(Q y_in) and the state update y <- Tinc y + R^T u, both tl.dot. T is never
formed as a quotient of running products (they underflow at |a| ~ 1e3): its magnitude is exp2 of a difference
of running sums of log2|c| and its phase a product of unit phases (`_decay_cum`), so every entry is a product
of the factors between s and t (to the rounding of the running log sums). Where those sums span at most
`ScanConfig.w_factor_range` octaves in a sub-chunk, W is one dot of row factors 2^(la_t - m) and 2^(m - la_s)
(`_w_factored`); the output pass then runs twice: factored everywhere, then entry by entry (`_w_elementwise`)
on the chunks where the factors would leave float32's range (|a| ~ 1e3, hop near 0).

tl.dot's precision (`dot_precision`): ScanConfig.dot_precision, "auto" = "tf32x3" for float32 IO (three TF32
products: the error of float32 FMA against float64 on an H200, 13% faster than "ieee"), "tf32" for bf16 /
float16 IO (whose own rounding, ~4e-3, is the larger).
"""
from __future__ import annotations

import torch

try:  # transformers' check_imports (remote code, see remote_code.py) skips imports inside try blocks
    import triton
    import triton.language as tl
except ImportError:
    raise

from ..scan_config import ScanConfig, check_sub_chunks, next_pow2
from .chunk_scans import affine_scan, g_scan
from .complex_math import _cmul, _mobius_apply, _mobius_combine, _mobius_scan, _row, _step
from .launches import empty, empty_like, launch

# ----------------------------------------------------------------------------- index helpers


@triton.jit
def _chunk_program(N, H, K, BK: tl.constexpr):
    """For a program on grid axis 1 = b * H + h: that index, h, the offset of (b, 0, h) in (B, N, H) arrays,
    the shift lanes and their mask."""
    bh = tl.program_id(1)
    h = bh % H
    ab_base = (bh // H).to(tl.int64) * N * H + h
    kk = tl.arange(0, BK)
    return bh, h, ab_base, kk, kk < K


@triton.jit
def _shift_rows(z_re_ptr, z_im_ptr, h, K, kk, km):
    """The shifts z of head h as (1, BK) rows (padding lanes: z = i, harmless). Not folded into the index helpers
    above: torch.compile's Triton mutation analysis counts every pointer passed to a helper whose results address
    a store as written, and would then see z as mutated (which stops mode="reduce-overhead" from using CUDA
    graphs; tests/ops/test_triton_compile.py checks it)."""
    zr = tl.load(z_re_ptr + h * K + kk, mask=km, other=0.0).to(tl.float32)[None, :]
    zi = tl.load(z_im_ptr + h * K + kk, mask=km, other=1.0).to(tl.float32)[None, :]
    return zr, zi


@triton.jit
def _sub_chunk_program(N, H, K, P, BK: tl.constexpr, BP: tl.constexpr, LS: tl.constexpr):
    """`_chunk_program` for the sub-chunk kernels on grid (chunk, b * H + h, channel block): also the chunk and
    channel-block indices, this block's channels and their mask, and the row indices of a sub-chunk."""
    bh, h, ab_base, kk, km = _chunk_program(N, H, K, BK)
    pb = tl.program_id(2)
    pp = pb * BP + tl.arange(0, BP)
    return tl.program_id(0), pb, bh, h, ab_base, kk, km, pp, pp < P, tl.arange(0, LS)


@triton.jit
def _chunk_start_g(gs_ptr, bh, nC, pid_c, K, kk, km):
    """g just before the chunk pid_c (Gs: (BH, nC + 1, K, 2)) as (1, BK) rows."""
    gbase = (bh * (nC + 1) + pid_c).to(tl.int64) * K * 2
    g0r = tl.load(gs_ptr + gbase + kk * 2, mask=km, other=0.0)[None, :]
    g0i = tl.load(gs_ptr + gbase + kk * 2 + 1, mask=km, other=0.0)[None, :]
    return g0r, g0i


@triton.jit
def _chunk_start_y(ys_ptr, bh, nC, pid_c, K, P, kk, pp, kp_mask, MODE: tl.constexpr, BK: tl.constexpr,
                   BP: tl.constexpr):
    """y just before the chunk (Ys: (BH, nC + 1, K, P, 2)) as (BK, BP) tiles in MODE 1; zero otherwise (maps)."""
    if MODE != 1:
        yr = tl.zeros([BK, BP], dtype=tl.float32)
        yi = tl.zeros([BK, BP], dtype=tl.float32)
    else:
        yoff = ((bh * (nC + 1) + pid_c).to(tl.int64) * K + kk[:, None]) * P * 2 + pp[None, :] * 2
        yr = tl.load(ys_ptr + yoff, mask=kp_mask, other=0.0)
        yi = tl.load(ys_ptr + yoff + 1, mask=kp_mask, other=0.0)
    return yr, yi


@triton.jit
def _store_chunk_matrix(mc_ptr, bh, nC, pid_c, K, kk, km, m00r, m00i, m01r, m01i, m10r, m10i, m11r, m11i):
    """A chunk's Moebius product (K lanes) into Mc (BH, nC, K, 8): 00, 01, 10, 11 entries, (re, im) each."""
    out = mc_ptr + (bh * nC + pid_c).to(tl.int64) * K * 8 + kk * 8
    tl.store(out + 0, m00r, mask=km)
    tl.store(out + 1, m00i, mask=km)
    tl.store(out + 2, m01r, mask=km)
    tl.store(out + 3, m01i, mask=km)
    tl.store(out + 4, m10r, mask=km)
    tl.store(out + 5, m10i, mask=km)
    tl.store(out + 6, m11r, mask=km)
    tl.store(out + 7, m11i, mask=km)


# ----------------------------------------------------------------------------- sub-chunk algebra


@triton.jit
def _g_tile(a_ptr, hop_ptr, ab_base, H, N, t0, zr, zi, g0r, g0i, L: tl.constexpr, BK: tl.constexpr):
    """g_t as an (L, BK) tile for t = t0 .. t0 + L - 1 from g_{t0 - 1} = g0 ((1, BK)), zero past N;
    also hop_t ((L, 1)) and the valid rows ((L, 1))."""
    m00r, m00i, m01r, m01i, m10r, m10i, m11r, m11i = _mobius_scan(a_ptr, hop_ptr, ab_base, H, N, t0, zr, zi,
                                                                  L, BK, 1)
    gpr, gpi = _mobius_apply(m00r, m00i, m01r, m01i, m10r, m10i, m11r, m11i, g0r, g0i)
    t = t0 + tl.arange(0, L)
    vt = (t < N)[:, None]
    t64 = tl.where(t < N, t, 0).to(tl.int64)
    a_t = tl.load(a_ptr + ab_base + t64 * H, mask=t < N, other=0.0).to(tl.float32)[:, None]
    b_t = tl.load(hop_ptr + ab_base + t64 * H, mask=t < N, other=0.0).to(tl.float32)[:, None]
    gr, gi = _step(a_t, b_t, zr, zi, gpr, gpi)
    return tl.where(vt, gr, 0.0), tl.where(vt, gi, 0.0), b_t, vt


@triton.jit
def _decay_cum(gr, gi, b_t, vt):
    """For c_t = -hop_t g_t ((L, BK); 1 on rows past N): the running sum la of log2|c| and the running product
    (phr, phi) of the unit phases c / |c| down the rows; also each row's own lm = log2|c| and phase (pr, pi).
    |c| below 2^-100 (hop underflowed to 0, or nearly) counts as 2^-100 with its phase (1 for c = 0): the
    output moves by < 1e-30 relative, products through it still vanish in float32, and no 0 * inf appears."""
    cr = tl.where(vt, -b_t * gr, 1.0)
    ci = tl.where(vt, -b_t * gi, 0.0)
    mag = tl.sqrt(cr * cr + ci * ci)
    nz = mag > 0.0
    safe = tl.where(nz, mag, 1.0)
    lm = tl.where(nz, tl.maximum(tl.log2(safe), -100.0), -100.0)
    pr = tl.where(nz, cr / safe, 1.0)
    pi = tl.where(nz, ci / safe, 0.0)
    la = tl.cumsum(lm, axis=0)
    phr, phi = tl.associative_scan((pr, pi), 0, _cmul)
    return la, phr, phi, lm, pr, pi


@triton.jit
def _col(x, kk2, k):
    return tl.sum(tl.where(kk2 == k, x, 0.0), axis=1)


@triton.jit
def _sub_chunk(a_ptr, hop_ptr, ab_base, H, N, t0, zr, zi, g0r, g0i, LS: tl.constexpr, BK: tl.constexpr):
    """Everything per shift of the sub-chunk t0 .. t0 + LS - 1 from g_{t0 - 1}: g, hop, the valid rows,
    `_decay_cum`'s running sums and phases, the column factor V = conj(PH) g, and the last row's la, PH."""
    gr, gi, b_t, vt = _g_tile(a_ptr, hop_ptr, ab_base, H, N, t0, zr, zi, g0r, g0i, LS, BK)
    la, phr, phi, lm, pr, pi = _decay_cum(gr, gi, b_t, vt)
    vr = phr * gr + phi * gi
    vi = phr * gi - phi * gr
    rows2 = tl.arange(0, LS)[:, None]
    return (gr, gi, b_t, vt, la, phr, phi, lm, pr, pi, vr, vi,
            _row(la, rows2, LS - 1), _row(phr, rows2, LS - 1), _row(phi, rows2, LS - 1))


@triton.jit
def _kcat_rows(xr, xi, LS: tl.constexpr, BK: tl.constexpr):
    """(LS, BK) complex -> (LS, 2 BK) real, columns (k, re / im)."""
    return tl.reshape(tl.join(xr, xi), [LS, 2 * BK])


@triton.jit
def _kcat_state(yr, yi, BK: tl.constexpr, BP: tl.constexpr):
    """(BK, BP) complex state -> (2 BK, BP) real, rows (k, re / im)."""
    return tl.reshape(tl.permute(tl.join(yr, yi), [0, 2, 1]), [2 * BK, BP])


@triton.jit
def _kdot_t(xr, xi, m, LS: tl.constexpr, BK: tl.constexpr, BP: tl.constexpr, PREC: tl.constexpr):
    """sum_t x[t, k] m[t, p] for complex x (LS, BK) and real m (LS, BP): (BK, BP) re, im."""
    xcat = tl.reshape(tl.permute(tl.join(xr, xi), [1, 2, 0]), [2 * BK, LS])
    zz = tl.dot(xcat, m, input_precision=PREC)
    return tl.split(tl.permute(tl.reshape(zz, [BK, 2, BP]), [0, 2, 1]))


@triton.jit
def _state_step(yr, yi, u, la, vr, vi, la_end, pe_r, pe_i, LS: tl.constexpr, BK: tl.constexpr, BP: tl.constexpr,
                PREC: tl.constexpr):
    """y <- Tinc(end) y + sum_s T[end, s] g_s u_s over one sub-chunk; also R_s = T[end, s] g_s and Tinc(end)."""
    sc = tl.exp2(la_end[None, :] - la)
    rr = sc * (pe_r[None, :] * vr - pe_i[None, :] * vi)
    ri = sc * (pe_r[None, :] * vi + pe_i[None, :] * vr)
    zzr, zzi = _kdot_t(rr, ri, u, LS, BK, BP, PREC)
    te = tl.exp2(la_end)
    ter = te * pe_r
    tei = te * pe_i
    return ter[:, None] * yr - tei[:, None] * yi + zzr, ter[:, None] * yi + tei[:, None] * yr + zzi, rr, ri, ter, tei


@triton.jit
def _w_elementwise(la, qtr, qti, vr, vi, kk, K, lower, LS: tl.constexpr):
    """W[t, s] = sum_k exp2(la_t - la_s) Re(q_t v_s) for s <= t (q = conj(C) PH, v = conj(PH) g; (LS, BK) each),
    every entry from its own exponent difference: exact for any range of la."""
    kk2 = kk[None, :]
    w = tl.zeros([LS, LS], dtype=tl.float32)
    for k in range(0, K):
        la_k = _col(la, kk2, k)
        qr_k = _col(qtr, kk2, k)
        qi_k = _col(qti, kk2, k)
        vr_k = _col(vr, kk2, k)
        vi_k = _col(vi, kk2, k)
        e = tl.exp2(tl.where(lower, la_k[:, None] - la_k[None, :], float("-inf")))
        w += e * (qr_k[:, None] * vr_k[None, :] - qi_k[:, None] * vi_k[None, :])
    return w


@triton.jit
def _w_factor_fits(la, km, WF_RANGE: tl.constexpr):
    """True when, for every shift, la spans at most WF_RANGE octaves over the sub-chunk's rows (padding shifts
    left out), so that `_w_factored`'s factors 2^(la_t - m), 2^(m - la_s) stay within 2^(+-WF_RANGE / 2)."""
    lam = tl.where(km[None, :], la, 0.0)
    return tl.max(tl.max(lam, axis=0) - tl.min(lam, axis=0), axis=0) <= WF_RANGE


@triton.jit
def _w_factored(la, qtr, qti, vr, vi, km, lower, LS: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr):
    """The same W as `_w_elementwise` as one (LS, 2 BK) x (2 BK, LS) tl.dot, as Mamba-2's SSD does:
    exp2(la_t - la_s) q_t v_s = (q_t 2^(la_t - m)) (v_s 2^(m - la_s)) with m the middle of la's range per shift.
    Only when `_w_factor_fits` (else a factor could under- or overflow where the product does not)."""
    lam = tl.where(km[None, :], la, 0.0)
    mid = 0.5 * (tl.max(lam, axis=0) + tl.min(lam, axis=0))
    ea = tl.exp2(lam - mid[None, :])
    eb = tl.exp2(mid[None, :] - lam)
    acat = _kcat_rows(qtr * ea, -(qti * ea), LS, BK)
    bcat = _kcat_rows(vr * eb, vi * eb, LS, BK)
    w = tl.dot(acat, tl.trans(bcat), input_precision=PREC)
    return tl.where(lower, w, 0.0)


# ----------------------------------------------------------------------------- kernels


@triton.jit
def _g_maps_chunked_kernel(a_ptr, hop_ptr, z_re_ptr, z_im_ptr, mc_ptr, N, H, K, nC,
                           LS: tl.constexpr, NS: tl.constexpr, BK: tl.constexpr):
    """The product M_last ... M_first of the chunk's Moebius matrices (up to the projective scale) into Mc
    (BH, nC, K, 8), for chunks of LS * NS positions: the product of NS sub-chunk products, each an associative scan on an (LS, BK) tile, so no load waits on the step before."""
    pid_c = tl.program_id(0)
    bh, h, ab_base, kk, km = _chunk_program(N, H, K, BK)
    zr, zi = _shift_rows(z_re_ptr, z_im_ptr, h, K, kk, km)
    rows2 = tl.arange(0, LS)[:, None]
    zeros = tl.zeros([BK], dtype=tl.float32)
    m00r, m00i, m01r, m01i = zeros + 1.0, zeros, zeros, zeros
    m10r, m10i, m11r, m11i = zeros, zeros, zeros + 1.0, zeros
    for j in tl.static_range(NS):
        s00r, s00i, s01r, s01i, s10r, s10i, s11r, s11i = _mobius_scan(
            a_ptr, hop_ptr, ab_base, H, N, pid_c * (LS * NS) + j * LS, zr, zi, LS, BK, 0)
        m00r, m00i, m01r, m01i, m10r, m10i, m11r, m11i = _mobius_combine(
            m00r, m00i, m01r, m01i, m10r, m10i, m11r, m11i,
            _row(s00r, rows2, LS - 1), _row(s00i, rows2, LS - 1), _row(s01r, rows2, LS - 1),
            _row(s01i, rows2, LS - 1), _row(s10r, rows2, LS - 1), _row(s10i, rows2, LS - 1),
            _row(s11r, rows2, LS - 1), _row(s11i, rows2, LS - 1))
    _store_chunk_matrix(mc_ptr, bh, nC, pid_c, K, kk, km, m00r, m00i, m01r, m01i, m10r, m10i, m11r, m11i)


@triton.jit
def _y_chunk_mm_kernel(a_ptr, hop_ptr, u_ptr, c_re_ptr, c_im_ptr, z_re_ptr, z_im_ptr, gs_ptr, ys_ptr,
                       ay_ptr, by_ptr, o_ptr, wf_ptr, N, H, K, P, nC,
                       LS: tl.constexpr, NS: tl.constexpr, BK: tl.constexpr, BP: tl.constexpr,
                       MODE: tl.constexpr, PREC: tl.constexpr,
                       WF: tl.constexpr = 0, WF_RANGE: tl.constexpr = 0.0):
    """MODE 0: the chunk's affine map of y (A: (BH, nC, K, 2), B: (BH, nC, K, P, 2)); MODE 1: write o, from the
    chunk-start y (Ys). For a chunk of NS sub-chunks of LS positions, each done with matrices (module docstring).
    Carried from one sub-chunk to the next in registers: g (K) and y (K x BP complex). W in MODE 1: WF 0 = entry
    by entry (`_w_elementwise`); WF 1 = one dot of factors (`_w_factored`) in every sub-chunk, and
    wf_ptr[bh, chunk] = 1 where some sub-chunk's log-decays span more than WF_RANGE octaves (its o is then
    wrong); WF 2 = the chunks so marked again, entry by entry, the rest left alone. One kernel with a run-time
    branch between the two forms needs ~90 more registers and spills (measured on an H200)."""
    pid_c, pb, bh, h, ab_base, kk, km, pp, pm, rows = _sub_chunk_program(N, H, K, P, BK, BP, LS)
    zr, zi = _shift_rows(z_re_ptr, z_im_ptr, h, K, kk, km)
    kk2 = kk[None, :]
    rows2 = rows[:, None]
    lower = rows2 >= rows[None, :]                   # (t, s) with s <= t
    g0r, g0i = _chunk_start_g(gs_ptr, bh, nC, pid_c, K, kk, km)
    kp_mask = km[:, None] & pm[None, :]
    ar = tl.zeros([BK], dtype=tl.float32) + 1.0
    ai = tl.zeros([BK], dtype=tl.float32)
    yr, yi = _chunk_start_y(ys_ptr, bh, nC, pid_c, K, P, kk, pp, kp_mask, MODE, BK, BP)
    c_start = pid_c * (LS * NS)
    n_sub = tl.minimum(NS, (N - c_start + LS - 1) // LS)      # sub-chunks past N are never visited
    if WF == 2:
        n_sub = tl.where(tl.load(wf_ptr + bh * nC + pid_c) != 0, n_sub, 0)
    unfit = tl.full([], 0, tl.int32)
    for j in range(0, n_sub):
        t0 = c_start + j * LS
        t = t0 + rows
        t64 = tl.where(t < N, t, 0).to(tl.int64)
        gr, gi, b_t, vt, la, phr, phi, lm, pr, pi, vr, vi, la_end, pe_r, pe_i = _sub_chunk(
            a_ptr, hop_ptr, ab_base, H, N, t0, zr, zi, g0r, g0i, LS, BK)
        # V_s = conj(PH_s) g_s: T[t, s] g_s = exp2(la_t - la_s) PH_t V_s; rows past N have c = 1, g = 0
        uoff = (ab_base + t64 * H)[:, None] * P + pp[None, :]
        umask = vt & pm[None, :]
        u = tl.load(u_ptr + uoff, mask=umask, other=0.0).to(tl.float32)
        if MODE == 1:
            coff = (ab_base + t64 * H)[:, None] * K + kk2
            cmask = vt & km[None, :]
            cr = tl.load(c_re_ptr + coff, mask=cmask, other=0.0).to(tl.float32)
            ci = tl.load(c_im_ptr + coff, mask=cmask, other=0.0).to(tl.float32)
            qtr = cr * phr + ci * phi                            # conj(C_t) PH_t
            qti = cr * phi - ci * phr
            if WF == 1:
                w = _w_factored(la, qtr, qti, vr, vi, km, lower, LS, BK, PREC)
                unfit = tl.maximum(unfit, 1 - _w_factor_fits(la, km, WF_RANGE).to(tl.int32))
            else:
                w = _w_elementwise(la, qtr, qti, vr, vi, kk, K, lower, LS)
            ql = tl.exp2(la)                                     # |Tinc(t)|
            qcat = _kcat_rows(qtr * ql, -(qti * ql), LS, BK)
            o = tl.dot(w, u, input_precision=PREC) + tl.dot(qcat, _kcat_state(yr, yi, BK, BP), input_precision=PREC)
            tl.store(o_ptr + uoff, o.to(o_ptr.dtype.element_ty), mask=umask)
        yr, yi, rr, ri, ter, tei = _state_step(yr, yi, u, la, vr, vi, la_end, pe_r, pe_i, LS, BK, BP, PREC)
        if MODE == 0:
            ar, ai = _cmul(ter, tei, ar, ai)
        g0r = _row(gr, rows2, LS - 1)[None, :]
        g0i = _row(gi, rows2, LS - 1)[None, :]
    if WF == 1:
        tl.store(wf_ptr + bh * nC + pid_c, unfit, mask=pb == 0)
    if MODE != 1:
        abase = (bh * nC + pid_c).to(tl.int64) * K * 2
        a_first = km & ((kk * 0 + pb) == 0)
        tl.store(ay_ptr + abase + kk * 2, ar, mask=a_first)
        tl.store(ay_ptr + abase + kk * 2 + 1, ai, mask=a_first)
        boff = ((bh * nC + pid_c).to(tl.int64) * K + kk[:, None]) * P * 2 + pp[None, :] * 2
        tl.store(by_ptr + boff, yr, mask=kp_mask)
        tl.store(by_ptr + boff + 1, yi, mask=kp_mask)


# ----------------------------------------------------------------------------- host


def dot_precision(cfg: ScanConfig, io_dtype: torch.dtype) -> str:
    """tl.dot's input_precision for the forward: cfg.dot_precision, or for "auto" "tf32x3" with float32 IO and
    "tf32" with bf16 / float16 IO."""
    if cfg.dot_precision != "auto":
        return cfg.dot_precision
    if io_dtype != torch.float32:
        return "tf32"
    return "tf32x3"


def scan_forward(a, hop, u, c_re, c_im, z_re, z_im, g0, y0, cfg: ScanConfig):
    """o (B, N, H, P) in u's dtype and the chunk-boundary states Gs (BH, nC + 1, K, 2), Ys (BH, nC + 1, K, P, 2)
    (float32) from contiguous inputs and the initial state g0 (B, H, K, 2), y0 (B, H, K, P, 2) float32."""
    check_sub_chunks(cfg)      # the dataclass checks at construction; this catches later edits
    B, N, H, P = u.shape
    K = z_re.shape[-1]
    BK = max(8, next_pow2(K))                      # 2 BK is a tl.dot dimension: >= 16
    L, LS = cfg.block_t, cfg.block_sub
    BP = max(16, min(cfg.block_p, next_pow2(P)))
    nC = triton.cdiv(N, L)
    nPB = triton.cdiv(P, BP)
    BH = B * H
    dev = u.device
    Mc = empty(BH, nC, K, 8, dtype=torch.float32, device=dev)
    launch("g_maps", _g_maps_chunked_kernel, (nC, BH), a, hop, z_re, z_im, Mc, N, H, K, nC, LS=LS, NS=L // LS,
           BK=BK, num_warps=cfg.num_warps)
    Gs = g_scan(Mc, g0, nC, K, cfg.chunk_block, cfg.num_warps)
    del Mc
    Ay = empty(BH, nC, K, 2, dtype=torch.float32, device=dev)
    By = empty(BH, nC, K, P, 2, dtype=torch.float32, device=dev)
    grid = (nC, BH, nPB)
    meta = dict(LS=LS, NS=L // LS, BK=BK, BP=BP, PREC=dot_precision(cfg, u.dtype),
                WF_RANGE=float(cfg.w_factor_range), num_warps=cfg.num_warps)
    launch("y_maps", _y_chunk_mm_kernel, grid, a, hop, u, c_re, c_im, z_re, z_im, Gs, By, Ay, By, u, Gs,
           N, H, K, P, nC, MODE=0, **meta)
    Ys = affine_scan("y_scan", Ay, By, y0, nC, K, P, False, cfg.chunk_block, cfg.scan_num_warps or cfg.num_warps,
                     next_pow2(K), cfg.scan_tile)
    del Ay, By
    o = empty_like(u)
    if cfg.w_factor_range > 0:   # W by factors, then the chunks where they do not fit again, entry by entry
        unfit = torch.empty(BH, nC, dtype=torch.int32, device=dev)     # every (bh, chunk) is written
        for name, wf in (("output", 1), ("output_fallback", 2)):
            launch(name, _y_chunk_mm_kernel, grid, a, hop, u, c_re, c_im, z_re, z_im, Gs, Ys, Gs, Ys, o, unfit,
                   N, H, K, P, nC, MODE=1, WF=wf, **meta)
    else:
        launch("output", _y_chunk_mm_kernel, grid, a, hop, u, c_re, c_im, z_re, z_im, Gs, Ys, Gs, Ys, o, Gs,
               N, H, K, P, nC, MODE=1, **meta)
    return o, Gs, Ys


__all__ = ["dot_precision", "scan_forward"]
