"""The @triton.jit helpers shared by the forward and backward kernels of the BK scan (docs/design.md 2.2, 2.3).

Complex numbers are real pairs (re, im) everywhere; all arithmetic is float32 whatever the IO dtype.

* `_cmul`, `_cdiv`: complex product and quotient.
* `_step`: one exact step of the resolvent recurrence, g_t = 1 / (a_t - z - hop_t^2 g_{t-1}).
* g as a Moebius recurrence: g_t = p_t / q_t with (p, q)_t = M_t (p, q)_{t-1},
  M_t = [[0, 1], [-hop_t^2, a_t - z]]. `_mobius_combine` multiplies two such 2x2 complex matrices and
  renormalises the product by its largest entry (only the ratio matters, so |a| up to 1e3 never overflows;
  no determinants, docs/design.md 2.2); `_mobius_scan` is their cumulative product over an (L, K) tile
  (tl.associative_scan along time); `_mobius_apply` applies a matrix to a g.
* y is affine given g: y_t = A_t y_{t-1} + B_t with A_t = -hop_t g_t, B_t = g_t u_t; `_affine_combine`
  composes two affine maps (A2 A1, A2 B1 + B2).
* `_row`: one row of a tile (a masked sum: Triton has no dynamic row indexing).
"""
from __future__ import annotations

try:  # transformers' check_imports (remote code, see remote_code.py) skips imports inside try blocks
    import triton
    import triton.language as tl
except ImportError:
    raise


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
def _row(x, rows3, r: tl.constexpr):
    return tl.sum(tl.where(rows3 == r, x, 0.0), axis=0)

