"""The prime-bump potential and its positional form for the model.

    V_eps(x) = sum_{p prime, k >= 1} alpha_{p,k} psi_eps(x - k log p),
    alpha_{p,k} = log p / p^{k (1/2 + eps)},
    psi_eps(x) = exp(-x^2 / (2 eps^2)) / (eps sqrt(2 pi))          (Gaussian cutoff, integral 1)

Bumps sit at the logarithms of the prime powers n = p^k with weight Lambda(n) / n^{1/2 + eps} (von Mangoldt
Lambda). Terms with |x - k log p| > `TAIL_CUTOFF` * eps are dropped: each is below exp(-TAIL_CUTOFF^2/2)
(1.5e-8) of its own peak.

Positional form (`positional_prime_bump`): token position t = 0, 1, ... is placed at x_t = log(t + 1), so the
bumps fall on the positions t = p^k - 1 (the n-th token with n a prime power).
"""
from __future__ import annotations

import functools
import math

import torch

RTYPE = torch.float64
TAIL_CUTOFF = 6.0


def primes_up_to(n: int) -> torch.Tensor:
    """All primes <= n, ascending (sieve of Eratosthenes), int64."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if n < 2:
        return torch.zeros(0, dtype=torch.long)
    is_prime = torch.ones(n + 1, dtype=torch.bool)
    is_prime[:2] = False
    for p in range(2, math.isqrt(n) + 1):
        if is_prime[p]:
            is_prime[p * p::p] = False
    return torch.nonzero(is_prime).flatten()


def prime_power_coefficients(max_n: int, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(centers k log p, alpha_{p,k}, p, k) for every prime power p^k <= max_n, sorted by center."""
    _check_eps(eps)
    primes = primes_up_to(int(max_n))
    ps, ks = [], []
    k = 1
    while primes.numel():
        ps.append(primes)
        ks.append(torch.full_like(primes, k))
        k += 1
        primes = primes[primes.double() ** k <= max_n]
    if not ps:
        empty = torch.zeros(0, dtype=RTYPE)
        return empty, empty, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    p, k = torch.cat(ps), torch.cat(ks)
    log_p = p.to(RTYPE).log()
    centers = k * log_p
    alpha = log_p * torch.exp(-k * (0.5 + eps) * log_p)
    order = centers.argsort()
    return centers[order], alpha[order], p[order], k[order]


def alpha_coefficient(p: int, k: int, eps: float) -> float:
    """alpha_{p,k} = log p / p^{k (1/2 + eps)} (p is not checked for primality)."""
    _check_eps(eps)
    return math.log(p) / p ** (k * (0.5 + eps))


def gaussian_cutoff(x: torch.Tensor, eps: float) -> torch.Tensor:
    """psi_eps(x) = exp(-x^2 / (2 eps^2)) / (eps sqrt(2 pi))."""
    _check_eps(eps)
    x = torch.as_tensor(x, dtype=RTYPE)
    return torch.exp(-0.5 * (x / eps) ** 2) / (eps * math.sqrt(2 * math.pi))


def prime_bump_potential(x: torch.Tensor, eps: float, derivative: bool = False, chunk: int = 4096):
    """V_eps(x) at the points x (any shape), float64; with derivative=True also dV_eps/dx.

    Sums the prime powers within TAIL_CUTOFF * eps of x (cost: points x primes below e^{max x + 6 eps}).
    """
    _check_eps(eps)
    x = torch.as_tensor(x, dtype=RTYPE)
    flat = x.reshape(-1)
    value, slope = torch.zeros_like(flat), torch.zeros_like(flat)
    if flat.numel():
        max_n = math.exp(float(flat.max()) + TAIL_CUTOFF * eps)
        if max_n > 5e7:
            raise ValueError(f"x up to {float(flat.max()):.2f} with eps={eps} needs primes up to {max_n:.3g}; "
                             "lower x or eps")
        centers, alpha, _, _ = prime_power_coefficients(int(max_n), eps)
        for start in range(0, centers.numel(), chunk):   # chunks keep the (points x bumps) matrix small
            c, a = centers[start:start + chunk], alpha[start:start + chunk]
            offset = flat[:, None] - c[None, :]
            bumps = gaussian_cutoff(offset, eps) * a
            value += bumps.sum(-1)
            if derivative:
                slope -= (bumps * offset).sum(-1) / eps ** 2      # d psi_eps / dx = -x / eps^2 psi_eps(x)
    if derivative:
        return value.reshape(x.shape), slope.reshape(x.shape)
    return value.reshape(x.shape)


def bump_overlap(x: torch.Tensor, eps: float, radius: float = 3.0, max_n: int | None = None) -> torch.Tensor:
    """Finite-overlap check: how many bumps have |x - k log p| < radius * eps, at each point x (int64)."""
    _check_eps(eps)
    x = torch.as_tensor(x, dtype=RTYPE)
    max_n = max_n or int(math.exp(float(x.max()) + radius * eps)) + 1
    centers, _, _, _ = prime_power_coefficients(max_n, eps)
    lo = torch.searchsorted(centers, x - radius * eps)
    hi = torch.searchsorted(centers, x + radius * eps)
    return hi - lo


def eps_schedule(step: int, total_steps: int, start: float = 1.0, end: float = 0.5, kind: str = "cosine") -> float:
    """eps annealed from `start` (step 0) to `end` (step >= total_steps), cosine or linear."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    _check_eps(start)
    _check_eps(end)
    frac = min(max(step / total_steps, 0.0), 1.0)
    if kind == "cosine":
        return end + (start - end) * 0.5 * (1 + math.cos(math.pi * frac))
    if kind == "linear":
        return start + (end - start) * frac
    raise ValueError(f"kind must be 'cosine' or 'linear', got {kind!r}")


def positional_prime_bump(length: int, eps: float, scale: float = 1.0) -> torch.Tensor:
    """scale * V_eps(log(t + 1)) for token positions t = 0 .. length-1, float64 (length,).

    Where consecutive positions are closer in x than HERMITE_STEP * eps (t >= 1 / (HERMITE_STEP * eps)), values
    come from cubic Hermite interpolation of exact values and slopes on a uniform x grid of that step (error
    <= step^4 / 384 * max |d^4 V / dx^4|; measured against exact values in the tests); earlier positions are
    exact. Cached per (length, eps).
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive integer, got {length!r}")
    return scale * _positional_prime_bump_cached(length, float(eps))


HERMITE_STEP = 1.0 / 32


@functools.lru_cache(maxsize=8)
def _positional_prime_bump_cached(length: int, eps: float) -> torch.Tensor:
    _check_eps(eps)
    step = HERMITE_STEP * eps
    x = torch.log1p(torch.arange(length, dtype=RTYPE))
    exact_until = min(length, math.ceil(1.0 / step) + 1)
    out = torch.empty(length, dtype=RTYPE)
    out[:exact_until] = prime_bump_potential(x[:exact_until], eps)
    if exact_until < length:
        x0 = float(x[exact_until - 1])
        n_grid = math.ceil((float(x[-1]) - x0) / step) + 1
        grid = x0 + step * torch.arange(n_grid + 1, dtype=RTYPE)
        value, slope = prime_bump_potential(grid, eps, derivative=True)
        xs = x[exact_until:]
        i = ((xs - x0) / step).floor().long().clamp(max=n_grid - 1)
        u = (xs - grid[i]) / step
        h00, h10 = 2 * u ** 3 - 3 * u ** 2 + 1, u ** 3 - 2 * u ** 2 + u
        h01, h11 = -2 * u ** 3 + 3 * u ** 2, u ** 3 - u ** 2
        out[exact_until:] = (h00 * value[i] + h10 * step * slope[i] + h01 * value[i + 1]
                             + h11 * step * slope[i + 1])
    return out


def _check_eps(eps):
    if not (isinstance(eps, (int, float)) and not isinstance(eps, bool) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
