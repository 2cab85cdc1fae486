"""Birman–Schwinger operators: Schatten norms, the bounds and how tight they are, spectral clipping.

Run with `pytest -s` to see the measured tightness (norm / bound) that docs/theory.md quotes.
"""
import math

import pytest
import torch

from resnet_bk_hf.theory.operators import tridiagonal_hamiltonian
from resnet_bk_hf.theory.operators import (
    birman_schwinger_grid,
    birman_schwinger_lattice,
    clip_singular_values,
    dense_hamiltonian,
    free_resolvent_kernel,
    lattice_free_resolvent,
    s1_bound_grid,
    s1_bound_lattice,
    s1_bound_lattice_simple,
    s1_bound_seed,
    s1_grid_constant,
    s2_bound_grid,
    s2_bound_lattice,
    s2_bound_lattice_simple,
    s2_bound_seed,
    schatten_norm,
)

F64 = torch.float64
GRID = torch.linspace(-10, 10, 401, dtype=F64)            # h = 0.05
SHIFTS = [complex(lam, eta) for eta in (0.1, 0.5, 1.0, 2.0) for lam in (0.0, 1.0, 3.0)]


def random_potentials(gen, batch, x):
    """Random signs and sizes under a Gaussian envelope: decaying potentials on the grid."""
    width = 1 + 3 * torch.rand(batch, 1, generator=gen, dtype=F64)
    return 2 * torch.randn(batch, x.numel(), generator=gen, dtype=F64) * torch.exp(-(x / width) ** 2)


def report(name, ratios):
    print(f"{name}: max ratio {float(ratios.max()):.4f}, median {float(ratios.median()):.4f}, "
          f"min {float(ratios.min()):.4f} over {ratios.numel()} operators")


def test_free_kernel_modulus_is_the_stated_bound():
    z = complex(0.7, 0.3)
    R0 = free_resolvent_kernel(GRID[:50], z)
    dist = (GRID[:50, None] - GRID[None, :50]).abs()
    assert torch.allclose(R0.abs(), 0.5 * torch.exp(-0.3 * dist), rtol=1e-13, atol=0)
    assert torch.allclose(R0, R0.T)                      # symmetric: the |u - v| choice
    with pytest.raises(ValueError, match="Im z must be > 0"):
        free_resolvent_kernel(GRID, complex(1.0, 0.0))
    with pytest.raises(ValueError, match="uniform"):
        birman_schwinger_grid(torch.ones(3, dtype=F64), torch.tensor([0.0, 1.0, 3.0], dtype=F64), 1j)


def test_schatten_norms_equal_singular_value_sums():
    gen = torch.Generator().manual_seed(1)
    V = random_potentials(gen, 6, GRID[::4])
    K = birman_schwinger_grid(V, GRID[::4], complex(0.5, 0.4))
    sv = torch.linalg.svdvals(K)
    assert torch.allclose(schatten_norm(K, 1), sv.sum(-1), rtol=1e-12)
    assert torch.allclose(schatten_norm(K, 2), (sv ** 2).sum(-1).sqrt(), rtol=1e-12)
    assert torch.allclose(schatten_norm(K, 3), (sv ** 3).sum(-1) ** (1 / 3), rtol=1e-12)
    assert torch.allclose(schatten_norm(K, math.inf), sv[..., 0], rtol=1e-12)
    # an independent check of S1: a normal matrix's singular values are |eigenvalues|
    Q = torch.linalg.qr(torch.randn(20, 20, generator=gen, dtype=torch.complex128)).Q
    lam = torch.randn(20, generator=gen, dtype=torch.complex128)
    N = Q @ torch.diag(lam) @ Q.mH
    assert math.isclose(float(schatten_norm(N, 1)), float(lam.abs().sum()), rel_tol=1e-12)
    with pytest.raises(ValueError, match="p must be > 0"):
        schatten_norm(K, 0)


def test_s2_bound_holds_on_random_potentials_with_tightness():
    gen = torch.Generator().manual_seed(2)
    ratios_grid, ratios_seed = [], []
    for z in SHIFTS:
        V = random_potentials(gen, 16, GRID)
        s2 = schatten_norm(birman_schwinger_grid(V, GRID, z), 2)
        bound = s2_bound_grid(V, GRID, z.imag)
        assert bool((s2 <= bound * (1 + 1e-12)).all()), z
        ratios_grid.append(s2 / bound)
        ratios_seed.append(s2 / s2_bound_seed(V, GRID, z.imag))
    report("S2 / grid bound 1/2 (h coth(eta h))^1/2 ||V||_L2", torch.cat(ratios_grid))
    report("S2 / seeds' bound 1/2 eta^-1/2 ||V||_L2", torch.cat(ratios_seed))
    assert float(torch.cat(ratios_grid).max()) > 0.5      # not vacuous on these potentials


def test_seed_s2_form_fails_on_a_coarse_grid_but_the_grid_bound_holds():
    x = torch.arange(0, 40.0, 0.5, dtype=F64)              # h = 0.5, eta = 2: eta h = 1
    V = torch.ones_like(x)                                   # broad constant potential
    s2 = schatten_norm(birman_schwinger_grid(V, x, 2j), 2)
    seed, grid = s2_bound_seed(V, x, 2.0), s2_bound_grid(V, x, 2.0)
    print(f"constant V on h=0.5, eta=2: S2={float(s2):.4f}, seeds' form {float(seed):.4f}, grid bound {float(grid):.4f}")
    assert s2 > seed and s2 <= grid


def test_s1_bounds_with_tightness_and_where_the_seed_form_fails():
    gen = torch.Generator().manual_seed(3)
    x = GRID[::2]                                            # h = 0.1: S1 needs an SVD per operator
    by_eta = {}
    for z in SHIFTS:
        V = random_potentials(gen, 6, x)
        s1 = schatten_norm(birman_schwinger_grid(V, x, z), 1)
        grid = s1_bound_grid(V, x, z)
        assert bool((s1 <= grid * (1 + 1e-9)).all()), z
        by_eta.setdefault(z.imag, []).append((s1 / s1_bound_seed(V, x, z.imag)).max())
        report(f"S1 / grid bound c(z,h)||V||_L1, z={z}", s1 / grid)
    for eta, ratios in by_eta.items():
        print(f"S1 / seeds' 1/2 eta^-1 ||V||_L1 at eta={eta}: max {float(max(ratios)):.4f}")
    assert max(float(r) for r in by_eta[0.1]) < 1           # the seeds' bound holds at small eta
    # ... and fails at large eta: a one-point potential has ||K||_S1 = 1/2 ||V||_L1 exactly.
    V = torch.zeros_like(GRID)
    V[200] = 3.0
    s1 = schatten_norm(birman_schwinger_grid(V, GRID, 2j), 1)
    assert math.isclose(float(s1), 0.5 * 0.05 * 3.0, rel_tol=1e-12)
    assert s1 > s1_bound_seed(V, GRID, 2.0)
    # c(i eta, h) = 1/2 (a Poisson kernel): the grid bound is then attained exactly (K = i x positive operator)
    assert math.isclose(s1_grid_constant(0.5j, 0.05), 0.5, rel_tol=1e-9)
    V_pos = 0.5 + torch.rand(3, x.shape[0], generator=gen, dtype=F64)
    ratio = schatten_norm(birman_schwinger_grid(V_pos, x, 0.5j), 1) / s1_bound_grid(V_pos, x, 0.5j)
    assert torch.allclose(ratio, torch.ones_like(ratio), atol=1e-9), ratio


def test_lattice_operator_is_the_models_and_its_bounds_hold():
    gen = torch.Generator().manual_seed(4)
    N = 48
    v = torch.randn(12, N, generator=gen, dtype=F64)
    hop = 0.2 + torch.rand(12, N, generator=gen, dtype=F64)
    H0 = dense_hamiltonian(torch.full_like(v, -2.0), hop)
    assert torch.equal(H0[3], tridiagonal_hamiltonian(torch.full((N,), -2.0, dtype=F64), hop[3]))
    z = complex(-1.3, 0.2)
    assert torch.allclose(lattice_free_resolvent(hop, z) @ (H0.to(torch.complex128) - z * torch.eye(N, dtype=torch.complex128)),
                          torch.eye(N, dtype=torch.complex128).expand(12, N, N), atol=1e-10)
    ratios = {"S2/Ward": [], "S2/simple": [], "S1/polar": [], "S1/simple": []}
    for z in [complex(-2, 0.05), complex(-3.5, 0.3), complex(-1, 1.0), complex(0.5, 2.0)]:
        K = birman_schwinger_lattice(v, hop, z)
        s1, s2 = schatten_norm(K, 1), schatten_norm(K, 2)
        for name, norm, bound in (("S2/Ward", s2, s2_bound_lattice(v, hop, z)),
                                  ("S2/simple", s2, s2_bound_lattice_simple(v, z)),
                                  ("S1/polar", s1, s1_bound_lattice(v, hop, z)),
                                  ("S1/simple", s1, s1_bound_lattice_simple(v, z))):
            assert bool((norm <= bound * (1 + 1e-10)).all()), (name, z)
            ratios[name].append(norm / bound)
    for name, r in ratios.items():
        report(f"lattice {name}", torch.cat(r))
    # the Ward bound is attained by a constant |v| (K = |v| R0, ||R0||_S2^2 = Im tr R0 / eta): a looser
    # bound fails here
    v_const = torch.full((2, N), 1.7, dtype=F64)
    for z in [complex(-2, 0.05), complex(0.5, 2.0)]:
        ratio = schatten_norm(birman_schwinger_lattice(v_const, hop[:2], z), 2) / s2_bound_lattice(v_const, hop[:2], z)
        assert torch.allclose(ratio, torch.ones_like(ratio), atol=1e-9), (z, ratio)


def test_spectral_clipping():
    gen = torch.Generator().manual_seed(5)
    K = birman_schwinger_lattice(3 * torch.randn(4, 30, generator=gen, dtype=F64),
                                 torch.ones(4, 30, dtype=F64), complex(-2, 0.1))
    tau = 2.0
    C = clip_singular_values(K, tau)
    sv, svc = torch.linalg.svdvals(K), torch.linalg.svdvals(C)
    assert float(sv.max()) > tau
    assert torch.allclose(svc, sv.clamp(max=tau), atol=1e-10)
    assert torch.allclose(clip_singular_values(C, tau), C, atol=1e-10)           # idempotent
    assert torch.allclose(clip_singular_values(K, float(sv.max()) + 1), K, atol=1e-10)
    # Frobenius distance = sqrt(sum (sigma - tau)_+^2)
    assert torch.allclose(schatten_norm(K - C, 2), ((sv - tau).clamp(min=0) ** 2).sum(-1).sqrt(), rtol=1e-9)
    with pytest.raises(ValueError, match="max_singular_value"):
        clip_singular_values(K, -1.0)
