"""The exact backward of the Triton BK scan (version 3: sequential walks; docs/design.md 2.4, 2.6).

It restarts from the chunk-boundary states the forward saved (Gs, Ys) and computes, per position,

    Ybar_t = C_t dL/do_t + conj(-hop_{t+1} g_{t+1}) Ybar_{t+1}                       (reverse affine)
    Gbar_t = sum_p conj(u_t - hop_t y_{t-1}) Ybar_t + conj(hop_{t+1}^2 g_{t+1}^2) Gbar_{t+1}

Launches (pass names of launches.py in quotes):
  1. `_ybar_maps_seq_kernel` ("ybar_maps"): per chunk and channel block, the reverse affine map of Ybar, walking
     t forward: B = sum_t pi_t C_t do_t with pi_t the product of the factors conj(-hop g) so far (g by the exact
     recurrence one step ahead), A = the whole product.
  2. `_affine_scan_kernel` reverse ("ybar_scan", chunk_scans.py): Ybar at every chunk start; the right end
     carries dL/dy_N.
  3. `_bwd_main_seq_kernel` ("bwd_main"): persistent programs, each owning a scratch slot in global memory of
     L x K x BLOCK_P complex (y) and L x K complex (g), take (chunk, b*h, channel block) items from an atomic
     counter. Per item a forward walk from (Gs, Ys) writes y_{t-1} and g_t into the slot, then a reverse walk
     carries Ybar (registers) from Yb and reads them back to form u_bar, c_bar, Dg_t = sum_p conj(r_t) Ybar_t
     and hop1 (the y part of hop_bar). Registers do not grow with L; the slot's traffic (2 x K x BLOCK_P complex
     per position) goes to L2, or HBM when the live slots outgrow it. Channel sums are plain stores unless the
     channels are split over programs (then atomics into zeroed buffers).
  4. `_gbar_maps_kernel` ("gbar_maps") + `_affine_scan_kernel` reverse ("gbar_scan"): the same two steps for
     Gbar (K lanes; tl.associative_scan inside a chunk, g from a Moebius scan).
  5. `_g_final_kernel` ("g_final"): Gbar_t in the chunk -> a_bar, the g part of hop_bar, z_bar partials.
The initial-state gradients are one step of each reverse scan past t = 0 (a few PyTorch ops). Nothing per
position is stored between passes except the gradient outputs and the (B, N, H, K) buffers Dg and c_bar (the
size of C). Timed against the associative-scan backward it replaced: 22 ms vs 75 ms at N = 262144 on an H100
(docs/benchmarks.md).
"""
from __future__ import annotations

import torch

try:  # transformers' check_imports (remote code, see remote_code.py) skips imports inside try blocks
    import triton
    import triton.language as tl
except ImportError:
    raise

from ..scan_config import ScanConfig, next_pow2
from .chunk_scans import affine_scan
from .complex_math import _affine_combine, _cmul, _mobius_apply, _mobius_scan, _row, _step
from .launches import empty, empty_like, launch

# ----------------------------------------------------------------------------- g inside a chunk


@triton.jit
def _g_window(a_ptr, hop_ptr, z_re_ptr, z_im_ptr, gs_ptr, ab_base, h, bh, pid_c, N, H, K, nC,
              L: tl.constexpr, BK: tl.constexpr):
    """g_{t-1}, g_t, g_{t+1} (each (L, BK)) for the chunk pid_c, plus a_t... loads used by callers."""
    rows = tl.arange(0, L)
    t = pid_c * L + rows
    vt = t < N
    t64 = tl.where(vt, t, 0).to(tl.int64)
    kk = tl.arange(0, BK)
    km = kk < K
    zr = tl.load(z_re_ptr + h * K + kk, mask=km, other=0.0).to(tl.float32)[None, :]
    zi = tl.load(z_im_ptr + h * K + kk, mask=km, other=1.0).to(tl.float32)[None, :]
    gbase = (bh * (nC + 1) + pid_c).to(tl.int64) * K * 2
    g0r = tl.load(gs_ptr + gbase + kk * 2, mask=km, other=0.0)[None, :]
    g0i = tl.load(gs_ptr + gbase + kk * 2 + 1, mask=km, other=0.0)[None, :]
    m00r, m00i, m01r, m01i, m10r, m10i, m11r, m11i = _mobius_scan(
        a_ptr, hop_ptr, ab_base, H, N, pid_c * L, zr, zi, L, BK, 1)
    gpr, gpi = _mobius_apply(m00r, m00i, m01r, m01i, m10r, m10i, m11r, m11i, g0r, g0i)
    a_t = tl.load(a_ptr + ab_base + t64 * H, mask=vt, other=0.0).to(tl.float32)[:, None]
    b_t = tl.load(hop_ptr + ab_base + t64 * H, mask=vt, other=0.0).to(tl.float32)[:, None]
    gr, gi = _step(a_t, b_t, zr, zi, gpr, gpi)
    return gpr, gpi, gr, gi, b_t, zr, zi


@triton.jit
def _g_next(a_ptr, hop_ptr, ab_base, H, N, pid_c, zr, zi, gr, gi, L: tl.constexpr):
    rows = tl.arange(0, L)
    tn = pid_c * L + rows + 1
    vn = tn < N
    tn64 = tl.where(vn, tn, 0).to(tl.int64)
    a_n = tl.load(a_ptr + ab_base + tn64 * H, mask=vn, other=0.0).to(tl.float32)[:, None]
    b_n = tl.load(hop_ptr + ab_base + tn64 * H, mask=vn, other=0.0).to(tl.float32)[:, None]
    gnr, gni = _step(a_n, b_n, zr, zi, gr, gi)
    return gnr, gni, b_n, vn[:, None]


@triton.jit
def _gbar_window(a_ptr, hop_ptr, dg_ptr, ab_base, H, N, K, pid_c, zr, zi, gr, gi,
                 L: tl.constexpr, BK: tl.constexpr):
    rows = tl.arange(0, L)
    t = pid_c * L + rows
    vt = t < N
    t64 = tl.where(vt, t, 0).to(tl.int64)
    kk = tl.arange(0, BK)
    km = kk < K
    gnr, gni, b_n, vn = _g_next(a_ptr, hop_ptr, ab_base, H, N, pid_c, zr, zi, gr, gi, L)
    g2r, g2i = _cmul(gnr, gni, gnr, gni)
    b2 = b_n * b_n
    er = tl.where(vn, b2 * g2r, 1.0)
    ei = tl.where(vn, -b2 * g2i, 0.0)
    kmask = vt[:, None] & km[None, :]
    koff = ((ab_base + t64 * H)[:, None] * K + kk[None, :]) * 2
    sr = tl.load(dg_ptr + koff, mask=kmask, other=0.0)
    si = tl.load(dg_ptr + koff + 1, mask=kmask, other=0.0)
    return tl.associative_scan((er, ei, sr, si), 0, _affine_combine, reverse=True)


# ----------------------------------------------------------------------------- kernels


@triton.jit
def _ybar_maps_seq_kernel(a_ptr, hop_ptr, c_re_ptr, c_im_ptr, z_re_ptr, z_im_ptr, gs_ptr, do_ptr,
                          ab_ptr, bb_ptr, N, H, K, P, nC,
                          L: tl.constexpr, BK: tl.constexpr, BP: tl.constexpr, STAGES: tl.constexpr):
    """The chunk's reverse map of Ybar into A (BH, nC, K, 2), B (BH, nC, K, P, 2): Ybar_{t0} = A Ybar_{t1} + B.

    Walks t = t0 .. t1-1 forward (g needs no reverse walk that way):
        B = sum_t pi_t C_t do_t,  pi_t = prod_{t0 <= j < t} e_j,  A = pi_{t1},
        e_j = conj(-hop_{j+1} g_{j+1})  (1 for j = N - 1: nothing follows the last position).
    pi is a product of the resolvent's own factors -hop g, bounded like the forward's chunk map A."""
    pid_c = tl.program_id(0)
    bh = tl.program_id(1)
    pb = tl.program_id(2)
    b = bh // H
    h = bh % H
    ab_base = b.to(tl.int64) * N * H + h
    kk = tl.arange(0, BK)
    km = kk < K
    pp = pb * BP + tl.arange(0, BP)
    pm = pp < P
    zr = tl.load(z_re_ptr + h * K + kk, mask=km, other=0.0).to(tl.float32)[:, None]
    zi = tl.load(z_im_ptr + h * K + kk, mask=km, other=1.0).to(tl.float32)[:, None]
    gbase = (bh * (nC + 1) + pid_c).to(tl.int64) * K * 2
    gr = tl.load(gs_ptr + gbase + kk * 2, mask=km, other=0.0)[:, None]
    gi = tl.load(gs_ptr + gbase + kk * 2 + 1, mask=km, other=0.0)[:, None]
    t0 = pid_c * L
    t1 = tl.minimum(t0 + L, N)
    off = ab_base + t0.to(tl.int64) * H      # element offset of (b, t, h), advanced by H per step
    gr, gi = _step(tl.load(a_ptr + off).to(tl.float32), tl.load(hop_ptr + off).to(tl.float32), zr, zi, gr, gi)
    pir = tl.zeros([BK, 1], dtype=tl.float32) + 1.0
    pii = tl.zeros([BK, 1], dtype=tl.float32)
    br = tl.zeros([BK, BP], dtype=tl.float32)
    bi = tl.zeros([BK, BP], dtype=tl.float32)
    for t in tl.range(t0, t1, num_stages=STAGES):
        cr = tl.load(c_re_ptr + off * K + kk, mask=km, other=0.0).to(tl.float32)[:, None]
        ci = tl.load(c_im_ptr + off * K + kk, mask=km, other=0.0).to(tl.float32)[:, None]
        d_o = tl.load(do_ptr + off * P + pp, mask=pm, other=0.0).to(tl.float32)[None, :]
        wr, wi = _cmul(pir, pii, cr, ci)
        br += wr * d_o
        bi += wi * d_o
        # e_t from g_{t+1} (one exact step of the g recurrence ahead)
        has_next = t + 1 < N
        a_n = tl.load(a_ptr + off + H, mask=has_next, other=0.0).to(tl.float32)
        b_n = tl.load(hop_ptr + off + H, mask=has_next, other=0.0).to(tl.float32)
        gr, gi = _step(a_n, b_n, zr, zi, gr, gi)
        er = tl.where(has_next, -b_n * gr, 1.0)
        ei = tl.where(has_next, b_n * gi, 0.0)
        pir, pii = _cmul(er, ei, pir, pii)
        off += H
    abase = (bh * nC + pid_c).to(tl.int64) * K * 2
    a_first = km & ((kk * 0 + pb) == 0)
    tl.store(ab_ptr + abase + kk * 2, tl.sum(pir, axis=1), mask=a_first)
    tl.store(ab_ptr + abase + kk * 2 + 1, tl.sum(pii, axis=1), mask=a_first)
    boff = ((bh * nC + pid_c).to(tl.int64) * K + kk[:, None]) * P * 2 + pp[None, :] * 2
    kp_mask = km[:, None] & pm[None, :]
    tl.store(bb_ptr + boff, br, mask=kp_mask)
    tl.store(bb_ptr + boff + 1, bi, mask=kp_mask)


@triton.jit
def _bwd_main_seq_kernel(a_ptr, hop_ptr, u_ptr, c_re_ptr, c_im_ptr, z_re_ptr, z_im_ptr, gs_ptr, ys_ptr, yb_ptr,
                         do_ptr, ubar_ptr, cbar_ptr, dg_ptr, hop1_ptr, yscr_ptr, gscr_ptr, work_ptr,
                         N, H, K, P, nC, BH, nPB, n_items,
                         L: tl.constexpr, BK: tl.constexpr, BP: tl.constexpr, SPLIT_P: tl.constexpr,
                         STAGES: tl.constexpr):
    """u_bar, c_bar, Dg, hop1 (module docstring) for one chunk and channel block per work item.

    Persistent: each program owns one scratch slot (y_{t-1}: L x (re, im) x BK x BP floats; g_t: L x (re, im) x BK)
    and takes work items (chunk, b*h, channel block) from an atomic counter until none is left, so the scratch
    is bounded by the number of programs, not by N. Per item:
      1. forward walk t = t0 .. t1-1 from the chunk-boundary states (Gs, Ys): write y_{t-1} and g_t to the slot;
      2. reverse walk t = t1-1 .. t0 carrying Ybar (BK x BP, registers) from Yb at the next chunk's start and
         y_t from the step before (the forward walk's last y at the start), reading y_{t-1}, g_t back:
             Ybar_t = conj(-hop_{t+1} g_{t+1}) Ybar_{t+1} + C_t do_t,   r_bar = conj(g_t) Ybar_t,
             u_bar_t = Re sum_k r_bar,  c_bar_t = sum_p do_t y_t,  Dg_t = sum_p conj(r_t) Ybar_t,
             hop1_t = -Re sum_{k,p} conj(y_{t-1}) r_bar,   r_t = u_t - hop_t y_{t-1}.
    SPLIT_P (the channels split over programs): the channel sums are atomic adds into zeroed buffers;
    otherwise plain stores. STAGES > 1 lets Triton's pipeliner prefetch the walks' loads (ScanConfig.bwd_stages)."""
    prog = tl.program_id(0)
    kk = tl.arange(0, BK)
    km = kk < K
    jj = tl.arange(0, BP)
    tile = kk[:, None] * BP + jj[None, :]               # scratch (BK, BP) plane, all lanes (padding included)
    yslot = prog.to(tl.int64) * L * 2 * BK * BP
    gslot = prog.to(tl.int64) * L * 2 * BK
    item = tl.atomic_add(work_ptr, 1)
    while item < n_items:
        pb = item % nPB
        pid_c = item // nPB // BH
        bh = (item // nPB) % BH
        b = bh // H
        h = bh % H
        ab_base = b.to(tl.int64) * N * H + h
        pp = pb * BP + jj
        pm = pp < P
        kp_mask = km[:, None] & pm[None, :]
        zr = tl.load(z_re_ptr + h * K + kk, mask=km, other=0.0).to(tl.float32)[:, None]
        zi = tl.load(z_im_ptr + h * K + kk, mask=km, other=1.0).to(tl.float32)[:, None]
        gbase = (bh * (nC + 1) + pid_c).to(tl.int64) * K * 2
        gr = tl.load(gs_ptr + gbase + kk * 2, mask=km, other=0.0)[:, None]
        gi = tl.load(gs_ptr + gbase + kk * 2 + 1, mask=km, other=0.0)[:, None]
        yoff = ((bh * (nC + 1) + pid_c).to(tl.int64) * K + kk[:, None]) * P * 2 + pp[None, :] * 2
        yr = tl.load(ys_ptr + yoff, mask=kp_mask, other=0.0)
        yi = tl.load(ys_ptr + yoff + 1, mask=kp_mask, other=0.0)
        t0 = pid_c * L
        n = tl.minimum(t0 + L, N) - t0
        off0 = ab_base + t0.to(tl.int64) * H      # element offset of (b, t0, h)
        # 1. forward walk: y_{t-1} and g_t into the slot
        off = off0
        for i in tl.range(0, n, num_stages=STAGES):
            a_t = tl.load(a_ptr + off).to(tl.float32)
            b_t = tl.load(hop_ptr + off).to(tl.float32)
            u_t = tl.load(u_ptr + off * P + pp[None, :], mask=pm[None, :], other=0.0).to(tl.float32)
            ys_i = yscr_ptr + yslot + i * 2 * BK * BP + tile
            tl.store(ys_i, yr)
            tl.store(ys_i + BK * BP, yi)
            gr, gi = _step(a_t, b_t, zr, zi, gr, gi)
            gs_i = gscr_ptr + gslot + i * 2 * BK + kk[:, None]
            tl.store(gs_i, gr)
            tl.store(gs_i + BK, gi)
            yr, yi = _cmul(gr, gi, u_t - b_t * yr, -b_t * yi)
            off += H
        # the factor that carries Ybar from the next chunk's first position: conj(-hop_{t1} g_{t1}), 1 past N
        has_next = t0 + n < N
        off_n = off0 + n.to(tl.int64) * H
        a_n = tl.load(a_ptr + off_n, mask=has_next, other=0.0).to(tl.float32)
        b_n = tl.load(hop_ptr + off_n, mask=has_next, other=0.0).to(tl.float32)
        gnr, gni = _step(a_n, b_n, zr, zi, gr, gi)
        er = tl.where(has_next, -b_n * gnr, 1.0)
        ei = tl.where(has_next, b_n * gni, 0.0)
        yboff = ((bh * (nC + 1) + pid_c + 1).to(tl.int64) * K + kk[:, None]) * P * 2 + pp[None, :] * 2
        ybr = tl.load(yb_ptr + yboff, mask=kp_mask, other=0.0)
        ybi = tl.load(yb_ptr + yboff + 1, mask=kp_mask, other=0.0)
        tl.debug_barrier()      # the slot written above is read below, maybe by other threads of the program
        # 2. reverse walk
        for j in tl.range(0, n, num_stages=STAGES):
            i = n - 1 - j
            off = off0 + i.to(tl.int64) * H
            cr = tl.load(c_re_ptr + off * K + kk[:, None], mask=km[:, None], other=0.0).to(tl.float32)
            ci = tl.load(c_im_ptr + off * K + kk[:, None], mask=km[:, None], other=0.0).to(tl.float32)
            d_o = tl.load(do_ptr + off * P + pp[None, :], mask=pm[None, :], other=0.0).to(tl.float32)
            u_t = tl.load(u_ptr + off * P + pp[None, :], mask=pm[None, :], other=0.0).to(tl.float32)
            b_t = tl.load(hop_ptr + off).to(tl.float32)
            ys_i = yscr_ptr + yslot + i * 2 * BK * BP + tile
            ypr = tl.load(ys_i)
            ypi = tl.load(ys_i + BK * BP)
            gs_i = gscr_ptr + gslot + i * 2 * BK + kk[:, None]
            gtr = tl.load(gs_i)
            gti = tl.load(gs_i + BK)
            # Ybar_t = e Ybar_{t+1} + C_t do_t
            ybr, ybi = er * ybr - ei * ybi + cr * d_o, er * ybi + ei * ybr + ci * d_o
            # r_bar = conj(g_t) Ybar_t; u_bar = Re sum_k r_bar
            rbr = gtr * ybr + gti * ybi
            rbi = gtr * ybi - gti * ybr
            tl.store(ubar_ptr + off * P + pp, tl.sum(rbr, axis=0).to(ubar_ptr.dtype.element_ty), mask=pm)
            # r_t = u_t - hop_t y_{t-1}
            rr = u_t - b_t * ypr
            ri = -b_t * ypi
            koff = (off * K + kk) * 2
            cb_r = tl.sum(d_o * yr, axis=1)
            cb_i = tl.sum(d_o * yi, axis=1)
            dg_r = tl.sum(rr * ybr + ri * ybi, axis=1)
            dg_i = tl.sum(rr * ybi - ri * ybr, axis=1)
            h1 = -tl.sum(tl.sum(ypr * rbr + ypi * rbi, axis=1), axis=0)
            if SPLIT_P:
                tl.atomic_add(cbar_ptr + koff, cb_r, mask=km)
                tl.atomic_add(cbar_ptr + koff + 1, cb_i, mask=km)
                tl.atomic_add(dg_ptr + koff, dg_r, mask=km)
                tl.atomic_add(dg_ptr + koff + 1, dg_i, mask=km)
                tl.atomic_add(hop1_ptr + off, h1)
            else:
                tl.store(cbar_ptr + koff, cb_r, mask=km)
                tl.store(cbar_ptr + koff + 1, cb_i, mask=km)
                tl.store(dg_ptr + koff, dg_r, mask=km)
                tl.store(dg_ptr + koff + 1, dg_i, mask=km)
                tl.store(hop1_ptr + off, h1)
            # step to t - 1: its Ybar factor uses g_t, hop_t; its y_t is this step's y_{t-1}
            er = -b_t * gtr
            ei = b_t * gti
            yr = ypr
            yi = ypi
        tl.debug_barrier()      # every thread is done with the slot before the next item overwrites it
        item = tl.atomic_add(work_ptr, 1)


@triton.jit
def _gbar_maps_kernel(a_ptr, hop_ptr, z_re_ptr, z_im_ptr, gs_ptr, dg_ptr, ag_ptr, bg_ptr, N, H, K, nC,
                      L: tl.constexpr, BK: tl.constexpr):
    pid_c = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    ab_base = b.to(tl.int64) * N * H + h
    kk = tl.arange(0, BK)
    km = kk < K
    gpr, gpi, gr, gi, b_t, zr, zi = _g_window(a_ptr, hop_ptr, z_re_ptr, z_im_ptr, gs_ptr, ab_base, h, bh,
                                              pid_c, N, H, K, nC, L, BK)
    acr, aci, bcr, bci = _gbar_window(a_ptr, hop_ptr, dg_ptr, ab_base, H, N, K, pid_c, zr, zi, gr, gi, L, BK)
    rows2 = tl.arange(0, L)[:, None]
    off = (bh * nC + pid_c).to(tl.int64) * K * 2 + kk * 2
    tl.store(ag_ptr + off, _row(acr, rows2, 0), mask=km)
    tl.store(ag_ptr + off + 1, _row(aci, rows2, 0), mask=km)
    tl.store(bg_ptr + off, _row(bcr, rows2, 0), mask=km)
    tl.store(bg_ptr + off + 1, _row(bci, rows2, 0), mask=km)


@triton.jit
def _g_final_kernel(a_ptr, hop_ptr, z_re_ptr, z_im_ptr, gs_ptr, dg_ptr, gb_ptr, hop1_ptr,
                    abar_ptr, hbar_ptr, zb_ptr, N, H, K, nC,
                    L: tl.constexpr, BK: tl.constexpr):
    pid_c = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    ab_base = b.to(tl.int64) * N * H + h
    rows = tl.arange(0, L)
    t = pid_c * L + rows
    vt = t < N
    t64 = tl.where(vt, t, 0).to(tl.int64)
    kk = tl.arange(0, BK)
    km = kk < K
    gpr, gpi, gr, gi, b_t, zr, zi = _g_window(a_ptr, hop_ptr, z_re_ptr, z_im_ptr, gs_ptr, ab_base, h, bh,
                                              pid_c, N, H, K, nC, L, BK)
    acr, aci, bcr, bci = _gbar_window(a_ptr, hop_ptr, dg_ptr, ab_base, H, N, K, pid_c, zr, zi, gr, gi, L, BK)
    goff = (bh * (nC + 1) + pid_c + 1).to(tl.int64) * K * 2 + kk * 2
    cgr = tl.load(gb_ptr + goff, mask=km, other=0.0)[None, :]
    cgi = tl.load(gb_ptr + goff + 1, mask=km, other=0.0)[None, :]
    gbr = acr * cgr - aci * cgi + bcr
    gbi = acr * cgi + aci * cgr + bci
    # w_bar = -conj(g^2) Gbar
    g2r, g2i = _cmul(gr, gi, gr, gi)
    wr, wi = _cmul(-g2r, g2i, gbr, gbi)
    kmask = vt[:, None] & km[None, :]
    wr = tl.where(kmask, wr, 0.0)
    wi = tl.where(kmask, wi, 0.0)
    tl.store(abar_ptr + ab_base + t64 * H, tl.sum(wr, axis=1).to(abar_ptr.dtype.element_ty), mask=vt)
    # hop_bar += Re sum_k -2 b conj(g_{t-1}) w_bar
    h2 = tl.sum(-2.0 * b_t * (gpr * wr + gpi * wi), axis=1)
    h1 = tl.load(hop1_ptr + ab_base + t64 * H, mask=vt, other=0.0)
    tl.store(hbar_ptr + ab_base + t64 * H, (h1 + h2).to(hbar_ptr.dtype.element_ty), mask=vt)
    zoff = (bh * nC + pid_c).to(tl.int64) * K * 2 + kk * 2
    tl.store(zb_ptr + zoff, -tl.sum(wr, axis=0), mask=km)
    tl.store(zb_ptr + zoff + 1, -tl.sum(wi, axis=0), mask=km)


# ----------------------------------------------------------------------------- host


def _bwd_programs(cfg: ScanConfig, device: torch.device) -> int:
    """Programs of the persistent main pass: per SM (`bwd_programs_per_sm`, default what the warps allow on
    Hopper: 64 resident warps and 32 resident programs per SM) x SMs. Programs that find no work left exit at
    once, so more than fit only costs scratch memory; fewer leave SMs idle. The interpreter counts one SM."""
    per_sm = cfg.bwd_programs_per_sm or min(32, max(1, 64 // (cfg.bwd_num_warps or cfg.num_warps)))
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1
    return per_sm * sms


def _ybar_passes(a, hop, u, c_re, c_im, z_re, z_im, Gs, Ys, d_o, d_yN, cfg: ScanConfig):
    """Passes 1-3: Ybar chunk maps, their reverse scan (Yb = Ybar at every chunk start), the main pass
    -> u_bar, c_bar, Dg, hop1, Yb."""
    B, N, H, P = u.shape
    K = z_re.shape[-1]
    BK = next_pow2(K)
    L, BP = cfg.block_t, min(cfg.bwd_block_p or cfg.block_p, next_pow2(P))
    nC = triton.cdiv(N, L)
    nPB = triton.cdiv(P, BP)
    BH = B * H
    dev = u.device
    f32 = torch.float32
    nw = cfg.bwd_num_warps or cfg.num_warps
    grid = (nC, BH, nPB)
    Ab = empty(BH, nC, K, 2, dtype=torch.float32, device=dev)
    Bb = empty(BH, nC, K, P, 2, dtype=torch.float32, device=dev)
    launch("ybar_maps", _ybar_maps_seq_kernel, grid, a, hop, c_re, c_im, z_re, z_im, Gs, d_o, Ab, Bb,
           N, H, K, P, nC, L=L, BK=BK, BP=BP, num_warps=nw, STAGES=cfg.bwd_stages)
    Yb = affine_scan("ybar_scan", Ab, Bb, d_yN, nC, K, P, True, cfg.chunk_block, cfg.scan_num_warps or nw, BK,
                     cfg.scan_tile)
    del Ab, Bb
    u_bar = empty_like(u)
    # Channel sums: atomics into zeros where several programs share a position (the channels split), else stores.
    split = nPB > 1
    sums = (lambda *s: torch.zeros(*s, dtype=f32, device=dev)) if split else \
        (lambda *s: empty(*s, dtype=f32, device=dev))
    c_bar = sums(B, N, H, K, 2)
    Dg = sums(B, N, H, K, 2)
    hop1 = sums(B, N, H)
    n_items = nC * BH * nPB
    n_prog = min(n_items, _bwd_programs(cfg, dev))
    yscr = empty(n_prog, L, 2, BK, BP, dtype=f32, device=dev)
    gscr = empty(n_prog, L, 2, BK, dtype=f32, device=dev)
    work = torch.zeros(1, dtype=torch.int32, device=dev)
    launch("bwd_main", _bwd_main_seq_kernel, (n_prog,), a, hop, u, c_re, c_im, z_re, z_im, Gs, Ys, Yb, d_o, u_bar,
           c_bar, Dg, hop1, yscr, gscr, work, N, H, K, P, nC, BH, nPB, n_items,
           L=L, BK=BK, BP=BP, SPLIT_P=split, STAGES=cfg.bwd_stages, num_warps=nw)
    del yscr, gscr
    return u_bar, c_bar, Dg, hop1, Yb


def _initial_state_grads(a, hop, z_re, z_im, Gs, Gb, Yb, shape):
    """dL/dg0, dL/dy0 (as real pairs): one more step of each reverse scan past t = 0."""
    B, H, K, P = shape
    z = torch.complex(z_re.float(), z_im.float())
    g_init = torch.view_as_complex(Gs[:, 0].contiguous()).view(B, H, K)
    b0 = hop[:, 0].float()[..., None]                                 # (B, H, 1)
    g_first = 1.0 / (a[:, 0].float()[..., None] - z - b0 * b0 * g_init)
    Gbar0 = torch.view_as_complex(Gb[:, 0, :, 0].contiguous()).view(B, H, K)
    Ybar0 = torch.view_as_complex(Yb[:, 0].contiguous()).view(B, H, K, P)
    d_y0 = -b0[..., None] * g_first.conj()[..., None] * Ybar0
    d_g0 = b0 * b0 * (g_first * g_first).conj() * Gbar0
    return torch.view_as_real(d_g0), torch.view_as_real(d_y0)


def scan_backward(a, hop, u, c_re, c_im, z_re, z_im, Gs, Ys, d_o, d_gN, d_yN, cfg: ScanConfig, state_grads=True):
    """Every input gradient (a, hop, u, c_re, c_im, z_re, z_im, g0, y0) from the forward's inputs and saved states
    (`scan_forward`) and the cotangents of o, g_N, y_N; those of the initial state (g0, y0) only when
    `state_grads` (a few small PyTorch ops, which cost host time that matters at short N), else None."""
    B, N, H, P = u.shape
    K = z_re.shape[-1]
    BK = next_pow2(K)
    L = cfg.block_t
    nC = triton.cdiv(N, L)
    BH = B * H
    dev = u.device
    nw = cfg.bwd_num_warps or cfg.num_warps
    u_bar, c_bar, Dg, hop1, Yb = _ybar_passes(a, hop, u, c_re, c_im, z_re, z_im, Gs, Ys, d_o, d_yN, cfg)
    Ag = empty(BH, nC, K, 2, dtype=torch.float32, device=dev)
    Bg = empty(BH, nC, K, 1, 2, dtype=torch.float32, device=dev)
    launch("gbar_maps", _gbar_maps_kernel, (nC, BH), a, hop, z_re, z_im, Gs, Dg, Ag, Bg, N, H, K, nC, L=L, BK=BK,
           num_warps=nw)
    Gb = affine_scan("gbar_scan", Ag, Bg, d_gN, nC, K, 1, True, cfg.chunk_block, cfg.scan_num_warps or nw, BK,
                     cfg.scan_tile)
    a_bar = empty_like(a)
    hop_bar = empty_like(hop)
    zb = empty(BH, nC, K, 2, dtype=torch.float32, device=dev)
    launch("g_final", _g_final_kernel, (nC, BH), a, hop, z_re, z_im, Gs, Dg, Gb, hop1, a_bar, hop_bar, zb,
           N, H, K, nC, L=L, BK=BK, num_warps=nw)
    z_bar = zb.view(B, H, nC, K, 2).sum(dim=(0, 2))                   # (H, K, 2)
    grads = (a_bar, hop_bar, u_bar, c_bar[..., 0], c_bar[..., 1], z_bar[..., 0], z_bar[..., 1])
    if not state_grads:
        return grads + (None, None)
    return grads + _initial_state_grads(a, hop, z_re, z_im, Gs, Gb, Yb, (B, H, K, P))


__all__ = ["scan_backward"]
