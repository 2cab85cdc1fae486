"""Scattering phase, spectral shift function, Birman–Krein derivative, resonances, Clark measures.

Lattice setting of `operators.py`: H = H0 + diag(v), K(z) = |v|^{1/2} (H0 - z)^{-1} v^{1/2}.

* Fredholm determinant (regularised): det2(I + K) = det((I + K) exp(-K)) = det(I + K) exp(-tr K).
* Perturbation determinant: det(I + K(z)) = det(H - z) / det(H0 - z). With the causal continued fraction
  g_t = [(H_{1:t} - z)^{-1}]_{tt} = theta_{t-1} / theta_t (docs/design.md 2.1) it is the O(N), overflow-free product

      det(I + K(z)) = prod_t g0_t(z) / g_t(z),      g0 = the same for H0,

  and since Im g_t > 0, sum_t [arg g0_t - arg g_t] is the branch of arg det(I + K) continuous on Im z > 0
  (each term in (-pi, pi); it tends to 0 as z -> i oo), so no phase unwrapping is needed.
* Spectral shift function (smoothed at eta > 0): xi_eta(lambda) = (1/pi) arg det(I + K(lambda + i eta)).
  As eta -> 0 it is N_H0(lambda) - N_H(lambda) (eigenvalue counts below lambda) and it satisfies the trace
  formula tr(f(H) - f(H0)) = int f'(lambda) xi(lambda) dlambda (f(x) = x: int xi = tr V).
* Scattering phase: delta(lambda) = arg det2(I + K(lambda + i eta)) = pi xi_eta(lambda) - Im tr K
  = pi xi_eta(lambda) - sum_t v_t Im R0(z)_tt.
* Per-token phase: phi_t(z) = arg g0_t(z) - arg g_t(z), the phase token t adds to arg det(I + K) of the prefix
  1..t (causal; sum_t phi_t = pi xi_eta).
* Birman–Krein derivative: xi_eta'(lambda) = -(1/pi) Im tr[(H - z)^{-1} - (H0 - z)^{-1}]
  = rho_H0,eta(lambda) - rho_H,eta(lambda) (Lorentzian-smoothed densities of states), from the O(N) diagonal.
  (Birman–Krein: det S(lambda) = exp(-2 pi i xi(lambda)).)
* Resonances: peaks of a density of states (closed chain: rho_H,eta; open chain: the window's local density
  with transparent boundaries, `mourre.open_window_resolvent`), centre and half width at half maximum; for the
  open chain, poles of the continued resolvent (`resonance_poles`) give Re z and -Im z to compare.
* Clark (Aleksandrov–Clark) measures: for the site s and coupling alpha, mu_alpha is the spectral measure of the
  vector e_s for H + alpha e_s e_s^T; each has total mass ||e_s||^2 = 1, and averaged over alpha they give
  Lebesgue measure (Aleksandrov disintegration): int mu_alpha(I) dalpha = |I|.
"""
from __future__ import annotations

import math

import torch

from .mourre import surface_green
from .operators import CTYPE, RTYPE, as_complex, dense_hamiltonian, full_green_diagonal


def log_det2(K: torch.Tensor) -> torch.Tensor:
    """log det2(I + K) = log det(I + K) - tr K (complex; imaginary part = principal arg of det2, in (-pi, pi])."""
    K = K.to(CTYPE)
    eye = torch.eye(K.shape[-1], dtype=CTYPE, device=K.device)
    sign, logabs = torch.linalg.slogdet(eye + K)
    log_det = logabs.to(CTYPE) + 1j * torch.angle(sign)
    out = log_det - K.diagonal(dim1=-2, dim2=-1).sum(-1)
    return torch.complex(out.real, torch.remainder(out.imag + math.pi, 2 * math.pi) - math.pi)


def fredholm_det2(K: torch.Tensor) -> torch.Tensor:
    """det2(I + K) = det((I + K) exp(-K))."""
    return torch.exp(log_det2(K))


def causal_green(a: torch.Tensor, hop: torch.Tensor, z) -> torch.Tensor:
    """g_t = 1 / (a_t - z - hop_t^2 g_{t-1}), g_{-1} = 0: (..., N) complex128 (z broadcast over the batch)."""
    a, hop = a.to(RTYPE), hop.to(RTYPE)
    z = as_complex(z)
    g = torch.zeros(torch.broadcast_shapes(a.shape[:-1], z.shape), dtype=CTYPE, device=a.device)
    out = []
    for t in range(a.shape[-1]):
        b2 = hop[..., t] ** 2 if t > 0 else torch.zeros_like(hop[..., 0])
        g = 1.0 / (a[..., t] - z - b2 * g)
        out.append(g)
    return torch.stack(out, -1)


def token_phases(v: torch.Tensor, hop: torch.Tensor, z, h0_diag: float = -2.0) -> torch.Tensor:
    """phi_t(z) = arg g0_t(z) - arg g_t(z): the per-token phase of det(I + K(z)), (..., N) float64."""
    v = v.to(RTYPE)
    g = causal_green(h0_diag + v, hop, z)
    g0 = causal_green(torch.full_like(v, h0_diag), hop, z)
    return torch.angle(g0) - torch.angle(g)


def log_perturbation_determinant(v: torch.Tensor, hop: torch.Tensor, z, h0_diag: float = -2.0) -> torch.Tensor:
    """log det(I + K(z)) = sum_t log(g0_t / g_t), continuous branch on Im z > 0; O(N)."""
    v = v.to(RTYPE)
    g = causal_green(h0_diag + v, hop, z)
    g0 = causal_green(torch.full_like(v, h0_diag), hop, z)
    return torch.complex((g0.abs().log() - g.abs().log()).sum(-1), (torch.angle(g0) - torch.angle(g)).sum(-1))


def spectral_shift(v: torch.Tensor, hop: torch.Tensor, lambdas: torch.Tensor, eta: float,
                   h0_diag: float = -2.0) -> torch.Tensor:
    """xi_eta(lambda) = (1/pi) arg det(I + K(lambda + i eta)) for every lambda: (..., L)."""
    z = torch.complex(torch.as_tensor(lambdas, dtype=RTYPE), torch.full_like(torch.as_tensor(lambdas, dtype=RTYPE),
                                                                              eta))
    v, hop = v.to(RTYPE)[..., None, :], hop.to(RTYPE)[..., None, :]
    return token_phases(v, hop, z, h0_diag).sum(-1) / math.pi


def spectral_shift_from_eigenvalues(E: torch.Tensor, E0: torch.Tensor, lambdas: torch.Tensor,
                                    eta: float) -> torch.Tensor:
    """(1/pi) sum_j [arg(E_j - z) - arg(E0_j - z)]: the reference for `spectral_shift` (1-D spectra)."""
    z = torch.complex(torch.as_tensor(lambdas, dtype=RTYPE), torch.full_like(torch.as_tensor(lambdas, dtype=RTYPE),
                                                                              eta))
    args = torch.angle(E.to(CTYPE)[None, :] - z[:, None]).sum(-1) - torch.angle(E0.to(CTYPE)[None, :] - z[:, None]).sum(-1)
    return args / math.pi


def scattering_phase(v: torch.Tensor, hop: torch.Tensor, lambdas: torch.Tensor, eta: float,
                     h0_diag: float = -2.0) -> torch.Tensor:
    """delta(lambda) = arg det2(I + K(lambda + i eta)) = pi xi_eta(lambda) - sum_t v_t Im R0(z)_tt; (..., L)."""
    lambdas = torch.as_tensor(lambdas, dtype=RTYPE)
    z = torch.complex(lambdas, torch.full_like(lambdas, eta))
    v, hop = v.to(RTYPE)[..., None, :], hop.to(RTYPE)[..., None, :]
    G0 = full_green_diagonal(torch.full_like(v, h0_diag), hop, z)
    return token_phases(v, hop, z, h0_diag).sum(-1) - (v * G0.imag).sum(-1)


def birman_krein_derivative(v: torch.Tensor, hop: torch.Tensor, lambdas: torch.Tensor, eta: float,
                            h0_diag: float = -2.0) -> torch.Tensor:
    """xi_eta'(lambda) = -(1/pi) Im sum_t [G_tt(z) - G0_tt(z)], O(N) per lambda; (..., L)."""
    lambdas = torch.as_tensor(lambdas, dtype=RTYPE)
    z = torch.complex(lambdas, torch.full_like(lambdas, eta))
    v, hop = v.to(RTYPE)[..., None, :], hop.to(RTYPE)[..., None, :]
    G = full_green_diagonal(h0_diag + v, hop, z)
    G0 = full_green_diagonal(torch.full_like(v, h0_diag), hop, z)
    return -(G - G0).imag.sum(-1) / math.pi


def density_of_states(v: torch.Tensor, hop: torch.Tensor, lambdas: torch.Tensor, eta: float,
                      h0_diag: float = -2.0) -> torch.Tensor:
    """rho_H,eta(lambda) = (1/pi) Im tr (H - lambda - i eta)^{-1} (Lorentzian-smoothed eigenvalue density)."""
    lambdas = torch.as_tensor(lambdas, dtype=RTYPE)
    z = torch.complex(lambdas, torch.full_like(lambdas, eta))
    v, hop = v.to(RTYPE)[..., None, :], hop.to(RTYPE)[..., None, :]
    return full_green_diagonal(h0_diag + v, hop, z).imag.sum(-1) / math.pi


# ------------------------------------------------------------------------------------------------ resonances

def detect_resonances(lambdas: torch.Tensor, density: torch.Tensor, min_height: float) -> list[dict[str, float]]:
    """Peaks of a density (1-D) above `min_height`: centre (parabolic refinement), height, HWHM (interpolated)."""
    x = torch.as_tensor(lambdas, dtype=RTYPE)
    y = torch.as_tensor(density, dtype=RTYPE)
    if x.dim() != 1 or x.shape != y.shape or x.numel() < 3:
        raise ValueError(f"lambdas and density must be 1-D of the same length >= 3, got {tuple(x.shape)}, "
                         f"{tuple(y.shape)}")
    found = []
    peaks = torch.nonzero((y[1:-1] > y[:-2]) & (y[1:-1] >= y[2:]) & (y[1:-1] > min_height)).flatten() + 1
    for i in peaks.tolist():
        y0, y1, y2 = float(y[i - 1]), float(y[i]), float(y[i + 1])
        denom = y0 - 2 * y1 + y2
        shift = 0.5 * (y0 - y2) / denom if denom != 0 else 0.0
        dx = float(x[i + 1] - x[i])
        centre, height = float(x[i]) + shift * dx, y1 - 0.25 * (y0 - y2) * shift
        half = 0.5 * height
        left, right = i, i
        while left > 0 and float(y[left]) > half:
            left -= 1
        while right < len(y) - 1 and float(y[right]) > half:
            right += 1
        if float(y[left]) > half or float(y[right]) > half:
            continue  # the half maximum lies outside the scanned range: no width
        xl = float(x[left] + (half - y[left]) * (x[left + 1] - x[left]) / (y[left + 1] - y[left]))
        xr = float(x[right - 1] + (half - y[right - 1]) * (x[right] - x[right - 1]) / (y[right] - y[right - 1]))
        found.append({"center": centre, "height": height, "hwhm": 0.5 * (xr - xl)})
    return found


def open_green_diagonal(v: torch.Tensor, z: torch.Tensor, h0_diag: float = -2.0, hop: float = 1.0) -> torch.Tensor:
    """Diagonal of (H - z)^{-1} on the window of the infinite chain H = H0 + V (V living on the window, 1-D
    length W), for every z (L,): (L, W) complex. Left/right continued fractions with the transparent boundary
    self-energy b^2 g_s(z) on the end sites (`mourre.open_window_resolvent` is the dense reference)."""
    v = v.to(RTYPE)
    z = as_complex(z).reshape(-1)
    W = v.numel()
    b2 = hop ** 2
    d = (h0_diag + v).to(CTYPE)[None, :] - z[:, None]
    sigma = b2 * surface_green(z, h0_diag, hop)
    d[:, 0] = d[:, 0] - sigma
    d[:, -1] = d[:, -1] - sigma
    left, right = [None] * W, [None] * W
    g = torch.zeros_like(z)
    for t in range(W):
        g = 1.0 / (d[:, t] - b2 * g)
        left[t] = g
    g = torch.zeros_like(z)
    for t in range(W - 1, -1, -1):
        g = 1.0 / (d[:, t] - b2 * g)
        right[t] = g
    zero = torch.zeros_like(z)
    return torch.stack([1.0 / (d[:, t] - b2 * (left[t - 1] if t > 0 else zero)
                               - b2 * (right[t + 1] if t + 1 < W else zero)) for t in range(W)], dim=-1)


def open_local_density(v: torch.Tensor, lambdas: torch.Tensor, eta: float, sites=None, h0_diag: float = -2.0,
                       hop: float = 1.0) -> torch.Tensor:
    """(1/pi) Im sum_{s in sites} (H - z)^{-1}_ss for the infinite chain H = H0 + V, V living on the window
    (transparent boundaries); sites default to the whole window."""
    lambdas = torch.as_tensor(lambdas, dtype=RTYPE)
    G = open_green_diagonal(v, torch.complex(lambdas, torch.full_like(lambdas, eta)), h0_diag, hop)
    sites = slice(None) if sites is None else sites
    return G[:, sites].imag.sum(-1) / math.pi


def _continued_surface_green(z: complex, h0_diag: float, hop: float) -> complex:
    """g_s analytically continued from Im z > 0 through the band into Im z < 0 (the other root there)."""
    g = complex(surface_green(z, h0_diag, hop))
    if z.imag < 0:
        g = 1.0 / (hop ** 2 * g)   # the two roots multiply to 1/b^2
    return g


def resonance_poles(v: torch.Tensor, guesses: list[float], h0_diag: float = -2.0, hop: float = 1.0,
                    iterations: int = 200, tol: float = 1e-12) -> list[complex]:
    """Poles z (Im z < 0) of the continued open-chain resolvent near each guess: det(H_W - z - Sigma(z)) = 0
    with Sigma = b^2 g_s(z) on the end sites, solved by the fixed point z <- the eigenvalue of H_W - Sigma(z)
    nearest z."""
    v = v.to(RTYPE)
    W = v.numel()
    H = dense_hamiltonian(h0_diag + v, torch.full((W,), hop, dtype=RTYPE)).to(CTYPE)
    poles = []
    for guess in guesses:
        z = complex(guess, -1e-6)
        for _ in range(iterations):
            M = H.clone()
            sigma = hop ** 2 * _continued_surface_green(z, h0_diag, hop)
            M[0, 0] -= sigma
            M[-1, -1] -= sigma
            ev = torch.linalg.eigvals(M)
            new = complex(ev[(ev - z).abs().argmin()])
            if abs(new - z) < tol:
                z = new
                break
            z = new
        poles.append(z)
    return poles


# ------------------------------------------------------------------------------------------------------ Clark

def clark_measure(a: torch.Tensor, hop: torch.Tensor, site: int, alpha) -> tuple[torch.Tensor, torch.Tensor]:
    """Atoms and weights of mu_alpha: the spectral measure of e_site for H + alpha e_site e_site^T.

    a, hop: (N,) (H's diagonal and hopping); alpha: scalar or (A,). Returns (atoms (A, N), weights (A, N)).
    """
    a, hop = a.to(RTYPE), hop.to(RTYPE)
    N = a.shape[-1]
    if not 0 <= site < N:
        raise ValueError(f"site must be in [0, {N - 1}], got {site}")
    alpha = torch.as_tensor(alpha, dtype=RTYPE).reshape(-1)
    H = dense_hamiltonian(a, hop).expand(alpha.numel(), N, N).clone()
    H[:, site, site] += alpha
    E, Q = torch.linalg.eigh(H)
    return E, Q[:, site, :] ** 2


def clark_average(a: torch.Tensor, hop: torch.Tensor, site: int, interval: tuple[float, float],
                  num_alpha: int = 20001) -> float:
    """int mu_alpha(I) dalpha over alpha in R (alpha = tan(theta), theta in (-pi/2, pi/2), midpoint rule).

    Aleksandrov's disintegration predicts |I| = interval[1] - interval[0].
    """
    theta = (torch.arange(num_alpha, dtype=RTYPE) + 0.5) / num_alpha * math.pi - math.pi / 2
    alpha = torch.tan(theta)
    E, w = clark_measure(a, hop, site, alpha)
    inside = ((E > interval[0]) & (E < interval[1])).to(RTYPE)
    mass = (w * inside).sum(-1)                         # mu_alpha(I)
    jacobian = 1.0 / torch.cos(theta) ** 2              # dalpha / dtheta
    return float((mass * jacobian).sum() * (math.pi / num_alpha))
