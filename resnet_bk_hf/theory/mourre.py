"""Mourre commutator and limiting absorption (LAP) checks for the model's free lattice Hamiltonian.

H0 = b (S + S^T) + h0_diag on the chain ((S psi)_n = psi_{n+1}); its symbol is f(theta) = h0 + 2b cos theta,
band [h0 - 2b, h0 + 2b]. The conjugate operator is the lattice dilation generator

    A = 1/2 (X P + P X),    X = diag(n - c) (c = the chain's centre),    P = (S^T - S) / (2i)  (= sin theta)

and on the infinite lattice i[H0, A] = f'(theta)... = 2b sin^2 theta, i.e. the operator identity

    i[H0, A] = g(H0),    g(E) = 2b - (E - h0)^2 / (2b),

positive inside the band and 0 at its edges: the Mourre estimate E_I i[H0, A] E_I >= c_I E_I with
c_I = min_{E in I} g(E) > 0 for every closed interval I inside the band. On a finite chain the identity holds
entry by entry except at the two corner entries (0, 0) and (N-1, N-1), where the truncation of X leaves a
boundary term of size ~N/2 (`mourre_commutator_check` reports both).

LAP: for s > 1/2 and lambda inside the band, sup_{eta > 0} ||<X>^{-s} (H - lambda - i eta)^{-1} <X>^{-s}|| < oo
while the unweighted norm is 1/dist(z, spec H). On a window [0, W) that contains the support of V, the
infinite-lattice resolvent is exactly (H_W - z - Sigma(z))^{-1} with the transparent boundary self-energy
Sigma = b^2 g_s(z) at the two end sites, g_s the surface Green function of the free half-chain,
b^2 g_s^2 - (h0 - z) g_s + 1 = 0, |g_s| < 1/b (`open_window_resolvent`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .operators import CTYPE, RTYPE, as_complex, dense_hamiltonian


def conjugate_operator(n: int) -> torch.Tensor:
    """A = 1/2 (X P + P X) on a chain of n sites (complex128, Hermitian)."""
    S = torch.diag(torch.ones(n - 1, dtype=RTYPE), 1)
    X = torch.diag(torch.arange(n, dtype=RTYPE) - (n - 1) / 2).to(CTYPE)
    P = ((S.T - S) / 2j).to(CTYPE)
    return 0.5 * (X @ P + P @ X)


def mourre_symbol(E: torch.Tensor, h0_diag: float = -2.0, hop: float = 1.0) -> torch.Tensor:
    """g(E) = 2b - (E - h0)^2 / (2b): i[H0, A] = g(H0)."""
    return 2 * hop - (torch.as_tensor(E, dtype=RTYPE) - h0_diag) ** 2 / (2 * hop)


def commutator(H: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """i [H, A] = i (H A - A H)."""
    H = H.to(CTYPE)
    return 1j * (H @ A - A @ H)


def mourre_commutator_check(n: int, h0_diag: float = -2.0, hop: float = 1.0) -> dict[str, float]:
    """Compare the matrix i[H0, A] with g(H0) on an n-site chain: interior error and boundary term."""
    H0 = dense_hamiltonian(torch.full((n,), h0_diag, dtype=RTYPE), torch.full((n,), hop, dtype=RTYPE))
    C = commutator(H0, conjugate_operator(n))
    shifted = H0 - h0_diag * torch.eye(n, dtype=RTYPE)
    G = 2 * hop * torch.eye(n, dtype=RTYPE) - shifted @ shifted / (2 * hop)
    diff = (C - G).abs()
    corners = torch.zeros_like(diff, dtype=torch.bool)
    corners[0, 0] = corners[-1, -1] = True
    return {"interior_max_error": float(diff[~corners].max()), "boundary_term": float(diff[corners].max()),
            "hermitian_error": float((C - C.mH).abs().max())}


def mourre_constant(H: torch.Tensor, C: torch.Tensor, interval: tuple[float, float]) -> tuple[float, int]:
    """(lambda_min of E_I C E_I on the range of E_I, rank of E_I); E_I = spectral projector of H on I."""
    E, Q = torch.linalg.eigh(H.to(RTYPE))
    inside = (E > interval[0]) & (E < interval[1])
    if not bool(inside.any()):
        raise ValueError(f"no eigenvalue of H in {interval}")
    Qi = Q[:, inside].to(CTYPE)
    return float(torch.linalg.eigvalsh(Qi.mH @ C @ Qi).min()), int(inside.sum())


def perturbed_mourre_constant(v: torch.Tensor, interval: tuple[float, float], h0_diag: float = -2.0,
                              hop: float = 1.0) -> tuple[float, int]:
    """Mourre constant of H = H0 + diag(v): E_I(H) (g(H0) + i[V, A]) E_I(H).

    g(H0) + i[V, A] is the infinite-lattice commutator i[H, A] restricted to the chain (v must vanish on the
    two end sites, away from the truncation's boundary term).
    """
    v = v.to(RTYPE)
    n = v.numel()
    if float(v[0].abs()) + float(v[-1].abs()) > 0:
        raise ValueError("v must vanish on the end sites")
    H0 = dense_hamiltonian(torch.full((n,), h0_diag, dtype=RTYPE), torch.full((n,), hop, dtype=RTYPE))
    shifted = H0 - h0_diag * torch.eye(n, dtype=RTYPE)
    G = (2 * hop * torch.eye(n, dtype=RTYPE) - shifted @ shifted / (2 * hop)).to(CTYPE)
    C = G + commutator(torch.diag(v), conjugate_operator(n))
    return mourre_constant(H0 + torch.diag(v), C, interval)


# ----------------------------------------------------------------------------------------------------------- LAP

def surface_green(z, h0_diag: float = -2.0, hop: float = 1.0) -> torch.Tensor:
    """g_s(z) of the free half-chain: the root of b^2 g^2 - (h0 - z) g + 1 = 0 with |g| < 1/b."""
    z = as_complex(z)
    w = h0_diag - z
    root = torch.sqrt(w * w - 4 * hop ** 2)
    g1, g2 = (w + root) / (2 * hop ** 2), (w - root) / (2 * hop ** 2)
    return torch.where(g1.abs() < g2.abs(), g1, g2)


def open_window_resolvent(v: torch.Tensor, z, h0_diag: float = -2.0, hop: float = 1.0) -> torch.Tensor:
    """(H - z)^{-1} of the infinite chain H = H0 + V restricted to the window where V (1-D, length W) lives."""
    v = v.to(RTYPE)
    W = v.numel()
    z = as_complex(z)
    M = dense_hamiltonian(h0_diag + v, torch.full((W,), hop, dtype=RTYPE)).to(CTYPE) - z * torch.eye(W, dtype=CTYPE)
    sigma = hop ** 2 * surface_green(z, h0_diag, hop)
    M[0, 0] -= sigma
    M[-1, -1] -= sigma
    return torch.linalg.inv(M)


def position_weight(n: int, s: float) -> torch.Tensor:
    """<x>^{-s} = (1 + (x - c)^2)^{-s/2} over the window, c its centre."""
    x = torch.arange(n, dtype=RTYPE) - (n - 1) / 2
    return (1 + x ** 2) ** (-s / 2)


def weighted_resolvent_norms(v: torch.Tensor, lam: float, etas: Sequence[float], s: float = 1.0,
                             h0_diag: float = -2.0, hop: float = 1.0) -> dict[str, list]:
    """||<X>^{-s} R(lam + i eta) <X>^{-s}|| on the window, open (LAP: stays bounded) and closed chain (does not)."""
    W = v.numel()
    w = position_weight(W, s).to(CTYPE)
    H_closed = dense_hamiltonian(h0_diag + v.to(RTYPE), torch.full((W,), hop, dtype=RTYPE)).to(CTYPE)
    open_norms, closed_norms = [], []
    for eta in etas:
        z = complex(lam, eta)
        R_open = open_window_resolvent(v, z, h0_diag, hop)
        R_closed = torch.linalg.inv(H_closed - z * torch.eye(W, dtype=CTYPE))
        open_norms.append(float(torch.linalg.matrix_norm(w[:, None] * R_open * w[None, :], ord=2)))
        closed_norms.append(float(torch.linalg.matrix_norm(w[:, None] * R_closed * w[None, :], ord=2)))
    return {"eta": list(etas), "open": open_norms, "closed": closed_norms}
