"""The BK scan in log-depth (parallel prefix) form, in real arithmetic only (docs/design.md 2.3).

This is the form the ONNX export uses, and the diag mode's g on CUDA: ONNX has no complex dtype, so complex
numbers are (re, im) pairs of real tensors, and an ONNX Loop of ceil(log2 N)
wide steps is about as fast in ONNX Runtime as a Loop of N narrow ones up to a
few hundred tokens and faster beyond (measured: docs/ecosystem.md). Both
recurrences are first-order maps composed by doubling (Hillis-Steele): after
the step with offset k, position t holds the composition of the maps at
positions t-2k+1 .. t.

    g: the Mobius map g -> 1 / (a_t - z - b_t^2 g) is the 2x2 matrix
       M_t = [[0, 1], [-b_t^2, a_t - z]] acting on (p, q) with g = p / q.
       Matrix products grow like the determinants that docs/design.md 2.2 forbids,
       so every partial product is renormalised (only the ratio p / q matters).
    y: the affine map y -> c_t y + g_t u_t with c_t = -b_t g_t. Window products
       of c_t are entries of a resolvent divided by g_s (docs/design.md 2.1), so they
       stay bounded by about 1 / eta and need no renormalisation.

Same signature and result as `naive.causal_resolvent_scan_naive` (shapes: `ops/bk/__init__.py`);
plain autograd gives its gradient. `torch.jit.is_tracing()` switches to a
TorchScript-compiled copy of the core so that `torch.onnx.export` (the
TorchScript exporter Optimum uses) records the doubling loop as an ONNX Loop
with a data-dependent trip count instead of unrolling it for one length.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch

from .state import BKState, scan_dtypes, zero_state


def _shift(x: torch.Tensor, k: int, fill: float) -> torch.Tensor:
    """x[:, t] -> x[:, t - k] along the sequence axis; the first k positions get `fill` (the identity map)."""
    n = x.shape[1]
    return torch.cat([torch.full_like(x[:, :k], fill), x[:, :n - k]], dim=1)


Mobius = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
               torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def mobius_prefix(a: torch.Tensor, hop: torch.Tensor, z_re: torch.Tensor, z_im: torch.Tensor) -> Mobius:
    """Window products M_t ... M_1 of the Mobius matrices, every entry a real (re, im) pair, each (B, N, H, K):
    (m11, m12, m21, m22) as (m11_re, m11_im, m12_re, ..., m22_im), each renormalised to max entry 1."""
    n = a.shape[1]
    b = hop.unsqueeze(-1)                                     # (B, N, H, 1)
    # Mobius matrices [[m11, m12], [m21, m22]] per (b, t, h, k), each entry a complex pair.
    w_re = a.unsqueeze(-1) - z_re                             # a_t - z
    w_im = torch.zeros_like(w_re) - z_im
    zero = torch.zeros_like(w_re)
    m11_re, m11_im = zero, zero
    m12_re, m12_im = zero + 1.0, zero
    m21_re, m21_im = zero - b * b, zero
    m22_re, m22_im = w_re, w_im
    k = 1
    while k < n:
        # Later window (current entries) times earlier window (shifted entries).
        p11_re, p11_im = _shift(m11_re, k, 1.0), _shift(m11_im, k, 0.0)
        p12_re, p12_im = _shift(m12_re, k, 0.0), _shift(m12_im, k, 0.0)
        p21_re, p21_im = _shift(m21_re, k, 0.0), _shift(m21_im, k, 0.0)
        p22_re, p22_im = _shift(m22_re, k, 1.0), _shift(m22_im, k, 0.0)
        n11_re = m11_re * p11_re - m11_im * p11_im + m12_re * p21_re - m12_im * p21_im
        n11_im = m11_re * p11_im + m11_im * p11_re + m12_re * p21_im + m12_im * p21_re
        n12_re = m11_re * p12_re - m11_im * p12_im + m12_re * p22_re - m12_im * p22_im
        n12_im = m11_re * p12_im + m11_im * p12_re + m12_re * p22_im + m12_im * p22_re
        n21_re = m21_re * p11_re - m21_im * p11_im + m22_re * p21_re - m22_im * p21_im
        n21_im = m21_re * p11_im + m21_im * p11_re + m22_re * p21_im + m22_im * p21_re
        n22_re = m21_re * p12_re - m21_im * p12_im + m22_re * p22_re - m22_im * p22_im
        n22_im = m21_re * p12_im + m21_im * p12_re + m22_re * p22_im + m22_im * p22_re
        # Renormalise: the map is unchanged by a common factor; keep the largest entry near 1.
        scale = torch.stack([n11_re.abs(), n11_im.abs(), n12_re.abs(), n12_im.abs(),
                             n21_re.abs(), n21_im.abs(), n22_re.abs(), n22_im.abs()]).amax(dim=0)
        inv = 1.0 / scale
        m11_re, m11_im, m12_re, m12_im = n11_re * inv, n11_im * inv, n12_re * inv, n12_im * inv
        m21_re, m21_im, m22_re, m22_im = n21_re * inv, n21_im * inv, n22_re * inv, n22_im * inv
        k = k * 2
    return m11_re, m11_im, m12_re, m12_im, m21_re, m21_im, m22_re, m22_im


def apply_mobius(m: Mobius, g0_re: torch.Tensor, g0_im: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """g_t = (m11 g0 + m12) / (m21 g0 + m22) for the state g0 (B, H, K) carried in: (g_re, g_im), (B, N, H, K)."""
    m11_re, m11_im, m12_re, m12_im, m21_re, m21_im, m22_re, m22_im = m
    g0r, g0i = g0_re.unsqueeze(1), g0_im.unsqueeze(1)         # (B, 1, H, K)
    num_re = m11_re * g0r - m11_im * g0i + m12_re
    num_im = m11_re * g0i + m11_im * g0r + m12_im
    den_re = m21_re * g0r - m21_im * g0i + m22_re
    den_im = m21_re * g0i + m21_im * g0r + m22_im
    den2 = den_re * den_re + den_im * den_im
    return (num_re * den_re + num_im * den_im) / den2, (num_im * den_re - num_re * den_im) / den2


def parallel_scan_core(a: torch.Tensor, hop: torch.Tensor, u: torch.Tensor, c_re: torch.Tensor,
                       c_im: torch.Tensor, z_re: torch.Tensor, z_im: torch.Tensor, g0_re: torch.Tensor,
                       g0_im: torch.Tensor, y0_re: torch.Tensor, y0_im: torch.Tensor) -> List[torch.Tensor]:
    """All inputs real and already in the scan dtype. Returns [o, g_N re, g_N im, y_N re, y_N im]."""
    n = a.shape[1]
    b = hop.unsqueeze(-1)                                     # (B, N, H, 1)
    g_re, g_im = apply_mobius(mobius_prefix(a, hop, z_re, z_im), g0_re, g0_im)      # (B, N, H, K)
    # y_t = A_t y0 + Y_t, composed from (c_t, g_t u_t).
    A_re, A_im = -b * g_re, -b * g_im
    uu = u.unsqueeze(3)                                       # (B, N, H, 1, P)
    Y_re, Y_im = g_re.unsqueeze(-1) * uu, g_im.unsqueeze(-1) * uu
    k = 1
    while k < n:
        sY_re, sY_im = _shift(Y_re, k, 0.0), _shift(Y_im, k, 0.0)
        Are, Aim = A_re.unsqueeze(-1), A_im.unsqueeze(-1)
        Y_re = Y_re + Are * sY_re - Aim * sY_im
        Y_im = Y_im + Are * sY_im + Aim * sY_re
        sA_re, sA_im = _shift(A_re, k, 1.0), _shift(A_im, k, 0.0)
        A_re, A_im = A_re * sA_re - A_im * sA_im, A_re * sA_im + A_im * sA_re
        k = k * 2
    y0r, y0i = y0_re.unsqueeze(1), y0_im.unsqueeze(1)         # (B, 1, H, K, P)
    Are, Aim = A_re.unsqueeze(-1), A_im.unsqueeze(-1)
    y_re = Y_re + Are * y0r - Aim * y0i
    y_im = Y_im + Are * y0i + Aim * y0r                       # (B, N, H, K, P)
    # o_t = sum_k Re(conj(C_t,k) y_t^(k))
    o = (c_re.unsqueeze(-1) * y_re + c_im.unsqueeze(-1) * y_im).sum(dim=3)
    return [o, g_re[:, -1], g_im[:, -1], y_re[:, -1], y_im[:, -1]]


_scripted_core = None


def _core_for_tracing():
    global _scripted_core
    if _scripted_core is None:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script is deprecated; the exporter needs it
            _scripted_core = torch.jit.script(parallel_scan_core)
    return _scripted_core


def causal_resolvent_scan_parallel(a, hop, u, c_re, c_im, z_re, z_im,
                                   state: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
                                   ) -> Tuple[torch.Tensor, BKState]:
    rtype, _ = scan_dtypes(a, hop, u, c_re, c_im, z_re, z_im)
    B, _, H, P = u.shape
    K = z_re.shape[-1]
    g0, y0 = zero_state(B, H, K, P, rtype, u.device) if state is None else (state[0].to(rtype), state[1].to(rtype))
    core = _core_for_tracing() if torch.jit.is_tracing() else parallel_scan_core
    o, g_re, g_im, y_re, y_im = core(a.to(rtype), hop.to(rtype), u.to(rtype), c_re.to(rtype), c_im.to(rtype),
                                     z_re.to(rtype), z_im.to(rtype), g0[..., 0], g0[..., 1], y0[..., 0], y0[..., 1])
    return o.to(u.dtype), BKState(torch.stack([g_re, g_im], dim=-1), torch.stack([y_re, y_im], dim=-1))


def causal_green_parallel(a: torch.Tensor, hop: torch.Tensor, z_re: torch.Tensor, z_im: torch.Tensor,
                          g0: Optional[torch.Tensor] = None) -> torch.Tensor:
    """g_t as real pairs (B, N, H, K, 2) by Mobius doubling; same contract as `naive.causal_green_naive`.
    The diag mode's vectorised path: ceil(log2 N) wide steps instead of N narrow ones, plain autograd."""
    rtype, _ = scan_dtypes(a, hop, z_re, z_im)
    B, N, H = a.shape
    K = z_re.shape[-1]
    g0 = torch.zeros(B, H, K, 2, dtype=rtype, device=a.device) if g0 is None else g0.to(rtype)
    a, hop, z_re, z_im = a.to(rtype), hop.to(rtype), z_re.to(rtype), z_im.to(rtype)
    g_re, g_im = apply_mobius(mobius_prefix(a, hop, z_re, z_im), g0[..., 0], g0[..., 1])
    return torch.stack([g_re, g_im], dim=-1)
