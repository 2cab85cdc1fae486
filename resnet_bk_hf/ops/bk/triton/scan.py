"""Fused Triton kernels for the causal BK scan: forward and exact backward (DESIGN.md 2.3, 2.4, 2.6).

Same function as `naive.causal_resolvent_scan_naive` (shapes and recurrence there):

    g_t = 1 / (a_t - z - hop_t^2 g_{t-1})            (K shifts per head, complex)
    y_t = g_t (u_t - hop_t y_{t-1})                  (K x P complex per head)
    o_t = sum_k Re(conj(C_{t,k}) y_t^(k))

Complex numbers are real pairs everywhere; the scan state is float32 in registers
whatever the IO dtype (float32 or bf16). float64 inputs do not run a kernel: they
fall back to the exact recurrent path (`recurrent.CausalResolventScanFn`), which
is what the float64 references and gradchecks use anyway.

Algorithm (chunked, every step parallel over chunks and lanes)
-------------------------------------------------------------
The sequence is cut into chunks of L = BLOCK_T positions. Inside a chunk a
program holds an (L, K, BLOCK_P) tile and replaces the sequential loop by
`tl.associative_scan` along the time axis:

* g is a Moebius recurrence: g_t = p_t / q_t with (p, q)_t = M_t (p, q)_{t-1},
  M_t = [[0, 1], [-hop_t^2, a_t - z]]. The scan combines 2x2 complex matrices
  (product, renormalised by the largest entry: only the ratio matters, so
  |a| up to 1e3 never overflows; no determinants, DESIGN.md 2.2). g_{t-1} comes
  from the scan over the shifted positions and g_t from one exact recurrence
  step, so each chunk needs only its carried-in g.
* y is affine given g: y_t = A_t y_{t-1} + B_t, A_t = -hop_t g_t, B_t = g_t u_t.
  The scan combines affine maps (A2 A1, A2 B1 + B2).

Forward (5 launches):
  1. `_g_maps`   : per chunk, the product of its Moebius matrices.
  2. `_g_scan`   : per (b, h), scan of the chunk matrices -> g at every chunk start.
  3. `_y_chunk` (MODE 0): per chunk and channel block, the chunk's affine map for y.
  4. `_affine_scan`: per (b, h, channel block), scan of the chunk maps -> y at
     every chunk start (chunk-boundary states only: (N/L) x K x P, not N x K x P).
  5. `_y_chunk` (MODE 1): recompute g, y inside the chunk from the boundary state
     and write o. Reads a, hop, u, C; writes o and the final state only.

Forward version 2 (`ScanConfig(time_loop="sequential")`, the default since the H100 timed both:
16-19% faster at N >= 65536, docs/benchmarks.md): passes 1, 3 and 5 become `_g_maps_seq`, `_y_chunk_seq` (MODE 0/1):
each program walks t = t0 .. min(t0 + L, N) - 1 in a loop, carrying g (K lanes) and y
(K x BLOCK_P) in registers from the chunk-start boundary state, loading a_t, hop_t, u_t and
C_t per step (positions past N are never visited). About 10 flops per lane and position, no
log2(L) factor, and no Moebius scan for g_{t-1}. Passes 2 and 4 (chunk-level scans) and the
saved boundary states (Gs, Ys) are the same, so the backward below is shared: it is version 1
(associative scans inside a chunk) for both settings.

Forward version 4 (`ScanConfig(time_loop="chunked")`, the default since an H200 timed it: forward 9-11%
faster than version 2 from N = 16k up, docs/benchmarks.md): passes 1, 3 and 5 become `_g_maps_chunked`
and `_y_chunk_mm` (MODE 0/1). A chunk is walked as sub-chunks of `block_sub` positions; each sub-chunk's
output is a matrix product o = W u + Re(Q y_in) and its state update y <- Tinc y + R^T u (tl.dot), with
W, Q, R built from running sums of log2|c| and running unit phases of c = -hop g (comment above `_g_tile`).
W is one tl.dot of per-row factors wherever the log-decays of a sub-chunk span <= `w_factor_range` octaves,
and entry by entry, in a second launch over the chunks marked, elsewhere (`_w_factored`).
Same saved states, so every backward works after it.

Backward (exact, DESIGN.md 2.4), reusing the saved chunk-boundary g and y:
  Ybar_t = C_t dL/do_t + conj(-hop_{t+1} g_{t+1}) Ybar_{t+1}            (reverse affine)
  Gbar_t = sum_p conj(u_t - hop_t y_{t-1}) Ybar_t + conj(hop_{t+1}^2 g_{t+1}^2) Gbar_{t+1}
  1. `_ybar_maps` : per chunk, the reverse affine map of Ybar (tl.associative_scan reverse=True).
  2. `_affine_scan` (reverse): Ybar at every chunk start; the right end carries dL/dy_N.
  3. `_bwd_main`  : recompute g_{t-1}, g_t, g_{t+1}, y_{t-1}, y_t and Ybar_t in the chunk;
     write u_bar; accumulate c_bar, Dg_t = sum_p conj(r_t) Ybar_t and the y part of
     hop_bar (sums over channels: atomics when P is split over programs).
  4. `_gbar_maps` + `_affine_scan` (reverse): same two steps for Gbar (K lanes).
  5. `_g_final`   : Gbar_t in the chunk -> a_bar, the g part of hop_bar, z_bar partials.
  The initial-state gradients are one step of each reverse scan past t = 0.
Nothing per position is stored between passes except the gradient outputs and
the (B, N, H, K) buffers Dg and c_bar (the size of C).

Backward version 3 (`ScanConfig(bwd_loop="sequential")`, the default since the H100 timed both:
backward 22 ms vs 75 ms for v1's best blocks at N = 262144, docs/benchmarks.md): the two passes on (L, K, BLOCK_P) tiles walk time instead of scanning it.
  1. `_ybar_maps_seq`: walks t forward, B = sum_t pi_t C_t do_t with pi_t the product of the factors
     conj(-hop g) so far (g by the exact recurrence one step ahead), A = the whole product.
  3. `_bwd_main_seq`: persistent programs, each owning a scratch slot in global memory of
     L x K x BLOCK_P complex (y) and L x K complex (g), take (chunk, b*h, channel block) items from an
     atomic counter. Per item a forward walk from (Gs, Ys) writes y_{t-1} and g_t into the slot, then a
     reverse walk carries Ybar (registers) from Yb and reads them back to form u_bar, c_bar, Dg, hop1
     exactly as `_bwd_main`. Registers no longer grow with L; the slot's traffic (2 x K x BLOCK_P
     complex per position) goes to L2, or HBM when the live slots outgrow it. Channel sums are plain
     stores unless the channels are split over programs (then atomics, as version 1 always does).
Passes 2, 4, 5 and the saved states are shared with version 1; the forward is independent of it.

Backward version 5 (`ScanConfig(bwd_loop="chunked")`; checked against float64 on the CPU interpreter and
compiled for sm_90 without a GPU (`kernel_bench.py --ptxas`: it spills), not yet run or timed on a GPU, so not
the default): passes 1-3 on sub-chunks as matrices, like version 4.
  1. `_y_chunk_mm` MODE 2: per chunk, the reverse map of the cotangent of the y before it (E_in =
     conj(Tinc) E_out + sum_t conj(Tinc(t)) C_t do_t, one tl.dot per sub-chunk).
  2. `_affine_scan` (reverse): Eb[c] = that cotangent at every chunk; Eb[nC] = dL/dy_N, Eb[0] = dL/dy0.
  3. `_bwd_chunk_mm`: u_bar, c_bar, Dg, hop1 from L x L tiles per sub-chunk (formulas in its docstring),
     the decay gradients as row / column sums of running sums: no per-position state, no scratch.
Passes 4 and 5 (the g part) are shared with versions 1 and 3.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from ..naive import State

# ----------------------------------------------------------------------------- helpers


@triton.jit
def _cmul(ar, ai, br, bi):
    return ar * br - ai * bi, ar * bi + ai * br


@triton.jit
def _cdiv(ar, ai, br, bi):
    d = br * br + bi * bi
    return (ar * br + ai * bi) / d, (ai * br - ar * bi) / d


@triton.jit
def _affine_combine(alr, ali, blr, bli, arr, ari, brr, bri):
    # left = map applied first, right = map applied second: result = right o left
    ar, ai = _cmul(arr, ari, alr, ali)
    br, bi = _cmul(arr, ari, blr, bli)
    return ar, ai, br + brr, bi + bri


@triton.jit
def _mobius_combine(l00r, l00i, l01r, l01i, l10r, l10i, l11r, l11i,
                    r00r, r00i, r01r, r01i, r10r, r10i, r11r, r11i):
    # result = R @ L, renormalised by its largest component (projective: only ratios matter)
    x1r, x1i = _cmul(r00r, r00i, l00r, l00i)
    x2r, x2i = _cmul(r01r, r01i, l10r, l10i)
    p00r, p00i = x1r + x2r, x1i + x2i
    x1r, x1i = _cmul(r00r, r00i, l01r, l01i)
    x2r, x2i = _cmul(r01r, r01i, l11r, l11i)
    p01r, p01i = x1r + x2r, x1i + x2i
    x1r, x1i = _cmul(r10r, r10i, l00r, l00i)
    x2r, x2i = _cmul(r11r, r11i, l10r, l10i)
    p10r, p10i = x1r + x2r, x1i + x2i
    x1r, x1i = _cmul(r10r, r10i, l01r, l01i)
    x2r, x2i = _cmul(r11r, r11i, l11r, l11i)
    p11r, p11i = x1r + x2r, x1i + x2i
    s = tl.maximum(tl.maximum(tl.maximum(tl.abs(p00r), tl.abs(p00i)), tl.maximum(tl.abs(p01r), tl.abs(p01i))),
                   tl.maximum(tl.maximum(tl.abs(p10r), tl.abs(p10i)), tl.maximum(tl.abs(p11r), tl.abs(p11i))))
    inv = 1.0 / s
    return (p00r * inv, p00i * inv, p01r * inv, p01i * inv,
            p10r * inv, p10i * inv, p11r * inv, p11i * inv)


@triton.jit
def _mobius_scan(a_ptr, hop_ptr, ab_base, H, N, t0, zr, zi,
                 L: tl.constexpr, BK: tl.constexpr, SHIFT: tl.constexpr):
    """Cumulative Moebius matrices over positions s = t0 + row - SHIFT (identity where s is out of range)."""
    rows = tl.arange(0, L)
    s = t0 + rows - SHIFT
    vs = (rows >= SHIFT) & (s < N)
    s64 = tl.where(vs, s, 0).to(tl.int64)
    a_s = tl.load(a_ptr + ab_base + s64 * H, mask=vs, other=0.0).to(tl.float32)[:, None]
    b_s = tl.load(hop_ptr + ab_base + s64 * H, mask=vs, other=0.0).to(tl.float32)[:, None]
    v2 = vs[:, None]
    zeros = tl.zeros([L, BK], dtype=tl.float32)
    m00r = tl.where(v2, zeros, zeros + 1.0)
    m01r = tl.where(v2, zeros + 1.0, zeros)
    m10r = tl.where(v2, zeros - b_s * b_s, zeros)
    m11r = tl.where(v2, zeros + a_s - zr, zeros + 1.0)
    m11i = tl.where(v2, zeros - zi, zeros)
    return tl.associative_scan((m00r, zeros, m01r, zeros, m10r, zeros, m11r, m11i), 0, _mobius_combine)


@triton.jit
def _mobius_apply(m00r, m00i, m01r, m01i, m10r, m10i, m11r, m11i, gr, gi):
    x1r, x1i = _cmul(m00r, m00i, gr, gi)
    x2r, x2i = _cmul(m10r, m10i, gr, gi)
    return _cdiv(x1r + m01r, x1i + m01i, x2r + m11r, x2i + m11i)


@triton.jit
def _step(a, b, zr, zi, gpr, gpi):
    # g = 1 / (a - z - b^2 g_prev)
    wr = a - zr - b * b * gpr
    wi = -zi - b * b * gpi
    d = wr * wr + wi * wi
    return wr / d, -wi / d


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
def _row(x, rows3, r: tl.constexpr):
    return tl.sum(tl.where(rows3 == r, x, 0.0), axis=0)


# ----------------------------------------------------------------------------- forward kernels


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


@triton.jit
def _g_maps_kernel(a_ptr, hop_ptr, z_re_ptr, z_im_ptr, mc_ptr, N, H, K, nC,
                   L: tl.constexpr, BK: tl.constexpr):
    pid_c = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    ab_base = b.to(tl.int64) * N * H + h
    kk = tl.arange(0, BK)
    km = kk < K
    zr = tl.load(z_re_ptr + h * K + kk, mask=km, other=0.0).to(tl.float32)[None, :]
    zi = tl.load(z_im_ptr + h * K + kk, mask=km, other=1.0).to(tl.float32)[None, :]
    m00r, m00i, m01r, m01i, m10r, m10i, m11r, m11i = _mobius_scan(
        a_ptr, hop_ptr, ab_base, H, N, pid_c * L, zr, zi, L, BK, 0)
    rows2 = tl.arange(0, L)[:, None]
    _store_chunk_matrix(mc_ptr, bh, nC, pid_c, K, kk, km, _row(m00r, rows2, L - 1), _row(m00i, rows2, L - 1),
                        _row(m01r, rows2, L - 1), _row(m01i, rows2, L - 1), _row(m10r, rows2, L - 1),
                        _row(m10i, rows2, L - 1), _row(m11r, rows2, L - 1), _row(m11i, rows2, L - 1))


@triton.jit
def _g_scan_kernel(mc_ptr, g0_ptr, gs_ptr, nC, K, CB: tl.constexpr, BK: tl.constexpr):
    bh = tl.program_id(0)
    kk = tl.arange(0, BK)
    km = kk < K
    rows = tl.arange(0, CB)
    rows2 = rows[:, None]
    gr = tl.load(g0_ptr + bh * K * 2 + kk * 2, mask=km, other=0.0)[None, :]
    gi = tl.load(g0_ptr + bh * K * 2 + kk * 2 + 1, mask=km, other=0.0)[None, :]
    gbase = bh.to(tl.int64) * (nC + 1) * K * 2
    tl.store(gs_ptr + gbase + kk[None, :] * 2, gr, mask=km[None, :])
    tl.store(gs_ptr + gbase + kk[None, :] * 2 + 1, gi, mask=km[None, :])
    zeros = tl.zeros([CB, BK], dtype=tl.float32)
    for cb in range(0, nC, CB):
        cidx = cb + rows
        v = (cidx < nC)[:, None] & km[None, :]
        src = mc_ptr + (bh * nC + cidx[:, None]).to(tl.int64) * K * 8 + kk[None, :] * 8
        m00r = tl.load(src + 0, mask=v, other=1.0)
        m00i = tl.load(src + 1, mask=v, other=0.0)
        m01r = tl.load(src + 2, mask=v, other=0.0)
        m01i = tl.load(src + 3, mask=v, other=0.0)
        m10r = tl.load(src + 4, mask=v, other=0.0)
        m10i = tl.load(src + 5, mask=v, other=0.0)
        m11r = tl.load(src + 6, mask=v, other=1.0)
        m11i = tl.load(src + 7, mask=v, other=0.0)
        c00r, c00i, c01r, c01i, c10r, c10i, c11r, c11i = tl.associative_scan(
            (m00r, m00i, m01r, m01i, m10r, m10i, m11r, m11i), 0, _mobius_combine)
        nr, ni = _mobius_apply(c00r, c00i, c01r, c01i, c10r, c10i, c11r, c11i, gr + zeros, gi + zeros)
        dst = gs_ptr + gbase + (cidx[:, None] + 1).to(tl.int64) * K * 2 + kk[None, :] * 2
        tl.store(dst, nr, mask=v)
        tl.store(dst + 1, ni, mask=v)
        gr = _row(nr, rows2, CB - 1)[None, :]
        gi = _row(ni, rows2, CB - 1)[None, :]


@triton.jit
def _y_chunk_kernel(a_ptr, hop_ptr, u_ptr, c_re_ptr, c_im_ptr, z_re_ptr, z_im_ptr, gs_ptr, ys_ptr,
                    ay_ptr, by_ptr, o_ptr, N, H, K, P, nC,
                    L: tl.constexpr, BK: tl.constexpr, BP: tl.constexpr, MODE: tl.constexpr):
    """MODE 0: chunk affine map of y (A: (BH,nC,K,2), B: (BH,nC,K,P,2)). MODE 1: write o."""
    pid_c = tl.program_id(0)
    bh = tl.program_id(1)
    pb = tl.program_id(2)
    b = bh // H
    h = bh % H
    ab_base = b.to(tl.int64) * N * H + h
    rows = tl.arange(0, L)
    t = pid_c * L + rows
    vt = t < N
    t64 = tl.where(vt, t, 0).to(tl.int64)
    kk = tl.arange(0, BK)
    km = kk < K
    pp = pb * BP + tl.arange(0, BP)
    pm = pp < P
    gpr, gpi, gr, gi, b_t, zr, zi = _g_window(a_ptr, hop_ptr, z_re_ptr, z_im_ptr, gs_ptr, ab_base, h, bh,
                                              pid_c, N, H, K, nC, L, BK)
    uoff = (ab_base + t64 * H)[:, None] * P + pp[None, :]
    umask = vt[:, None] & pm[None, :]
    u = tl.load(u_ptr + uoff, mask=umask, other=0.0).to(tl.float32)
    zeros3 = tl.zeros([L, BK, BP], dtype=tl.float32)
    v2 = vt[:, None]
    ar = tl.where(v2, -b_t * gr, 1.0)[:, :, None] + zeros3
    ai = tl.where(v2, -b_t * gi, 0.0)[:, :, None] + zeros3
    br = gr[:, :, None] * u[:, None, :]
    bi = gi[:, :, None] * u[:, None, :]
    acr, aci, bcr, bci = tl.associative_scan((ar, ai, br, bi), 0, _affine_combine)
    k3 = kk[None, :, None]
    p3 = pp[None, None, :]
    kp_mask = km[:, None] & pm[None, :]
    if MODE == 0:
        rows3 = rows[:, None, None]
        abase = (bh * nC + pid_c).to(tl.int64) * K * 2
        lr = _row(acr, rows3, L - 1)
        li = _row(aci, rows3, L - 1)
        first_p = (tl.arange(0, BP) == 0)[None, :]
        a_lr = tl.sum(tl.where(first_p, lr, 0.0), axis=1)
        a_li = tl.sum(tl.where(first_p, li, 0.0), axis=1)
        tl.store(ay_ptr + abase + kk * 2, a_lr, mask=km & ((kk * 0 + pb) == 0))
        tl.store(ay_ptr + abase + kk * 2 + 1, a_li, mask=km & ((kk * 0 + pb) == 0))
        boff = ((bh * nC + pid_c).to(tl.int64) * K + kk[:, None]) * P * 2 + pp[None, :] * 2
        tl.store(by_ptr + boff, _row(bcr, rows3, L - 1), mask=kp_mask)
        tl.store(by_ptr + boff + 1, _row(bci, rows3, L - 1), mask=kp_mask)
    else:
        yoff = ((bh * (nC + 1) + pid_c).to(tl.int64) * K + k3) * P * 2 + p3 * 2
        ymask = km[None, :, None] & pm[None, None, :]
        ysr = tl.load(ys_ptr + yoff, mask=ymask, other=0.0)
        ysi = tl.load(ys_ptr + yoff + 1, mask=ymask, other=0.0)
        yr = acr * ysr - aci * ysi + bcr
        yi = acr * ysi + aci * ysr + bci
        coff = (ab_base + t64 * H)[:, None] * K + kk[None, :]
        cmask = vt[:, None] & km[None, :]
        cr = tl.load(c_re_ptr + coff, mask=cmask, other=0.0).to(tl.float32)
        ci = tl.load(c_im_ptr + coff, mask=cmask, other=0.0).to(tl.float32)
        o = tl.sum(cr[:, :, None] * yr + ci[:, :, None] * yi, axis=1)
        tl.store(o_ptr + uoff, o.to(o_ptr.dtype.element_ty), mask=umask)


# ----------------------------------------------------------------------------- forward, time_loop="sequential"
# Version 2 of the in-chunk passes: one step per position with the state in registers, no scan along time.


@triton.jit
def _g_maps_seq_kernel(a_ptr, hop_ptr, z_re_ptr, z_im_ptr, mc_ptr, N, H, K, nC,
                       L: tl.constexpr, BK: tl.constexpr):
    """Same output as `_g_maps_kernel` (up to the projective scale): M_last ... M_first of the chunk."""
    pid_c = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    ab_base = b.to(tl.int64) * N * H + h
    kk = tl.arange(0, BK)
    km = kk < K
    zr = tl.load(z_re_ptr + h * K + kk, mask=km, other=0.0).to(tl.float32)
    zi = tl.load(z_im_ptr + h * K + kk, mask=km, other=1.0).to(tl.float32)
    zeros = tl.zeros([BK], dtype=tl.float32)
    m00r = zeros + 1.0
    m00i = zeros
    m01r = zeros
    m01i = zeros
    m10r = zeros
    m10i = zeros
    m11r = zeros + 1.0
    m11i = zeros
    t0 = pid_c * L
    t1 = tl.minimum(t0 + L, N)
    off = ab_base + t0.to(tl.int64) * H      # element offset of (b, t, h) in a / hop, advanced by H per step
    for _t in range(t0, t1):
        a_t = tl.load(a_ptr + off).to(tl.float32)
        b_t = tl.load(hop_ptr + off).to(tl.float32)
        # M <- M_t M with M_t = [[0, 1], [-b^2, a - z]]: row 0 <- row 1, row 1 <- -b^2 row 0 + (a - z) row 1
        b2 = b_t * b_t
        wr = a_t - zr
        wi = -zi
        n10r = wr * m10r - wi * m10i - b2 * m00r
        n10i = wr * m10i + wi * m10r - b2 * m00i
        n11r = wr * m11r - wi * m11i - b2 * m01r
        n11i = wr * m11i + wi * m11r - b2 * m01i
        s = tl.maximum(tl.maximum(tl.maximum(tl.abs(m10r), tl.abs(m10i)), tl.maximum(tl.abs(m11r), tl.abs(m11i))),
                       tl.maximum(tl.maximum(tl.abs(n10r), tl.abs(n10i)), tl.maximum(tl.abs(n11r), tl.abs(n11i))))
        inv = 1.0 / s
        m00r = m10r * inv
        m00i = m10i * inv
        m01r = m11r * inv
        m01i = m11i * inv
        m10r = n10r * inv
        m10i = n10i * inv
        m11r = n11r * inv
        m11i = n11i * inv
        off += H
    _store_chunk_matrix(mc_ptr, bh, nC, pid_c, K, kk, km, m00r, m00i, m01r, m01i, m10r, m10i, m11r, m11i)


@triton.jit
def _y_chunk_seq_kernel(a_ptr, hop_ptr, u_ptr, c_re_ptr, c_im_ptr, z_re_ptr, z_im_ptr, gs_ptr, ys_ptr,
                        ay_ptr, by_ptr, o_ptr, N, H, K, P, nC,
                        L: tl.constexpr, BK: tl.constexpr, BP: tl.constexpr, MODE: tl.constexpr):
    """Same contract as `_y_chunk_kernel`, walking t = t0 .. min(t0 + L, N) - 1 one step at a time.

    State in registers: g (BK, 1) and y (BK, BP) complex, from the chunk-start g (Gs) and, in MODE 1,
    the chunk-start y (Ys). MODE 0 starts from y = 0 and also carries A = prod_t (-hop_t g_t), so the
    final y is the chunk map's offset B. Positions past N are never visited (identity)."""
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
    kp_mask = km[:, None] & pm[None, :]
    ar = tl.zeros([BK, 1], dtype=tl.float32) + 1.0
    ai = tl.zeros([BK, 1], dtype=tl.float32)
    yr, yi = _chunk_start_y(ys_ptr, bh, nC, pid_c, K, P, kk, pp, kp_mask, MODE, BK, BP)
    t0 = pid_c * L
    t1 = tl.minimum(t0 + L, N)
    off = ab_base + t0.to(tl.int64) * H      # element offset of (b, t, h) in a / hop, advanced by H per step
    for _t in range(t0, t1):
        a_t = tl.load(a_ptr + off).to(tl.float32)
        b_t = tl.load(hop_ptr + off).to(tl.float32)
        u_t = tl.load(u_ptr + off * P + pp, mask=pm, other=0.0).to(tl.float32)[None, :]
        gr, gi = _step(a_t, b_t, zr, zi, gr, gi)
        yr, yi = _cmul(gr, gi, u_t - b_t * yr, -b_t * yi)
        if MODE == 0:
            ar, ai = _cmul(-b_t * gr, -b_t * gi, ar, ai)
        else:
            cr = tl.load(c_re_ptr + off * K + kk, mask=km, other=0.0).to(tl.float32)[:, None]
            ci = tl.load(c_im_ptr + off * K + kk, mask=km, other=0.0).to(tl.float32)[:, None]
            o = tl.sum(cr * yr + ci * yi, axis=0)
            tl.store(o_ptr + off * P + pp, o.to(o_ptr.dtype.element_ty), mask=pm)
        off += H
    if MODE == 0:
        abase = (bh * nC + pid_c).to(tl.int64) * K * 2
        a_first = km & ((kk * 0 + pb) == 0)
        tl.store(ay_ptr + abase + kk * 2, tl.sum(ar, axis=1), mask=a_first)
        tl.store(ay_ptr + abase + kk * 2 + 1, tl.sum(ai, axis=1), mask=a_first)
        boff = ((bh * nC + pid_c).to(tl.int64) * K + kk[:, None]) * P * 2 + pp[None, :] * 2
        tl.store(by_ptr + boff, yr, mask=kp_mask)
        tl.store(by_ptr + boff + 1, yi, mask=kp_mask)


@triton.jit
def _affine_scan_kernel(a_ptr, b_ptr, init_ptr, x_ptr, nC, K, Q,
                        REVERSE: tl.constexpr, CB: tl.constexpr, BK: tl.constexpr, BQ: tl.constexpr):
    """Scan of chunk affine maps x -> A_c x + B_c.

    A (R, nC, K, 2), B (R, nC, K, Q, 2), init (R, K, Q, 2) -> X (R, nC + 1, K, Q, 2).
    Forward: X[0] = init, X[c + 1] = A_c X[c] + B_c.  Reverse: X[nC] = init, X[c] = A_c X[c + 1] + B_c.
    """
    r = tl.program_id(0)
    qb = tl.program_id(1)
    kk = tl.arange(0, BK)
    km = kk < K
    qq = qb * BQ + tl.arange(0, BQ)
    qm = qq < Q
    kq = kk[:, None] * Q * 2 + qq[None, :] * 2
    kqm = km[:, None] & qm[None, :]
    rows = tl.arange(0, CB)
    rows3 = rows[:, None, None]
    xr = tl.load(init_ptr + r.to(tl.int64) * K * Q * 2 + kq, mask=kqm, other=0.0)
    xi = tl.load(init_ptr + r.to(tl.int64) * K * Q * 2 + kq + 1, mask=kqm, other=0.0)
    xbase = r.to(tl.int64) * (nC + 1) * K * Q * 2
    if REVERSE:
        first = nC
    else:
        first = 0
    tl.store(x_ptr + xbase + first * K * Q * 2 + kq, xr, mask=kqm)
    tl.store(x_ptr + xbase + first * K * Q * 2 + kq + 1, xi, mask=kqm)
    zeros3 = tl.zeros([CB, BK, BQ], dtype=tl.float32)
    for j in range(0, nC, CB):
        if REVERSE:
            cidx = nC - 1 - j - rows
            v = cidx >= 0
            dst_c = cidx
        else:
            cidx = j + rows
            v = cidx < nC
            dst_c = cidx + 1
        cidx = tl.where(v, cidx, 0)
        dst_c = tl.where(v, dst_c, 0)
        aoff = (r * nC + cidx).to(tl.int64)[:, None] * K * 2 + kk[None, :] * 2
        am = v[:, None] & km[None, :]
        ar = tl.load(a_ptr + aoff, mask=am, other=1.0)[:, :, None] + zeros3
        ai = tl.load(a_ptr + aoff + 1, mask=am, other=0.0)[:, :, None] + zeros3
        boff = (r * nC + cidx).to(tl.int64)[:, None, None] * K * Q * 2 + kq[None, :, :]
        bm = v[:, None, None] & kqm[None, :, :]
        br = tl.load(b_ptr + boff, mask=bm, other=0.0)
        bi = tl.load(b_ptr + boff + 1, mask=bm, other=0.0)
        acr, aci, bcr, bci = tl.associative_scan((ar, ai, br, bi), 0, _affine_combine)
        nr = acr * xr[None, :, :] - aci * xi[None, :, :] + bcr
        ni = acr * xi[None, :, :] + aci * xr[None, :, :] + bci
        doff = xbase + dst_c.to(tl.int64)[:, None, None] * K * Q * 2 + kq[None, :, :]
        tl.store(x_ptr + doff, nr, mask=bm)
        tl.store(x_ptr + doff + 1, ni, mask=bm)
        xr = _row(nr, rows3, CB - 1)
        xi = _row(ni, rows3, CB - 1)


# ----------------------------------------------------------------------------- forward, time_loop="chunked"
# Version 4 of the forward's in-chunk passes: sub-chunks of LS positions as small matrices (tl.dot), in the
# manner of Mamba-2's SSD. Per sub-chunk and shift k, with c_t = -hop_t g_t and T[t, s] = prod_{s < r <= t} c_r:
#     y_t = Tinc(t) y_in + sum_{s <= t} T[t, s] g_s u_s,          Tinc(t) = prod_{r <= t} c_r
#     o_t = sum_k Re(conj(C_t) y_t) = (W u)_t + Re(Q_t y_in),     W[t, s] = sum_k Re(conj(C_t) T[t, s] g_s)
# T is never formed as a quotient of running products (they underflow at |a| ~ 1e3): its magnitude is
# exp2 of a difference of running sums of log2|c| and its phase a product of unit phases, so every entry
# is a product of the factors between s and t (to the rounding of the running log sums). Where those sums
# span few enough octaves in a sub-chunk, W is instead one dot of row factors 2^(la_t - m) and 2^(m - la_s)
# (`_w_factored`); the output pass then runs twice: factored everywhere, then entry by entry on the chunks
# where the factors would leave float32's range.


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
    graphs; tests/test_triton_compile.py checks it)."""
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
    output moves by < 1e-30 relative, products through it still vanish in float32, no 0 * inf appears, and
    the chunked backward's 1 / c stays finite."""
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
def _ksplit_rows(x, LS: tl.constexpr, BK: tl.constexpr):
    """Inverse of `_kcat_rows`."""
    return tl.split(tl.reshape(x, [LS, BK, 2]))


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
def _g_maps_chunked_kernel(a_ptr, hop_ptr, z_re_ptr, z_im_ptr, mc_ptr, N, H, K, nC,
                           LS: tl.constexpr, NS: tl.constexpr, BK: tl.constexpr):
    """Same output as `_g_maps_kernel` for chunks of LS * NS positions: the product of NS sub-chunk products,
    each an associative scan on an (LS, BK) tile, so no load waits on the step before."""
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
def _g_write_kernel(a_ptr, hop_ptr, z_re_ptr, z_im_ptr, gs_ptr, g_ptr, N, H, K, nC,
                    LS: tl.constexpr, NS: tl.constexpr, BK: tl.constexpr):
    """g_t at every position ((B, N, H, K, 2) float32) from the chunk-start g (Gs), sub-chunk by sub-chunk."""
    pid_c = tl.program_id(0)
    bh, h, ab_base, kk, km = _chunk_program(N, H, K, BK)
    zr, zi = _shift_rows(z_re_ptr, z_im_ptr, h, K, kk, km)
    rows = tl.arange(0, LS)
    rows2 = rows[:, None]
    g0r, g0i = _chunk_start_g(gs_ptr, bh, nC, pid_c, K, kk, km)
    c_start = pid_c * (LS * NS)
    n_sub = tl.minimum(NS, (N - c_start + LS - 1) // LS)
    for j in range(0, n_sub):
        t = c_start + j * LS + rows
        t64 = tl.where(t < N, t, 0).to(tl.int64)
        gr, gi, b_t, vt = _g_tile(a_ptr, hop_ptr, ab_base, H, N, c_start + j * LS, zr, zi, g0r, g0i, LS, BK)
        goff = ((ab_base + t64 * H)[:, None] * K + kk[None, :]) * 2
        gm = vt & km[None, :]
        tl.store(g_ptr + goff, gr, mask=gm)
        tl.store(g_ptr + goff + 1, gi, mask=gm)
        g0r = _row(gr, rows2, LS - 1)[None, :]
        g0i = _row(gi, rows2, LS - 1)[None, :]


@triton.jit
def _w_elementwise(la, qtr, qti, vr, vi, kk, K, lower, LS: tl.constexpr, W3D: tl.constexpr):
    """W[t, s] = sum_k exp2(la_t - la_s) Re(q_t v_s) for s <= t (q = conj(C) PH, v = conj(PH) g; (LS, BK) each),
    every entry from its own exponent difference: exact for any range of la. W3D: one (LS, LS, BK) tile."""
    kk2 = kk[None, :]
    if W3D:
        lower3 = lower[:, :, None] & (kk < K)[None, None, :]
        e3 = tl.exp2(tl.where(lower3, la[:, None, :] - la[None, :, :], float("-inf")))
        w = tl.sum(e3 * (qtr[:, None, :] * vr[None, :, :] - qti[:, None, :] * vi[None, :, :]), axis=2)
    else:
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


@triton.jit
def _y_chunk_mm_kernel(a_ptr, hop_ptr, u_ptr, c_re_ptr, c_im_ptr, z_re_ptr, z_im_ptr, gs_ptr, ys_ptr,
                       ay_ptr, by_ptr, o_ptr, g_ptr, wf_ptr, N, H, K, P, nC,
                       LS: tl.constexpr, NS: tl.constexpr, BK: tl.constexpr, BP: tl.constexpr,
                       MODE: tl.constexpr, PREC: tl.constexpr, G_IN: tl.constexpr, W3D: tl.constexpr,
                       WF: tl.constexpr = 0, WF_RANGE: tl.constexpr = 0.0):
    """Same contract as `_y_chunk_kernel` (MODE 0: the chunk's affine map of y; MODE 1: o; MODE 2, for the
    chunked backward with dL/do in u_ptr: the chunk's reverse map of the cotangent of y, stored as MODE 0),
    for a chunk of NS sub-chunks of LS positions, each done with matrices (module comment above). Carried from one
    sub-chunk to the next in registers: g (K) and y (K x BP complex). G_IN: read g_t from g_ptr (written by
    `_g_write_kernel`) instead of recomputing it. W in MODE 1: WF 0 = entry by entry (`_w_elementwise`; W3D: in
    one (LS, LS, BK) tile instead of a loop over shifts); WF 1 = one dot of factors (`_w_factored`) in every
    sub-chunk, and wf_ptr[bh, chunk] = 1 where some sub-chunk's log-decays span more than WF_RANGE octaves (its o
    is then wrong); WF 2 = the chunks so marked again, entry by entry, the rest left alone. One kernel with a
    run-time branch between the two forms needs ~90 more registers and spills (measured on an H200)."""
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
        if G_IN:
            vt = (t < N)[:, None]
            b_t = tl.load(hop_ptr + ab_base + t64 * H, mask=t < N, other=0.0).to(tl.float32)[:, None]
            goff = ((ab_base + t64 * H)[:, None] * K + kk2) * 2
            gm = vt & km[None, :]
            gr = tl.load(g_ptr + goff, mask=gm, other=0.0)
            gi = tl.load(g_ptr + goff + 1, mask=gm, other=0.0)
            la, phr, phi, lm, pr, pi = _decay_cum(gr, gi, b_t, vt)
            vr = phr * gr + phi * gi
            vi = phr * gi - phi * gr
            la_end = _row(la, rows2, LS - 1)
            pe_r = _row(phr, rows2, LS - 1)
            pe_i = _row(phi, rows2, LS - 1)
        else:
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
                w = _w_elementwise(la, qtr, qti, vr, vi, kk, K, lower, LS, W3D)
            ql = tl.exp2(la)                                     # |Tinc(t)|
            qcat = _kcat_rows(qtr * ql, -(qti * ql), LS, BK)
            o = tl.dot(w, u, input_precision=PREC) + tl.dot(qcat, _kcat_state(yr, yi, BK, BP), input_precision=PREC)
            tl.store(o_ptr + uoff, o.to(o_ptr.dtype.element_ty), mask=umask)
        if MODE == 2:
            # u holds dL/do here: the chunk's reverse map of the cotangent on the y before it,
            # E_in = conj(Tinc(end)) E_out + sum_t conj(Tinc(t)) C_t do_t, composed over the sub-chunks
            coff = (ab_base + t64 * H)[:, None] * K + kk2
            cmask = vt & km[None, :]
            cr = tl.load(c_re_ptr + coff, mask=cmask, other=0.0).to(tl.float32)
            ci = tl.load(c_im_ptr + coff, mask=cmask, other=0.0).to(tl.float32)
            ql = tl.exp2(la)
            hbr, hbi = _kdot_t(ql * (cr * phr + ci * phi), ql * (ci * phr - cr * phi), u, LS, BK, BP, PREC)
            yr, yi = yr + ar[:, None] * hbr - ai[:, None] * hbi, yi + ar[:, None] * hbi + ai[:, None] * hbr
            te = tl.exp2(la_end)
            ar, ai = _cmul(te * pe_r, -(te * pe_i), ar, ai)
        else:
            yr, yi, rr, ri, ter, tei = _state_step(yr, yi, u, la, vr, vi, la_end, pe_r, pe_i, LS, BK, BP, PREC)
            if MODE == 0:
                ar, ai = _cmul(ter, tei, ar, ai)
        if not G_IN:
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


@triton.jit
def _bwd_chunk_mm_kernel(a_ptr, hop_ptr, u_ptr, c_re_ptr, c_im_ptr, z_re_ptr, z_im_ptr, gs_ptr, ys_ptr, eb_ptr,
                         do_ptr, ubar_ptr, cbar_ptr, dg_ptr, hop1_ptr, N, H, K, P, nC,
                         LS: tl.constexpr, NS: tl.constexpr, BK: tl.constexpr, BP: tl.constexpr,
                         PREC: tl.constexpr, SPLIT_P: tl.constexpr):
    """Backward version 5's main pass: the outputs of `_bwd_main_kernel` (u_bar, c_bar, Dg, hop1) for one chunk
    and channel block, sub-chunk by sub-chunk from the last, with matrices instead of walks.

    Per sub-chunk (positions t, s; per shift; y_in = y before it, E = cotangent of its last y from after it,
    Z_t = C_t do_t + [t last] E the direct cotangent of y_t, D = do u^T, G[t, s] = T[t, s] g_s):
        u_bar = W^T do + Re(conj(R) E)                                   (R_s = G[last, s])
        c_bar_t = sum_p do_t y_t = Tinc(t) (do_t . y_in) + sum_s G[t, s] D[t, s]
        gin_t = sum_p u_t Ybar_t = sum_{t' >= t} conj(T[t', t]) C_t' D[t', t] + conj(T[last, t]) (u_t . E)
        lc_r = cotangent of log c_r = sum_{t >= r} conj(Tinc(t)) (Z_t . conj(y_in))
                                      + sum_{t >= r} sum_{s < r} conj(G[t, s]) (Z_t . u_s)
        S_r = lc_r / conj(c_r) = sum_p conj(y_{r-1}) Ybar_r,   Dg = gin - hop S,   hop1 = -Re sum_k conj(g) S
    and E <- conj(Tinc(last)) E + sum_t conj(Tinc(t)) C_t do_t for the sub-chunk before. Every product of c's
    is exp2 of a difference of running log sums times unit phases, as in the forward; 1 / conj(c_r) =
    phase(c_r) 2^-log2|c_r| with |c_r| floored at 2^-100 (`_decay_cum`), so nothing divides by hop or g.
    The y before sub-chunk j is rebuilt from the chunk start (Ys) through sub-chunks 0 .. j - 1 (NS^2 / 2
    state steps per chunk). SPLIT_P: channel sums are atomic adds into zeroed buffers, else plain stores."""
    pid_c, pb, bh, h, ab_base, kk, km, pp, pm, rows = _sub_chunk_program(N, H, K, P, BK, BP, LS)
    zr, zi = _shift_rows(z_re_ptr, z_im_ptr, h, K, kk, km)
    kk2 = kk[None, :]
    rows2 = rows[:, None]
    lower3 = (rows2 >= rows[None, :])[:, :, None] & (kk < K)[None, None, :]     # (t, s, k): s <= t
    strict3 = (rows2 > rows[None, :])[:, :, None] & (kk < K)[None, None, :]     # s < t
    kp_mask = km[:, None] & pm[None, :]
    gc_r, gc_i = _chunk_start_g(gs_ptr, bh, nC, pid_c, K, kk, km)
    yc_r, yc_i = _chunk_start_y(ys_ptr, bh, nC, pid_c, K, P, kk, pp, kp_mask, 1, BK, BP)
    eoff = ((bh * (nC + 1) + pid_c + 1).to(tl.int64) * K + kk[:, None]) * P * 2 + pp[None, :] * 2
    er = tl.load(eb_ptr + eoff, mask=kp_mask, other=0.0)
    ei = tl.load(eb_ptr + eoff + 1, mask=kp_mask, other=0.0)
    c_start = pid_c * (LS * NS)
    n_sub = tl.minimum(NS, (N - c_start + LS - 1) // LS)
    for jj in range(0, n_sub):
        j = n_sub - 1 - jj
        # g and y before sub-chunk j, rebuilt from the chunk start
        g0r, g0i = gc_r, gc_i
        yr, yi = yc_r, yc_i
        for i in range(0, j):
            ti = c_start + i * LS + rows
            ti64 = tl.where(ti < N, ti, 0).to(tl.int64)
            gr, gi, b_t, vt, la, phr, phi, lm, pr, pi, vr, vi, la_end, pe_r, pe_i = _sub_chunk(
                a_ptr, hop_ptr, ab_base, H, N, c_start + i * LS, zr, zi, g0r, g0i, LS, BK)
            u_i = tl.load(u_ptr + (ab_base + ti64 * H)[:, None] * P + pp[None, :], mask=vt & pm[None, :],
                          other=0.0).to(tl.float32)
            yr, yi, _, _, _, _ = _state_step(yr, yi, u_i, la, vr, vi, la_end, pe_r, pe_i, LS, BK, BP, PREC)
            g0r = _row(gr, rows2, LS - 1)[None, :]
            g0i = _row(gi, rows2, LS - 1)[None, :]
        t0 = c_start + j * LS
        t = t0 + rows
        t64 = tl.where(t < N, t, 0).to(tl.int64)
        gr, gi, b_t, vt, la, phr, phi, lm, pr, pi, vr, vi, la_end, pe_r, pe_i = _sub_chunk(
            a_ptr, hop_ptr, ab_base, H, N, t0, zr, zi, g0r, g0i, LS, BK)
        uoff = (ab_base + t64 * H)[:, None] * P + pp[None, :]
        umask = vt & pm[None, :]
        u = tl.load(u_ptr + uoff, mask=umask, other=0.0).to(tl.float32)
        d_o = tl.load(do_ptr + uoff, mask=umask, other=0.0).to(tl.float32)
        koff = ((ab_base + t64 * H)[:, None] * K + kk2)
        kmask = vt & km[None, :]
        cr = tl.load(c_re_ptr + koff, mask=kmask, other=0.0).to(tl.float32)
        ci = tl.load(c_im_ptr + koff, mask=kmask, other=0.0).to(tl.float32)
        qtr = cr * phr + ci * phi                                 # Qt = conj(C) PH; conj(Qt) = conj(PH) C
        qti = cr * phi - ci * phr
        e3 = tl.exp2(tl.where(lower3, la[:, None, :] - la[None, :, :], float("-inf")))   # |T[t, s]|
        w = tl.sum(e3 * (qtr[:, None, :] * vr[None, :, :] - qti[:, None, :] * vi[None, :, :]), axis=2)
        # G[t, s] = e3 PH_t V_s
        gtr = e3 * (phr[:, None, :] * vr[None, :, :] - phi[:, None, :] * vi[None, :, :])
        gti = e3 * (phr[:, None, :] * vi[None, :, :] + phi[:, None, :] * vr[None, :, :])
        sc = tl.exp2(la_end[None, :] - la)                        # |T[last, s]|
        rr = sc * (pe_r[None, :] * vr - pe_i[None, :] * vi)       # R_s = T[last, s] g_s
        ri = sc * (pe_r[None, :] * vi + pe_i[None, :] * vr)
        ecat = _kcat_state(er, ei, BK, BP)
        ycat = _kcat_state(yr, yi, BK, BP)
        dmat = tl.dot(d_o, tl.trans(u), input_precision=PREC)    # D[t, s] = do_t . u_s
        ydr, ydi = _ksplit_rows(tl.dot(d_o, tl.trans(ycat), input_precision=PREC), LS, BK)   # do_t . y_in
        uer, uei = _ksplit_rows(tl.dot(u, tl.trans(ecat), input_precision=PREC), LS, BK)     # u_t . E
        ye_r = tl.sum(er * yr + ei * yi, axis=1)                  # E . conj(y_in)
        ye_i = tl.sum(ei * yr - er * yi, axis=1)
        # u_bar
        ubar = tl.dot(tl.trans(w), d_o, input_precision=PREC) + tl.dot(_kcat_rows(rr, ri, LS, BK), ecat,
                                                                         input_precision=PREC)
        # c_bar = Tinc (do . y_in) + sum_s G D
        ql = tl.exp2(la)
        d3 = dmat[:, :, None]
        cbr = ql * (phr * ydr - phi * ydi) + tl.sum(gtr * d3, axis=1)
        cbi = ql * (phr * ydi + phi * ydr) + tl.sum(gti * d3, axis=1)
        # gin = sum_t' conj(G[t', t] / g_t) C_t' D[t', t] + conj(T[last, t]) (u_t . E)
        xr = tl.sum(e3 * qtr[:, None, :] * d3, axis=0)             # conj(PH_t') C_t' = conj(Qt_t')
        xi = -tl.sum(e3 * qti[:, None, :] * d3, axis=0)
        tlr = sc * (pe_r[None, :] * phr + pe_i[None, :] * phi)   # conj(T[last, t]) = sc conj(PH_last) PH_t
        tli = sc * (pe_r[None, :] * phi - pe_i[None, :] * phr)
        ginr = phr * xr - phi * xi + tlr * uer - tli * uei
        gini = phr * xi + phi * xr + tlr * uei + tli * uer
        # lc_r, part 1: reverse running sum of conj(Tinc(t)) (Z_t . conj(y_in))
        last = rows2 == LS - 1
        zyr = cr * ydr + ci * ydi + tl.where(last, ye_r[None, :], 0.0)     # C conj(do . y_in) + [last] E . conj(y_in)
        zyi = ci * ydr - cr * ydi + tl.where(last, ye_i[None, :], 0.0)
        q1r = ql * (phr * zyr + phi * zyi)
        q1i = ql * (phr * zyi - phi * zyr)
        lcr = tl.cumsum(q1r, axis=0, reverse=True)
        lci = tl.cumsum(q1i, axis=0, reverse=True)
        # part 2: sum_{t >= r} sum_{s < r} conj(G[t, s]) (Z_t . u_s),  Z_t . u_s = C_t D[t, s] + [t last] (E . u_s)
        last3 = (rows2 == LS - 1)[:, :, None]
        zdr = cr[:, None, :] * d3 + tl.where(last3, uer[None, :, :], 0.0)
        zdi = ci[:, None, :] * d3 + tl.where(last3, uei[None, :, :], 0.0)
        mr = tl.where(strict3, gtr * zdr + gti * zdi, 0.0)
        mi = tl.where(strict3, gtr * zdi - gti * zdr, 0.0)
        mr = tl.cumsum(mr, axis=0, reverse=True)                  # rows r: sum over t >= r
        mi = tl.cumsum(mi, axis=0, reverse=True)
        lcr += tl.sum(tl.where(strict3, mr, 0.0), axis=1)         # columns s < r
        lci += tl.sum(tl.where(strict3, mi, 0.0), axis=1)
        # S = lc / conj(c) = lc phase(c) 2^-log2|c|
        inv = tl.exp2(-lm)
        s_r = inv * (lcr * pr - lci * pi)
        s_i = inv * (lcr * pi + lci * pr)
        dgr = ginr - b_t * s_r
        dgi = gini - b_t * s_i
        h1 = -tl.sum(gr * s_r + gi * s_i, axis=1)
        goff = koff * 2
        if SPLIT_P:
            tl.atomic_add(cbar_ptr + goff, cbr, mask=kmask)
            tl.atomic_add(cbar_ptr + goff + 1, cbi, mask=kmask)
            tl.atomic_add(dg_ptr + goff, dgr, mask=kmask)
            tl.atomic_add(dg_ptr + goff + 1, dgi, mask=kmask)
            tl.atomic_add(hop1_ptr + ab_base + t64 * H, h1, mask=t < N)
        else:
            tl.store(cbar_ptr + goff, cbr, mask=kmask)
            tl.store(cbar_ptr + goff + 1, cbi, mask=kmask)
            tl.store(dg_ptr + goff, dgr, mask=kmask)
            tl.store(dg_ptr + goff + 1, dgi, mask=kmask)
            tl.store(hop1_ptr + ab_base + t64 * H, h1, mask=t < N)
        tl.store(ubar_ptr + uoff, ubar.to(ubar_ptr.dtype.element_ty), mask=umask)
        # E for the sub-chunk before: conj(Tinc(last)) E + sum_t conj(Tinc(t)) C_t do_t
        hbr, hbi = _kdot_t(ql * qtr, -(ql * qti), d_o, LS, BK, BP, PREC)
        te = tl.exp2(la_end)
        ter = (te * pe_r)[:, None]
        tei = (te * pe_i)[:, None]
        er, ei = ter * er + tei * ei + hbr, ter * ei - tei * er + hbi


# ----------------------------------------------------------------------------- backward kernels


@triton.jit
def _ybar_elems(hop_ptr, a_ptr, ab_base, H, N, pid_c, zr, zi, gr, gi, c_re_ptr, c_im_ptr, do_ptr, K, P,
                pp, pm, L: tl.constexpr, BK: tl.constexpr, BP: tl.constexpr):
    """Reverse affine elements of Ybar: Ybar_t = coef_t Ybar_{t+1} + C_t do_t (coef = 1, src = 0 past N)."""
    rows = tl.arange(0, L)
    t = pid_c * L + rows
    vt = t < N
    t64 = tl.where(vt, t, 0).to(tl.int64)
    kk = tl.arange(0, BK)
    km = kk < K
    gnr, gni, b_n, vn = _g_next(a_ptr, hop_ptr, ab_base, H, N, pid_c, zr, zi, gr, gi, L)
    zeros3 = tl.zeros([L, BK, BP], dtype=tl.float32)
    er = tl.where(vn, -b_n * gnr, 1.0)[:, :, None] + zeros3
    ei = tl.where(vn, b_n * gni, 0.0)[:, :, None] + zeros3
    coff = (ab_base + t64 * H)[:, None] * K + kk[None, :]
    cmask = vt[:, None] & km[None, :]
    cr = tl.load(c_re_ptr + coff, mask=cmask, other=0.0).to(tl.float32)
    ci = tl.load(c_im_ptr + coff, mask=cmask, other=0.0).to(tl.float32)
    uoff = (ab_base + t64 * H)[:, None] * P + pp[None, :]
    umask = vt[:, None] & pm[None, :]
    d_o = tl.load(do_ptr + uoff, mask=umask, other=0.0).to(tl.float32)
    sr = cr[:, :, None] * d_o[:, None, :]
    si = ci[:, :, None] * d_o[:, None, :]
    return er, ei, sr, si, cr, ci, d_o, uoff, umask, gnr, gni, b_n, vn


@triton.jit
def _ybar_maps_kernel(a_ptr, hop_ptr, c_re_ptr, c_im_ptr, z_re_ptr, z_im_ptr, gs_ptr, do_ptr,
                      ab_ptr, bb_ptr, N, H, K, P, nC,
                      L: tl.constexpr, BK: tl.constexpr, BP: tl.constexpr):
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
    gpr, gpi, gr, gi, b_t, zr, zi = _g_window(a_ptr, hop_ptr, z_re_ptr, z_im_ptr, gs_ptr, ab_base, h, bh,
                                              pid_c, N, H, K, nC, L, BK)
    er, ei, sr, si, cr, ci, d_o, uoff, umask, gnr, gni, b_n, vn = _ybar_elems(
        hop_ptr, a_ptr, ab_base, H, N, pid_c, zr, zi, gr, gi, c_re_ptr, c_im_ptr, do_ptr, K, P, pp, pm, L, BK, BP)
    acr, aci, bcr, bci = tl.associative_scan((er, ei, sr, si), 0, _affine_combine, reverse=True)
    rows3 = tl.arange(0, L)[:, None, None]
    lr = _row(acr, rows3, 0)
    li = _row(aci, rows3, 0)
    first_p = (tl.arange(0, BP) == 0)[None, :]
    abase = (bh * nC + pid_c).to(tl.int64) * K * 2
    tl.store(ab_ptr + abase + kk * 2, tl.sum(tl.where(first_p, lr, 0.0), axis=1), mask=km & ((kk * 0 + pb) == 0))
    tl.store(ab_ptr + abase + kk * 2 + 1, tl.sum(tl.where(first_p, li, 0.0), axis=1), mask=km & ((kk * 0 + pb) == 0))
    boff = ((bh * nC + pid_c).to(tl.int64) * K + kk[:, None]) * P * 2 + pp[None, :] * 2
    kp_mask = km[:, None] & pm[None, :]
    tl.store(bb_ptr + boff, _row(bcr, rows3, 0), mask=kp_mask)
    tl.store(bb_ptr + boff + 1, _row(bci, rows3, 0), mask=kp_mask)


@triton.jit
def _bwd_main_kernel(a_ptr, hop_ptr, u_ptr, c_re_ptr, c_im_ptr, z_re_ptr, z_im_ptr, gs_ptr, ys_ptr, yb_ptr,
                     do_ptr, ubar_ptr, cbar_ptr, dg_ptr, hop1_ptr, N, H, K, P, nC,
                     L: tl.constexpr, BK: tl.constexpr, BP: tl.constexpr):
    pid_c = tl.program_id(0)
    bh = tl.program_id(1)
    pb = tl.program_id(2)
    b = bh // H
    h = bh % H
    ab_base = b.to(tl.int64) * N * H + h
    rows = tl.arange(0, L)
    t = pid_c * L + rows
    vt = t < N
    t64 = tl.where(vt, t, 0).to(tl.int64)
    kk = tl.arange(0, BK)
    km = kk < K
    pp = pb * BP + tl.arange(0, BP)
    pm = pp < P
    k3 = kk[None, :, None]
    p3 = pp[None, None, :]
    ymask = km[None, :, None] & pm[None, None, :]
    gpr, gpi, gr, gi, b_t, zr, zi = _g_window(a_ptr, hop_ptr, z_re_ptr, z_im_ptr, gs_ptr, ab_base, h, bh,
                                              pid_c, N, H, K, nC, L, BK)
    # y_{t-1}: affine scan over the shifted positions s = t - 1 (row 0 = the chunk's carried-in y)
    s = t - 1
    vs = (rows >= 1) & (s < N)
    s64 = tl.where(vs, s, 0).to(tl.int64)
    b_s = tl.load(hop_ptr + ab_base + s64 * H, mask=vs, other=0.0).to(tl.float32)[:, None]
    u_s = tl.load(u_ptr + (ab_base + s64 * H)[:, None] * P + pp[None, :], mask=vs[:, None] & pm[None, :],
                  other=0.0).to(tl.float32)
    zeros3 = tl.zeros([L, BK, BP], dtype=tl.float32)
    vs2 = vs[:, None]
    ar = tl.where(vs2, -b_s * gpr, 1.0)[:, :, None] + zeros3
    ai = tl.where(vs2, -b_s * gpi, 0.0)[:, :, None] + zeros3
    br = gpr[:, :, None] * u_s[:, None, :]
    bi = gpi[:, :, None] * u_s[:, None, :]
    acr, aci, bcr, bci = tl.associative_scan((ar, ai, br, bi), 0, _affine_combine)
    yoff = ((bh * (nC + 1) + pid_c).to(tl.int64) * K + k3) * P * 2 + p3 * 2
    ysr = tl.load(ys_ptr + yoff, mask=ymask, other=0.0)
    ysi = tl.load(ys_ptr + yoff + 1, mask=ymask, other=0.0)
    ypr = acr * ysr - aci * ysi + bcr
    ypi = acr * ysi + aci * ysr + bci
    uoff = (ab_base + t64 * H)[:, None] * P + pp[None, :]
    umask = vt[:, None] & pm[None, :]
    u = tl.load(u_ptr + uoff, mask=umask, other=0.0).to(tl.float32)
    b3 = b_t[:, :, None]
    rr = u[:, None, :] - b3 * ypr
    ri = -b3 * ypi
    g3r = gr[:, :, None]
    g3i = gi[:, :, None]
    yr, yi = _cmul(g3r, g3i, rr, ri)
    # Ybar_t: reverse affine scan with the right carry = Ybar at the next chunk's start
    er, ei, sr, si, cr, ci, d_o, uoff2, umask2, gnr, gni, b_n, vn = _ybar_elems(
        hop_ptr, a_ptr, ab_base, H, N, pid_c, zr, zi, gr, gi, c_re_ptr, c_im_ptr, do_ptr, K, P, pp, pm, L, BK, BP)
    ecr, eci, scr, sci = tl.associative_scan((er, ei, sr, si), 0, _affine_combine, reverse=True)
    yboff = ((bh * (nC + 1) + pid_c + 1).to(tl.int64) * K + k3) * P * 2 + p3 * 2
    cyr = tl.load(yb_ptr + yboff, mask=ymask, other=0.0)
    cyi = tl.load(yb_ptr + yboff + 1, mask=ymask, other=0.0)
    ybr = ecr * cyr - eci * cyi + scr
    ybi = ecr * cyi + eci * cyr + sci
    # u_bar = Re sum_k conj(g) Ybar ; r_bar = conj(g) Ybar
    rbr = g3r * ybr + g3i * ybi
    rbi = g3r * ybi - g3i * ybr
    ubar = tl.sum(rbr, axis=1)
    tl.store(ubar_ptr + uoff, ubar.to(ubar_ptr.dtype.element_ty), mask=umask)
    # channel sums (atomics: P may be split over programs)
    kmask = vt[:, None] & km[None, :]
    koff = ((ab_base + t64 * H)[:, None] * K + kk[None, :]) * 2
    d3 = d_o[:, None, :]
    tl.atomic_add(cbar_ptr + koff, tl.sum(d3 * yr, axis=2), mask=kmask)
    tl.atomic_add(cbar_ptr + koff + 1, tl.sum(d3 * yi, axis=2), mask=kmask)
    # Dg = sum_p conj(r) Ybar
    tl.atomic_add(dg_ptr + koff, tl.sum(rr * ybr + ri * ybi, axis=2), mask=kmask)
    tl.atomic_add(dg_ptr + koff + 1, tl.sum(rr * ybi - ri * ybr, axis=2), mask=kmask)
    # hop_bar (y part) = Re sum_{k,p} -conj(y_{t-1}) r_bar
    h1 = -tl.sum(tl.sum(ypr * rbr + ypi * rbi, axis=2), axis=1)
    tl.atomic_add(hop1_ptr + ab_base + t64 * H, h1, mask=vt)


# ----------------------------------------------------------------------------- backward, bwd_loop="sequential"
# Version 3 of the backward's (L, K, BLOCK_P) passes: sequential walks over t with the state in registers,
# no tl.associative_scan on (L, K, BLOCK_P) tiles. Same inputs and outputs as `_ybar_maps` / `_bwd_main`.


@triton.jit
def _ybar_maps_seq_kernel(a_ptr, hop_ptr, c_re_ptr, c_im_ptr, z_re_ptr, z_im_ptr, gs_ptr, do_ptr,
                          ab_ptr, bb_ptr, N, H, K, P, nC,
                          L: tl.constexpr, BK: tl.constexpr, BP: tl.constexpr, STAGES: tl.constexpr):
    """Same output as `_ybar_maps_kernel`: the chunk's reverse map Ybar_{t0} = A Ybar_{t1} + B.

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
    """Same outputs as `_bwd_main_kernel` (u_bar, c_bar, Dg, hop1) for one chunk and channel block per work item.

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


# ----------------------------------------------------------------------------- host side


TIME_LOOPS = ("scan", "sequential", "chunked")
DOT_PRECISIONS = ("auto", "ieee", "tf32x3", "tf32")
BWD_LOOPS = ("scan", "sequential", "chunked")


@dataclass
class ScanConfig:
    block_t: int = 32        # chunk length L
    block_p: int = 16        # channels per program (forward / Ybar passes)
    chunk_block: int = 32    # chunk maps per step of the chunk-level scans
    # Elements (shifts x channels x chunk_block) per tile of the chunk-level scans: larger tiles put more
    # loads in flight per step of their sequential walk over chunks, and fewer programs share the work.
    scan_tile: int = 512
    num_warps: int = 4
    # How the forward walks time inside a chunk: "scan" (version 1, tl.associative_scan),
    # "sequential" (version 2, one step per position, state in registers) or "chunked" (version 4,
    # sub-chunks of block_sub positions as matrices, tl.dot). The backward is chosen by bwd_loop below,
    # independently. Default "chunked": 9-11% faster forward than "sequential" from N = 16k up on an H200
    # (docs/benchmarks.md, Version 4).
    time_loop: str = "chunked"
    # Version 4: positions per sub-chunk (a power of two >= 16, at most block_t; block_t // block_sub
    # sub-chunks per chunk) and the precision of its tl.dot ("ieee": float32 FMA; "tf32x3": tensor cores
    # with float32-level error; "tf32": tensor cores, ~5e-4 relative error per product; "auto": "tf32" for
    # bf16 / float16 IO, whose own rounding (~4e-3) is the larger; for float32 IO "tf32x3" in the forward,
    # "ieee" in the version-5 backward). Sub-chunks of 16 with "tf32x3" and the factored W below: forward 13%
    # faster than sub-chunks of 32 with "ieee" and W entry by entry on an H200 (docs/benchmarks.md).
    block_sub: int = 16
    dot_precision: str = "auto"
    # Version 4: g_stored writes g_t of every position once (B x N x H x K complex float32) for both passes
    # to read, instead of each pass recomputing it by a Moebius scan; w3d forms W in one (L, L, K) tile.
    g_stored: bool = False
    w3d: bool = False
    # Version 4 output pass: W is formed as one tl.dot of per-row factors (`_w_factored`, the form of Mamba-2's
    # SSD) in every sub-chunk where the running log2-decay spans at most this many octaves for each shift, so
    # that neither factor leaves float32's range; elsewhere (|a| ~ 1e3, hop near 0) entry by entry as before.
    # 0 = always entry by entry.
    w_factor_range: float = 120.0
    # The backward's tiles hold ~3x more live values than the forward's: its own channel block and
    # warps (None = the forward's). The chunk length block_t is shared: the backward restarts from
    # the chunk-boundary states the forward saved.
    bwd_block_p: Optional[int] = None
    bwd_num_warps: Optional[int] = None
    # How the backward's (L, K, channel) passes walk time: "scan" (version 1, tl.associative_scan),
    # "sequential" (version 3: t loops with the state in registers and a per-program scratch slot) or
    # "chunked" (version 5: sub-chunks of block_sub as matrices, like the version-4 forward; correct on the
    # GPU, but 1.3x version 3's forward + backward time at its fastest blocks on an H200: docs/benchmarks.md).
    bwd_loop: str = "sequential"
    # Version 3's main pass is persistent: this many programs per SM (None = as many as its warps allow,
    # min(32, 64 // warps)) take work items from a counter; each owns a scratch slot of L x K x channel-block
    # complex.
    bwd_programs_per_sm: int | None = None
    # warps of the chunk-level scans (None: the warps of the pass they belong to)
    scan_num_warps: Optional[int] = None
    # Version 3's t loops: software-pipelining stages for their loads (1 = none; more = loads issued that many
    # steps ahead through shared memory, more registers).
    bwd_stages: int = 1

    def __post_init__(self):
        _check_time_loop(self.time_loop)
        _check_bwd_loop(self.bwd_loop)
        v = self.bwd_programs_per_sm
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ValueError(f"ScanConfig.bwd_programs_per_sm must be an int >= 1 or None, got {v!r}")
        v = self.bwd_stages
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"ScanConfig.bwd_stages must be an int >= 1, got {v!r}")
        for name in ("g_stored", "w3d"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ScanConfig.{name} must be a bool, got {getattr(self, name)!r}")
        v = self.w_factor_range
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 200:
            raise ValueError(f"ScanConfig.w_factor_range must be a number in [0, 200] (octaves; 0 = off), got {v!r}")
        if self.dot_precision not in DOT_PRECISIONS:
            raise ValueError(f"ScanConfig.dot_precision must be one of {DOT_PRECISIONS}, got {self.dot_precision!r}")
        for name in ("block_t", "block_p", "chunk_block", "num_warps", "bwd_block_p", "bwd_num_warps", "block_sub",
                     "scan_tile", "scan_num_warps"):
            v = getattr(self, name)
            if v is None and (name.startswith("bwd_") or name == "scan_num_warps"):
                continue
            if not isinstance(v, int) or v < 1 or v & (v - 1):
                raise ValueError(f"ScanConfig.{name} must be a power of two >= 1, got {v!r}")
        if self.time_loop == "chunked" or self.bwd_loop == "chunked":
            _check_chunked(self)


def _check_chunked(cfg) -> None:
    # tl.dot needs every dimension >= 16; a sub-chunk cannot be longer than its chunk
    if cfg.block_sub < 16 or cfg.block_sub > cfg.block_t:
        raise ValueError(f"time_loop='chunked' needs 16 <= block_sub <= block_t, got block_sub={cfg.block_sub}, "
                         f"block_t={cfg.block_t}")


def _check_time_loop(value) -> None:
    if value not in TIME_LOOPS:
        raise ValueError(f"ScanConfig.time_loop must be one of {TIME_LOOPS}, got {value!r}")


def _check_bwd_loop(value) -> None:
    if value not in BWD_LOOPS:
        raise ValueError(f"ScanConfig.bwd_loop must be one of {BWD_LOOPS}, got {value!r}")


def _next_pow2(x: int) -> int:
    return 1 << max(0, (int(x) - 1).bit_length())


def default_config(P: int, K: int, time_loop: str = "chunked", bwd_loop: str = "sequential") -> ScanConfig:
    """Blocks chosen by `kernel_bench.py --sweep` on an H100 (N=262144, d_model=1024, P=64, K=8;
    docs/benchmarks.md). Version 3 backward (the default): chunks of 64, forward 32 channels x 4 warps,
    backward 64 channels x 1 warp, 8 programs per SM. Version 1 backward: chunks of 16 (its associative
    scans spill at longer chunks), backward 64 channels x 8 warps. Version 4 forward (the default; swept on an
    H200, `kernel_bench.py --sweep-chunked`, then `--sweep-wf`): sub-chunks of 16 positions with tf32x3 dots
    for float32 IO and the factored W (ScanConfig's defaults), up to 64 channels (a whole head) per program,
    4 warps."""
    BK = _next_pow2(K)
    bp = max(1, min(_next_pow2(P), max(1, 256 // BK)))
    bwd_bp = max(1, min(_next_pow2(P), max(1, 512 // BK)))
    if time_loop == "chunked":      # version 4 keeps a head's channels together (its W matrix is per head)
        bp = max(bp, min(_next_pow2(P), 64))
    if bwd_loop == "sequential":
        return ScanConfig(block_t=64, block_p=bp, chunk_block=16, num_warps=4, time_loop=time_loop,
                          bwd_block_p=bwd_bp, bwd_num_warps=1, bwd_loop=bwd_loop, bwd_programs_per_sm=8)
    if bwd_loop == "chunked":       # fastest of kernel_bench.py --sweep-v5 on an H200 (still 1.3x version 3's time)
        return ScanConfig(block_t=64, block_p=bp, chunk_block=16, num_warps=4, time_loop=time_loop,
                          bwd_block_p=min(_next_pow2(P), 64), bwd_num_warps=4, bwd_loop=bwd_loop, block_sub=16)
    return ScanConfig(block_t=16, block_p=bp, chunk_block=16, num_warps=4, time_loop=time_loop,
                      bwd_block_p=bwd_bp, bwd_num_warps=8, bwd_loop=bwd_loop, block_sub=16)


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


# Tests set this to fill every kernel-written buffer with NaN first (checks that every element is written).
POISON = False


def _empty(*shape, dtype, device) -> torch.Tensor:
    x = torch.empty(*shape, dtype=dtype, device=device)
    return x.fill_(float("nan")) if POISON else x


def _empty_like(x: torch.Tensor) -> torch.Tensor:
    return _empty(*x.shape, dtype=x.dtype, device=x.device)


def _c(x: torch.Tensor) -> torch.Tensor:
    return x if x.is_contiguous() else x.contiguous()


def _bwd_programs(cfg: ScanConfig, device: torch.device) -> int:
    """Programs of version 3's persistent main pass: per SM (`bwd_programs_per_sm`, default what the warps
    allow on Hopper: 64 resident warps and 32 resident programs per SM) x SMs. Programs that find no work
    left exit at once, so more than fit only costs scratch memory; fewer leave SMs idle. The interpreter
    counts one SM."""
    per_sm = cfg.bwd_programs_per_sm or min(32, max(1, 64 // (cfg.bwd_num_warps or cfg.num_warps)))
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1
    return per_sm * sms


def _affine_scan(A, Bv, init, nC, K, Q, reverse, chunk_block, num_warps, BK, tile=512):
    R = A.shape[0]
    X = _empty(R, nC + 1, K, Q, 2, dtype=torch.float32, device=A.device)
    BQ = max(1, min(_next_pow2(Q), max(1, tile // (BK * chunk_block))))
    grid = (R, triton.cdiv(Q, BQ))
    _affine_scan_kernel[grid](A, Bv, init, X, nC, K, Q, REVERSE=reverse, CB=chunk_block, BK=BK, BQ=BQ,
                              num_warps=num_warps)
    return X


def _forward(a, hop, u, c_re, c_im, z_re, z_im, g0, y0, cfg: ScanConfig):
    B, N, H, P = u.shape
    K = z_re.shape[-1]
    BK = _next_pow2(K)
    L, BP = cfg.block_t, min(cfg.block_p, _next_pow2(P))
    nC = triton.cdiv(N, L)
    nPB = triton.cdiv(P, BP)
    BH = B * H
    dev = u.device
    _check_time_loop(cfg.time_loop)      # the dataclass checks at construction; this catches later edits
    if cfg.time_loop == "chunked":
        return _forward_chunked(a, hop, u, c_re, c_im, z_re, z_im, g0, y0, cfg)
    seq = cfg.time_loop == "sequential"
    g_maps = _g_maps_seq_kernel if seq else _g_maps_kernel
    y_chunk = _y_chunk_seq_kernel if seq else _y_chunk_kernel
    Mc = _empty(BH, nC, K, 8, dtype=torch.float32, device=dev)
    g_maps[(nC, BH)](a, hop, z_re, z_im, Mc, N, H, K, nC, L=L, BK=BK, num_warps=cfg.num_warps)
    Gs = _empty(BH, nC + 1, K, 2, dtype=torch.float32, device=dev)
    _g_scan_kernel[(BH,)](Mc, g0, Gs, nC, K, CB=cfg.chunk_block, BK=BK, num_warps=cfg.num_warps)
    del Mc
    Ay = _empty(BH, nC, K, 2, dtype=torch.float32, device=dev)
    By = _empty(BH, nC, K, P, 2, dtype=torch.float32, device=dev)
    grid = (nC, BH, nPB)
    y_chunk[grid](a, hop, u, c_re, c_im, z_re, z_im, Gs, By, Ay, By, u, N, H, K, P, nC,
                  L=L, BK=BK, BP=BP, MODE=0, num_warps=cfg.num_warps)
    Ys = _affine_scan(Ay, By, y0, nC, K, P, False, cfg.chunk_block, cfg.scan_num_warps or cfg.num_warps, BK,
                      cfg.scan_tile)
    del Ay, By
    o = _empty_like(u)
    y_chunk[grid](a, hop, u, c_re, c_im, z_re, z_im, Gs, Ys, Gs, Ys, o, N, H, K, P, nC,
                  L=L, BK=BK, BP=BP, MODE=1, num_warps=cfg.num_warps)
    return o, Gs, Ys


def _dot_precision(cfg: ScanConfig, io_dtype: torch.dtype, backward: bool = False) -> str:
    """tl.dot's input_precision for versions 4 and 5. "auto": TF32 for 16-bit IO; for float32 IO, three TF32
    products ("tf32x3": the same error as float32 FMA against float64 on an H200, 13% faster forward) in the
    version-4 forward, float32 FMA in the version-5 backward (not measured with tf32x3 on a GPU)."""
    if cfg.dot_precision != "auto":
        return cfg.dot_precision
    if io_dtype != torch.float32:
        return "tf32"
    return "ieee" if backward else "tf32x3"


def _forward_chunked(a, hop, u, c_re, c_im, z_re, z_im, g0, y0, cfg: ScanConfig):
    """Version 4 forward: same outputs as `_forward` (o, and the boundary states Gs, Ys of chunks of block_t
    that the backward restarts from); the in-chunk passes work on sub-chunks of block_sub positions."""
    _check_chunked(cfg)
    B, N, H, P = u.shape
    K = z_re.shape[-1]
    BK = max(8, _next_pow2(K))                      # 2 BK is a tl.dot dimension: >= 16
    L, LS = cfg.block_t, cfg.block_sub
    BP = max(16, min(cfg.block_p, _next_pow2(P)))
    nC = triton.cdiv(N, L)
    nPB = triton.cdiv(P, BP)
    BH = B * H
    dev = u.device
    Mc = _empty(BH, nC, K, 8, dtype=torch.float32, device=dev)
    _g_maps_chunked_kernel[(nC, BH)](a, hop, z_re, z_im, Mc, N, H, K, nC, LS=LS, NS=L // LS, BK=BK,
                                     num_warps=cfg.num_warps)
    Gs = _empty(BH, nC + 1, K, 2, dtype=torch.float32, device=dev)
    _g_scan_kernel[(BH,)](Mc, g0, Gs, nC, K, CB=cfg.chunk_block, BK=_next_pow2(K), num_warps=cfg.num_warps)
    del Mc
    g_all = Gs
    if cfg.g_stored:
        g_all = _empty(B, N, H, K, 2, dtype=torch.float32, device=dev)
        _g_write_kernel[(nC, BH)](a, hop, z_re, z_im, Gs, g_all, N, H, K, nC, LS=LS, NS=L // LS, BK=BK,
                                  num_warps=cfg.num_warps)
    Ay = _empty(BH, nC, K, 2, dtype=torch.float32, device=dev)
    By = _empty(BH, nC, K, P, 2, dtype=torch.float32, device=dev)
    grid = (nC, BH, nPB)
    prec = _dot_precision(cfg, u.dtype)
    meta = dict(LS=LS, NS=L // LS, BK=BK, BP=BP, PREC=prec, G_IN=cfg.g_stored, W3D=cfg.w3d,
                WF_RANGE=float(cfg.w_factor_range), num_warps=cfg.num_warps)
    _y_chunk_mm_kernel[grid](a, hop, u, c_re, c_im, z_re, z_im, Gs, By, Ay, By, u, g_all, Gs, N, H, K, P, nC,
                             MODE=0, **meta)
    Ys = _affine_scan(Ay, By, y0, nC, K, P, False, cfg.chunk_block, cfg.scan_num_warps or cfg.num_warps, _next_pow2(K),
                      cfg.scan_tile)
    del Ay, By
    o = _empty_like(u)
    if cfg.w_factor_range > 0:   # W by factors, then the chunks where they do not fit again, entry by entry
        unfit = torch.empty(BH, nC, dtype=torch.int32, device=dev)     # every (bh, chunk) is written
        for wf in (1, 2):
            _y_chunk_mm_kernel[grid](a, hop, u, c_re, c_im, z_re, z_im, Gs, Ys, Gs, Ys, o, g_all, unfit,
                                     N, H, K, P, nC, MODE=1, WF=wf, **meta)
    else:
        _y_chunk_mm_kernel[grid](a, hop, u, c_re, c_im, z_re, z_im, Gs, Ys, Gs, Ys, o, g_all, Gs, N, H, K, P, nC,
                                 MODE=1, **meta)
    return o, Gs, Ys


def _backward_ybar_passes(a, hop, u, c_re, c_im, z_re, z_im, Gs, Ys, d_o, d_yN, cfg: ScanConfig):
    """Backward versions 1 and 3 up to the channel sums: Ybar chunk maps, their reverse scan (Yb = Ybar at
    every chunk start), the main pass -> u_bar, c_bar, Dg, hop1, Yb."""
    B, N, H, P = u.shape
    K = z_re.shape[-1]
    BK = _next_pow2(K)
    L, BP = cfg.block_t, min(cfg.bwd_block_p or cfg.block_p, _next_pow2(P))
    nC = triton.cdiv(N, L)
    nPB = triton.cdiv(P, BP)
    BH = B * H
    dev = u.device
    f32 = torch.float32
    nw = cfg.bwd_num_warps or cfg.num_warps
    seq = cfg.bwd_loop == "sequential"
    grid = (nC, BH, nPB)
    Ab = _empty(BH, nC, K, 2, dtype=torch.float32, device=dev)
    Bb = _empty(BH, nC, K, P, 2, dtype=torch.float32, device=dev)
    ybar_maps = _ybar_maps_seq_kernel if seq else _ybar_maps_kernel
    stages = {"STAGES": cfg.bwd_stages} if seq else {}
    ybar_maps[grid](a, hop, c_re, c_im, z_re, z_im, Gs, d_o, Ab, Bb, N, H, K, P, nC,
                    L=L, BK=BK, BP=BP, num_warps=nw, **stages)
    Yb = _affine_scan(Ab, Bb, d_yN, nC, K, P, True, cfg.chunk_block, cfg.scan_num_warps or nw, BK, cfg.scan_tile)
    del Ab, Bb
    u_bar = _empty_like(u)
    # Channel sums: atomics into zeros where several programs share a position (v1 always; v3 when P is split).
    split = nPB > 1
    sums = (lambda *s: torch.zeros(*s, dtype=f32, device=dev)) if (split or not seq) else \
        (lambda *s: _empty(*s, dtype=f32, device=dev))
    c_bar = sums(B, N, H, K, 2)
    Dg = sums(B, N, H, K, 2)
    hop1 = sums(B, N, H)
    if seq:
        n_items = nC * BH * nPB
        n_prog = min(n_items, _bwd_programs(cfg, dev))
        yscr = _empty(n_prog, L, 2, BK, BP, dtype=f32, device=dev)
        gscr = _empty(n_prog, L, 2, BK, dtype=f32, device=dev)
        work = torch.zeros(1, dtype=torch.int32, device=dev)
        _bwd_main_seq_kernel[(n_prog,)](a, hop, u, c_re, c_im, z_re, z_im, Gs, Ys, Yb, d_o, u_bar, c_bar, Dg,
                                        hop1, yscr, gscr, work, N, H, K, P, nC, BH, nPB, n_items,
                                        L=L, BK=BK, BP=BP, SPLIT_P=split, STAGES=cfg.bwd_stages,
                                        num_warps=nw)
        del yscr, gscr
    else:
        _bwd_main_kernel[grid](a, hop, u, c_re, c_im, z_re, z_im, Gs, Ys, Yb, d_o, u_bar, c_bar, Dg, hop1,
                               N, H, K, P, nC, L=L, BK=BK, BP=BP, num_warps=nw)
    return u_bar, c_bar, Dg, hop1, Yb


def _backward_chunked_passes(a, hop, u, c_re, c_im, z_re, z_im, Gs, Ys, d_o, d_yN, cfg: ScanConfig):
    """Backward version 5 up to the channel sums: the chunk maps of the cotangent of y (`_y_chunk_mm` MODE 2),
    their reverse scan (Eb[c] = cotangent of the y before chunk c; Eb[nC] = dL/dy_N), the main pass
    `_bwd_chunk_mm` -> u_bar, c_bar, Dg, hop1, Eb."""
    _check_chunked(cfg)
    B, N, H, P = u.shape
    K = z_re.shape[-1]
    BK = max(8, _next_pow2(K))
    L, LS = cfg.block_t, cfg.block_sub
    BP = max(16, min(cfg.bwd_block_p or cfg.block_p, _next_pow2(P)))
    nC = triton.cdiv(N, L)
    nPB = triton.cdiv(P, BP)
    BH = B * H
    dev = u.device
    f32 = torch.float32
    nw = cfg.bwd_num_warps or cfg.num_warps
    prec = _dot_precision(cfg, u.dtype, backward=True)
    grid = (nC, BH, nPB)
    Ab = _empty(BH, nC, K, 2, dtype=f32, device=dev)
    Bb = _empty(BH, nC, K, P, 2, dtype=f32, device=dev)
    _y_chunk_mm_kernel[grid](a, hop, d_o, c_re, c_im, z_re, z_im, Gs, Bb, Ab, Bb, d_o, Gs, Gs, N, H, K, P, nC,
                             LS=LS, NS=L // LS, BK=BK, BP=BP, MODE=2, PREC=prec, G_IN=False, W3D=False,
                             num_warps=nw)
    Eb = _affine_scan(Ab, Bb, d_yN, nC, K, P, True, cfg.chunk_block, cfg.scan_num_warps or nw, _next_pow2(K),
                      cfg.scan_tile)
    del Ab, Bb
    split = nPB > 1
    sums = (lambda *s: torch.zeros(*s, dtype=f32, device=dev)) if split else \
        (lambda *s: _empty(*s, dtype=f32, device=dev))
    u_bar = _empty_like(u)
    c_bar = sums(B, N, H, K, 2)
    Dg = sums(B, N, H, K, 2)
    hop1 = sums(B, N, H)
    _bwd_chunk_mm_kernel[grid](a, hop, u, c_re, c_im, z_re, z_im, Gs, Ys, Eb, d_o, u_bar, c_bar, Dg, hop1,
                               N, H, K, P, nC, LS=LS, NS=L // LS, BK=BK, BP=BP, PREC=prec, SPLIT_P=split,
                               num_warps=nw)
    return u_bar, c_bar, Dg, hop1, Eb


def _backward(a, hop, u, c_re, c_im, z_re, z_im, Gs, Ys, d_o, d_gN, d_yN, cfg: ScanConfig, state_grads=True):
    """Every input gradient; those of the initial state (g0, y0) only when `state_grads` (a few small
    PyTorch ops, which cost host time that matters at short N)."""
    B, N, H, P = u.shape
    K = z_re.shape[-1]
    BK = _next_pow2(K)
    L = cfg.block_t
    nC = triton.cdiv(N, L)
    BH = B * H
    dev = u.device
    nw = cfg.bwd_num_warps or cfg.num_warps
    _check_bwd_loop(cfg.bwd_loop)        # the dataclass checks at construction; this catches later edits
    if cfg.bwd_loop == "chunked":
        u_bar, c_bar, Dg, hop1, Eb = _backward_chunked_passes(a, hop, u, c_re, c_im, z_re, z_im, Gs, Ys, d_o,
                                                              d_yN, cfg)
    else:
        u_bar, c_bar, Dg, hop1, Yb = _backward_ybar_passes(a, hop, u, c_re, c_im, z_re, z_im, Gs, Ys, d_o,
                                                           d_yN, cfg)
    Ag = _empty(BH, nC, K, 2, dtype=torch.float32, device=dev)
    Bg = _empty(BH, nC, K, 1, 2, dtype=torch.float32, device=dev)
    _gbar_maps_kernel[(nC, BH)](a, hop, z_re, z_im, Gs, Dg, Ag, Bg, N, H, K, nC, L=L, BK=BK, num_warps=nw)
    Gb = _affine_scan(Ag, Bg, d_gN, nC, K, 1, True, cfg.chunk_block, cfg.scan_num_warps or nw, BK, cfg.scan_tile)
    a_bar = _empty_like(a)
    hop_bar = _empty_like(hop)
    zb = _empty(BH, nC, K, 2, dtype=torch.float32, device=dev)
    _g_final_kernel[(nC, BH)](a, hop, z_re, z_im, Gs, Dg, Gb, hop1, a_bar, hop_bar, zb, N, H, K, nC,
                              L=L, BK=BK, num_warps=nw)
    z_bar = zb.view(B, H, nC, K, 2).sum(dim=(0, 2))                   # (H, K, 2)
    grads = (a_bar, hop_bar, u_bar, c_bar[..., 0], c_bar[..., 1], z_bar[..., 0], z_bar[..., 1])
    if not state_grads:
        return grads + (None, None)
    # Initial-state gradients: one more step of each reverse scan past t = 0.
    z = torch.complex(z_re.float(), z_im.float())
    g_init = torch.view_as_complex(Gs[:, 0].contiguous()).view(B, H, K)
    b0 = hop[:, 0].float()[..., None]                                 # (B, H, 1)
    g_first = 1.0 / (a[:, 0].float()[..., None] - z - b0 * b0 * g_init)
    Gbar0 = torch.view_as_complex(Gb[:, 0, :, 0].contiguous()).view(B, H, K)
    if cfg.bwd_loop == "chunked":      # its scan carries the cotangent of the y before each chunk: y0's at 0
        d_y0 = torch.view_as_complex(Eb[:, 0].contiguous()).view(B, H, K, P)
    else:
        Ybar0 = torch.view_as_complex(Yb[:, 0].contiguous()).view(B, H, K, P)
        d_y0 = -b0[..., None] * g_first.conj()[..., None] * Ybar0
    d_g0 = b0 * b0 * (g_first * g_first).conj() * Gbar0
    return grads + (torch.view_as_real(d_g0), torch.view_as_real(d_y0))


class TritonScanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, hop, u, c_re, c_im, z_re, z_im, g0_pair, y0_pair, cfg):
        B, N, H, P = u.shape
        K = z_re.shape[-1]
        a, hop, u, c_re, c_im, z_re, z_im = (_c(x) for x in (a, hop, u, c_re, c_im, z_re, z_im))
        f32 = torch.float32
        if g0_pair is None:
            g0 = torch.zeros(B, H, K, 2, dtype=f32, device=u.device)
            y0 = torch.zeros(B, H, K, P, 2, dtype=f32, device=u.device)
        else:
            g0, y0 = _c(g0_pair.to(f32)), _c(y0_pair.to(f32))
        o, Gs, Ys = _forward(a, hop, u, c_re, c_im, z_re, z_im, g0, y0, cfg)
        nC = Gs.shape[1] - 1
        gN = Gs[:, nC].reshape(B, H, K, 2).clone()
        yN = Ys[:, nC].reshape(B, H, K, P, 2).clone()
        ctx.save_for_backward(a, hop, u, c_re, c_im, z_re, z_im, Gs, Ys)
        ctx.has_state = g0_pair is not None
        ctx.state_dtypes = (None, None) if g0_pair is None else (g0_pair.dtype, y0_pair.dtype)
        ctx.cfg = cfg
        return o, gN, yN

    @staticmethod
    def backward(ctx, d_o, d_gN, d_yN):
        a, hop, u, c_re, c_im, z_re, z_im, Gs, Ys = ctx.saved_tensors
        B, N, H, P = u.shape
        K = z_re.shape[-1]
        f32 = torch.float32
        d_o = torch.zeros_like(u) if d_o is None else _c(d_o.to(u.dtype))
        d_gN = torch.zeros(B, H, K, 2, dtype=f32, device=u.device) if d_gN is None else _c(d_gN.to(f32))
        d_yN = torch.zeros(B, H, K, P, 2, dtype=f32, device=u.device) if d_yN is None else _c(d_yN.to(f32))
        (a_bar, hop_bar, u_bar, cr_bar, ci_bar, zr_bar, zi_bar, d_g0, d_y0) = _backward(
            a, hop, u, c_re, c_im, z_re, z_im, Gs, Ys, d_o, d_gN, d_yN, ctx.cfg, state_grads=ctx.has_state)
        grads = [a_bar, hop_bar, u_bar, cr_bar.to(c_re.dtype), ci_bar.to(c_im.dtype),
                 zr_bar.to(z_re.dtype), zi_bar.to(z_im.dtype)]
        if ctx.has_state:
            grads += [d_g0.to(ctx.state_dtypes[0]), d_y0.to(ctx.state_dtypes[1])]
        else:
            grads += [None, None]
        return tuple(grads) + (None,)


def causal_resolvent_scan_triton(a, hop, u, c_re, c_im, z_re, z_im, state: Optional[State] = None,
                                 config: Optional[ScanConfig] = None) -> Tuple[torch.Tensor, State]:
    """Fused Triton BK scan. Same contract as `causal_resolvent_scan_naive`.

    float32 / bf16 inputs run the kernels (state float32 in registers, o in u's dtype);
    float64 inputs fall back to the exact recurrent path. N = 0 returns an empty o and
    the state unchanged.
    """
    tensors = (a, hop, u, c_re, c_im, z_re, z_im) + (tuple(state) if state is not None else ())
    if any(t.dtype == torch.float64 for t in tensors):
        from ..recurrent import causal_resolvent_scan_recurrent
        return causal_resolvent_scan_recurrent(a, hop, u, c_re, c_im, z_re, z_im, state)
    if u.device.type != "cuda" and not _interpret():
        raise RuntimeError("the Triton scan needs CUDA tensors (or TRITON_INTERPRET=1 on CPU)")
    B, N, H, P = u.shape
    K = z_re.shape[-1]
    if N == 0:
        if state is None:
            state = (torch.zeros(B, H, K, 2, device=u.device), torch.zeros(B, H, K, P, 2, device=u.device))
        return u.new_empty(B, 0, H, P), (state[0].float(), state[1].float())
    cfg = config or default_config(P, K)
    _check_time_loop(cfg.time_loop)
    _check_bwd_loop(cfg.bwd_loop)
    g0, y0 = (None, None) if state is None else state
    o, gN, yN = TritonScanFn.apply(a, hop, u, c_re, c_im, z_re, z_im, g0, y0, cfg)
    return o, (gN, yN)


__all__ = ["BWD_LOOPS", "ScanConfig", "TIME_LOOPS", "TritonScanFn", "causal_resolvent_scan_triton", "default_config"]
