"""Prime sieve, alpha_{p,k}, the prime-bump potential, its overlap count, the eps schedule, the positional table."""
import itertools
import math

import pytest
import torch

from resnet_bk_hf.theory.primes import (
    alpha_coefficient,
    bump_overlap,
    eps_schedule,
    gaussian_cutoff,
    positional_prime_bump,
    prime_bump_potential,
    prime_power_coefficients,
    primes_up_to,
)


def von_mangoldt(n):
    """Lambda(n) by trial division: log p if n = p^k, else 0 (an implementation independent of the sieve)."""
    for p in range(2, n + 1):
        if n % p == 0:
            while n % p == 0:
                n //= p
            return math.log(p) if n == 1 else 0.0
    return 0.0


def test_sieve_matches_known_prime_counts():
    assert primes_up_to(30).tolist() == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
    counts = {10: 4, 100: 25, 1000: 168, 10_000: 1229, 100_000: 9592, 1_000_000: 78498}
    for n, count in counts.items():
        assert primes_up_to(n).numel() == count
    assert int(primes_up_to(100).sum()) == 1060
    assert primes_up_to(1).numel() == 0 and primes_up_to(2).tolist() == [2]
    with pytest.raises(ValueError, match="non-negative integer"):
        primes_up_to(-3)


def test_alpha_coefficients_match_known_values():
    assert alpha_coefficient(2, 1, 0.5) == pytest.approx(0.34657359027997264, rel=1e-15)   # ln 2 / 2
    assert alpha_coefficient(3, 2, 0.5) == pytest.approx(0.12206803207423442, rel=1e-15)   # ln 3 / 9
    assert alpha_coefficient(5, 1, 1e-12) == pytest.approx(0.7197625155536004, rel=1e-9)   # ln 5 / sqrt 5
    assert alpha_coefficient(2, 3, 0.25) == pytest.approx(0.1457162448440193, rel=1e-14)  # ln 2 / 2^2.25
    centers, alpha, p, k = prime_power_coefficients(30, 0.5)
    powers = (p.double() ** k.double()).round().long().tolist()
    assert powers == [2, 3, 4, 5, 7, 8, 9, 11, 13, 16, 17, 19, 23, 25, 27, 29]
    assert torch.allclose(centers, torch.tensor(powers, dtype=torch.float64).log(), rtol=1e-14)
    expected = torch.tensor([von_mangoldt(n) / n ** 1.0 for n in powers], dtype=torch.float64)
    assert torch.allclose(alpha, expected, rtol=1e-13)


def test_prime_bump_potential_against_a_brute_force_sum():
    assert float(torch.trapezoid(gaussian_cutoff(torch.linspace(-5, 5, 20001, dtype=torch.float64), 0.5),
                                 torch.linspace(-5, 5, 20001, dtype=torch.float64))) == pytest.approx(1, abs=1e-9)
    eps = 0.3
    x = torch.tensor([0.4, math.log(2), 1.0, math.log(7), 2.5], dtype=torch.float64)
    brute = torch.zeros_like(x)
    for n in range(2, int(math.exp(2.5 + 8 * eps)) + 1):
        lam = von_mangoldt(n)
        if lam:
            brute += lam / n ** (0.5 + eps) * gaussian_cutoff(x - math.log(n), eps)
    assert torch.allclose(prime_bump_potential(x, eps), brute, rtol=1e-7)
    value, slope = prime_bump_potential(x, eps, derivative=True)
    assert torch.equal(value, prime_bump_potential(x, eps))
    step = 1e-6
    numeric = (prime_bump_potential(x + step, eps) - prime_bump_potential(x - step, eps)) / (2 * step)
    assert torch.allclose(slope, numeric, rtol=1e-6, atol=1e-8)


def test_finite_overlap_count():
    eps, radius = 0.05, 3.0
    x = torch.tensor([math.log(2), math.log(3), math.log(1000), 9.0], dtype=torch.float64)
    counts = bump_overlap(x, eps, radius)
    brute = [sum(1 for n in range(2, 9500) if abs(xi - math.log(n)) < radius * eps and von_mangoldt(n))
             for xi in x.tolist()]
    assert counts.tolist() == brute
    assert counts[:2].tolist() == [1, 1]           # isolated bumps at small x
    print(f"bumps within 3 eps (eps=0.05) of x = log 2, log 3, log 1000, 9: {counts.tolist()}")


def test_eps_schedule():
    assert eps_schedule(0, 100) == 1.0 and eps_schedule(100, 100) == 0.5 and eps_schedule(500, 100) == 0.5
    assert eps_schedule(50, 100) == pytest.approx(0.75)
    assert eps_schedule(25, 100, kind="linear") == pytest.approx(0.875)
    values = [eps_schedule(s, 100) for s in range(101)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    with pytest.raises(ValueError, match="kind"):
        eps_schedule(1, 10, kind="step")
    with pytest.raises(ValueError, match="eps must be"):
        eps_schedule(1, 10, end=0.0)


def test_positional_table_matches_exact_values():
    for eps in (0.5, 1.0):
        table = positional_prime_bump(4096, eps)
        idx = torch.tensor([0, 1, 2, 6, 40, 63, 64, 65, 200, 1000, 1023, 2047, 3001, 4095])
        exact = prime_bump_potential(torch.log1p(idx.double()), eps)
        rel = ((table[idx] - exact).abs() / exact.abs()).max()
        print(f"positional table eps={eps}: max relative interpolation error {float(rel):.2e}")
        assert rel < 1e-8
    assert torch.allclose(positional_prime_bump(64, 0.5, scale=2.0), 2 * positional_prime_bump(64, 0.5))
    with pytest.raises(ValueError, match="length"):
        positional_prime_bump(0, 0.5)


def test_prime_number_theorem_sets_the_level_at_eps_one_half():
    """At eps = 1/2, alpha = Lambda(n)/n, and sum_n Lambda(n)/n psi(x - log n) -> int psi = 1 (Chebyshev:
    sum_{n <= u} Lambda(n) ~ u): a check of the whole sum (sieve, weights, cutoff) against a known limit."""
    x = torch.tensor([6.0, 8.0], dtype=torch.float64)
    deviation = (prime_bump_potential(x, 0.5) - 1).abs()
    print(f"|V_0.5(x) - 1| at x = 6, 8: {[f'{d:.1e}' for d in deviation.tolist()]}")
    assert float(deviation.max()) < 1e-7
