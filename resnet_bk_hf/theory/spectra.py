"""Eigenvalue spacing statistics: unfolding, nearest-neighbour spacings, Wigner surmises, Poisson.

For a spectrum with mean level spacing 1 (after unfolding), the nearest-neighbour spacing density is

    Poisson (uncorrelated levels):   P(s) = exp(-s)                              CDF 1 - exp(-s)
    GOE (Wigner surmise, beta = 1):  P(s) = (pi/2) s exp(-pi s^2 / 4)            CDF 1 - exp(-pi s^2 / 4)
    GUE (Wigner surmise, beta = 2):  P(s) = (32/pi^2) s^2 exp(-4 s^2 / pi)       CDF erf(2s/sqrt(pi)) - (4s/pi) exp(-4s^2/pi)

Unfolding maps the levels E_i through a smooth fit N_smooth(E) of the counting staircase N(E_i) = i (a
polynomial least-squares fit; the edge fraction `trim` of the levels is dropped, where the fit is poor).
The spacing ratio r_i = min(s_i, s_{i+1}) / max(s_i, s_{i+1}) needs no unfolding; its large-N means are
Poisson 2 ln 2 - 1 = 0.3863, GOE 0.5307, GUE 0.5996 (Atas, Bogomolny, Giraud, Roux, PRL 110, 084101, 2013).
The fit verdict is the model with the smallest Kolmogorov–Smirnov distance to the unfolded spacings.
"""
from __future__ import annotations

import math

import torch

RTYPE = torch.float64
MEAN_SPACING_RATIO = {"poisson": 2 * math.log(2) - 1, "goe": 0.5307, "gue": 0.5996}


def wigner_surmise(s: torch.Tensor, beta: int) -> torch.Tensor:
    """Density of the Wigner surmise, beta = 1 (GOE) or 2 (GUE)."""
    s = torch.as_tensor(s, dtype=RTYPE)
    if beta == 1:
        return (math.pi / 2) * s * torch.exp(-math.pi * s ** 2 / 4)
    if beta == 2:
        return (32 / math.pi ** 2) * s ** 2 * torch.exp(-4 * s ** 2 / math.pi)
    raise ValueError(f"beta must be 1 (GOE) or 2 (GUE), got {beta!r}")


def poisson_spacing(s: torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(s, dtype=RTYPE)
    return torch.exp(-s)


SPACING_CDFS = {
    "poisson": lambda s: 1 - torch.exp(-s),
    "goe": lambda s: 1 - torch.exp(-math.pi * s ** 2 / 4),
    "gue": lambda s: torch.erf(2 * s / math.sqrt(math.pi)) - (4 * s / math.pi) * torch.exp(-4 * s ** 2 / math.pi),
}


def unfold_spectrum(eigenvalues: torch.Tensor, degree: int = 7, trim: float = 0.1) -> torch.Tensor:
    """Unfolded levels N_smooth(E_i) of one spectrum (1-D), the central (1 - 2 trim) fraction, ascending."""
    E = torch.as_tensor(eigenvalues, dtype=RTYPE).flatten().sort().values
    n = E.numel()
    if n < degree + 3:
        raise ValueError(f"need at least degree + 3 = {degree + 3} levels to unfold, got {n}")
    if not 0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim}")
    # Normalise E to [-1, 1] so the Vandermonde fit is well conditioned.
    span = (E[-1] - E[0]).clamp(min=1e-300)
    u = 2 * (E - E[0]) / span - 1
    basis = torch.stack([u ** j for j in range(degree + 1)], dim=-1)
    count = torch.arange(n, dtype=RTYPE)
    coef = torch.linalg.lstsq(basis, count[:, None]).solution
    smooth = (basis @ coef).flatten()
    lo = math.floor(trim * n)
    hi = n - lo
    return smooth[lo:hi]


def nearest_neighbor_spacings(eigenvalues: torch.Tensor, degree: int = 7, trim: float = 0.1) -> torch.Tensor:
    """Spacings of the unfolded spectrum, rescaled to mean 1."""
    s = unfold_spectrum(eigenvalues, degree, trim).diff()
    return s / s.mean()


def spacing_ratios(eigenvalues: torch.Tensor) -> torch.Tensor:
    """r_i = min(s_i, s_{i+1}) / max(s_i, s_{i+1}) of consecutive raw spacings (no unfolding needed)."""
    E = torch.as_tensor(eigenvalues, dtype=RTYPE).flatten().sort().values
    s = E.diff()
    a, b = s[:-1], s[1:]
    return torch.minimum(a, b) / torch.maximum(a, b).clamp(min=1e-300)


def ks_distance(samples: torch.Tensor, cdf) -> float:
    """Kolmogorov–Smirnov distance sup |F_empirical - F|."""
    x = torch.as_tensor(samples, dtype=RTYPE).flatten().sort().values
    n = x.numel()
    F = cdf(x)
    upper = torch.arange(1, n + 1, dtype=RTYPE) / n - F
    lower = F - torch.arange(0, n, dtype=RTYPE) / n
    return float(torch.maximum(upper, lower).max())


def spacing_fit(spacings: torch.Tensor, ratios: torch.Tensor | None = None) -> dict[str, object]:
    """KS distances of the spacings to Poisson, GOE and GUE; verdict = the nearest; mean ratio if given."""
    out: dict[str, object] = {f"ks_{name}": ks_distance(spacings, cdf) for name, cdf in SPACING_CDFS.items()}
    out["verdict"] = min(SPACING_CDFS, key=lambda name: out[f"ks_{name}"])
    out["num_spacings"] = int(torch.as_tensor(spacings).numel())
    if ratios is not None:
        r = torch.as_tensor(ratios, dtype=RTYPE)
        out["mean_ratio"] = float(r.mean())
        out["mean_ratio_reference"] = dict(MEAN_SPACING_RATIO)
    return out
