"""The per-token scattering phase of the causal diagonal (docs/design.md 2.9).

Schur complement of the last entry (define the determinant of the empty matrix as 1):

    det(H_{1:t} - z) / det(H_{1:t-1} - z) = 1 / g_t,        g_t = [(H_{1:t} - z)^-1]_{t,t}

so the log determinant of every prefix is a sum of per-token increments, computed from the ratios alone
(docs/design.md 2.2: never the determinants themselves):

    log det(H_{1:t} - z) = - sum_{s<=t} log g_s.

**Sign convention and branch.** The phase increment of token t at shift z is

    delta_t(z) = -arg g_t(z)                              (principal arg of the complex g_t)

With Im z = eta > 0, Im g_t > 0 (docs/design.md 2.1), so arg g_t is in (0, pi) and delta_t is in (-pi, 0):
bounded, no unwrapping. The sum sum_{s<=t} delta_s is the branch of arg det(H_{1:t} - z) that is continuous
on Im z > 0, namely sum_j arg(E_j - z) over the eigenvalues E_j of H_{1:t} (each term in (-pi, 0)); modulo
2 pi it is the principal arg det(H_{1:t} - z), and sum_{s<=t} -log|g_s| = log|det(H_{1:t} - z)|.
(In floating point arg g may round to exactly 0 or pi when Im g / |g| is below the spacing of pi; since
Im g_t >= eta |g_t|^2 (Cauchy-Schwarz), that needs |g_t| below about 1e-16 / eta in float64, 1e-7 / eta in
float32: a derived estimate, not a test.)

**i0 limit.** At finite eta the phase is smoothed (each eigenvalue contributes arg(E_j - lambda - i eta)).
As eta -> 0+ with lambda not an eigenvalue of a prefix, sum_{s<=t} delta_s -> -pi N_{1:t}(lambda), N the
number of eigenvalues of H_{1:t} below lambda, and each increment tends to 0 or -pi (Cauchy interlacing:
the count grows by 0 or 1 per token; -pi exactly when the pivot 1/g_t is negative: Sylvester's law of inertia).

**Relative to the free Hamiltonian** H0 (a_t = h0_diag, the same hoppings), `token_phase(g, g_free)` returns
delta_t - delta_t^0 = arg g0_t - arg g_t in (-pi, pi): the phase token t adds to arg det(I + K(z)) of the
prefix, with det(I + K) = det(H - z) / det(H0 - z). This is `theory.scattering.token_phases` (phi_t); its sum
over the prefix is pi xi_eta(lambda), the smoothed spectral shift function xi = delta / pi, which tends to
N_H0(lambda) - N_H(lambda) as eta -> 0+.

Layout: g as real pairs (..., 2), as `causal_green` returns it ((B, N, H, K, 2)); phases (B, N, H, K), real.
The increments are pointwise in t: chunked evaluation with a carried `BKState` gives the same increments as
one pass, and the prefix phase continues by adding the carried total.
"""
from __future__ import annotations

from typing import Optional, Union

import torch

from .dispatch import causal_green
from .state import BKState


def _arg(g: torch.Tensor) -> torch.Tensor:
    if g.shape[-1] != 2:
        raise ValueError(f"g must be real pairs (..., 2), got shape {tuple(g.shape)}")
    return torch.atan2(g[..., 1], g[..., 0])


def token_phase(g: torch.Tensor, g_free: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per-token phase increment delta_t = -arg g_t, in (-pi, 0) (g: real pairs (..., 2) -> (...)).

    With `g_free` (the free Hamiltonian's g^0, same shape): delta_t - delta_t^0 = arg g0_t - arg g_t,
    in (-pi, pi). Sums over t give arg det(H_{1:t} - z) (resp. arg det(I + K) of the prefix); module docstring.
    """
    phase = -_arg(g)
    if g_free is not None:
        if g_free.shape != g.shape:
            raise ValueError(f"g_free must have g's shape {tuple(g.shape)}, got {tuple(g_free.shape)}")
        phase = phase + _arg(g_free)
    return phase


def free_green(hop: torch.Tensor, h0_diag: Union[float, torch.Tensor], z_re: torch.Tensor, z_im: torch.Tensor, *,
               state: Optional[BKState] = None, backend: Optional[str] = "auto") -> torch.Tensor:
    """g^0 (B, N, H, K, 2): the causal diagonal of H0 (diagonal h0_diag, the hoppings `hop` (B, N, H)).

    `h0_diag`: a float or a tensor broadcastable to hop's shape. `state` carries the free g from an earlier
    chunk (its `g` only is read; build it from the previous g^0[:, -1]). Runs the dispatcher's `causal_green`.
    """
    a = torch.as_tensor(h0_diag, dtype=hop.dtype, device=hop.device).expand(hop.shape)
    g0, _ = causal_green(a, hop, z_re, z_im, state=state, backend=backend)
    return g0


__all__ = ["free_green", "token_phase"]
