"""The scans over chunk maps: the short sequential step between the per-chunk passes (docs/design.md 2.3).

The per-chunk passes reduce each chunk of L positions to one map per (b, h) and shift (and channel): a Moebius
matrix for g (forward), an affine map x -> A x + B for y (forward) and for the cotangents Ybar and Gbar
(backward, in reverse). These kernels walk the N / L chunk maps of one (b, h) (and one tile of channels) in
blocks of `chunk_block` chunks, each block combined by tl.associative_scan and applied to the carried state,
and write the state at every chunk boundary:

* `_g_scan_kernel` -> Gs (BH, nC + 1, K, 2): g just before every chunk, Gs[:, 0] = g0, Gs[:, nC] = the final g.
* `_affine_scan_kernel` -> X (R, nC + 1, K, Q, 2): forward X[0] = init, X[c + 1] = A_c X[c] + B_c;
  reverse X[nC] = init, X[c] = A_c X[c + 1] + B_c.

Only these boundary states are saved between the forward and the backward ((N / L) x K x P, not N x K x P).
"""
from __future__ import annotations

import torch

try:  # transformers' check_imports (remote code, see remote_code.py) skips imports inside try blocks
    import triton
    import triton.language as tl
except ImportError:
    raise

from ..scan_config import next_pow2
from .complex_math import _affine_combine, _mobius_apply, _mobius_combine, _row
from .launches import empty, launch


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


def g_scan(Mc: torch.Tensor, g0: torch.Tensor, nC: int, K: int, chunk_block: int, num_warps: int) -> torch.Tensor:
    """g at every chunk boundary, Gs (BH, nC + 1, K, 2), from the chunk matrices Mc (BH, nC, K, 8) and g0."""
    BH = Mc.shape[0]
    Gs = empty(BH, nC + 1, K, 2, dtype=torch.float32, device=Mc.device)
    launch("g_scan", _g_scan_kernel, (BH,), Mc, g0, Gs, nC, K, CB=chunk_block, BK=next_pow2(K), num_warps=num_warps)
    return Gs


def affine_scan(pass_name: str, A, Bv, init, nC, K, Q, reverse, chunk_block, num_warps, BK, tile=512) -> torch.Tensor:
    """X (R, nC + 1, K, Q, 2) from the chunk maps A (R, nC, K, 2), Bv (R, nC, K, Q, 2) and init (R, K, Q, 2);
    tiles of about `tile` elements (shifts x channels x chunk_block) per program."""
    R = A.shape[0]
    X = empty(R, nC + 1, K, Q, 2, dtype=torch.float32, device=A.device)
    BQ = max(1, min(next_pow2(Q), max(1, tile // (BK * chunk_block))))
    grid = (R, triton.cdiv(Q, BQ))
    launch(pass_name, _affine_scan_kernel, grid, A, Bv, init, X, nC, K, Q, REVERSE=reverse, CB=chunk_block, BK=BK,
           BQ=BQ, num_warps=num_warps)
    return X


__all__ = ["affine_scan", "g_scan"]
