"""Mourre commutator identity and estimate for the lattice Laplacian; LAP weighted-resolvent bounds as eta -> 0."""
import itertools

import pytest
import torch

from resnet_bk_hf.theory.operators import full_green_diagonal
from resnet_bk_hf.theory.mourre import (
    mourre_commutator_check,
    mourre_symbol,
    open_window_resolvent,
    perturbed_mourre_constant,
    surface_green,
    weighted_resolvent_norms,
)
from resnet_bk_hf.theory.operators import dense_hamiltonian

F64 = torch.float64


@pytest.mark.parametrize("h0_diag,hop", [(-2.0, 1.0), (0.5, 0.7)])
def test_commutator_identity_holds_away_from_the_two_corner_entries(h0_diag, hop):
    check = mourre_commutator_check(60, h0_diag, hop)
    print(f"h0={h0_diag}, b={hop}: interior error {check['interior_max_error']:.1e}, "
          f"corner term {check['boundary_term']:.2f}")
    assert check["interior_max_error"] < 1e-12 and check["hermitian_error"] < 1e-12
    assert check["boundary_term"] > 1          # the truncation's boundary term, reported, not hidden


def test_mourre_estimate_for_free_and_perturbed_chain():
    gen = torch.Generator().manual_seed(11)
    interval = (-3.0, -1.0)
    c_interval = float(mourre_symbol(torch.tensor([-3.0, -1.0])).min())     # = 1.5
    v = torch.zeros(120, dtype=F64)
    free, rank = perturbed_mourre_constant(v, interval)
    assert rank > 0 and free >= c_interval - 1e-12
    bump = torch.randn(20, generator=gen, dtype=F64)
    results = {}
    for amp in (0.02, 0.05, 0.5):
        v = torch.zeros(120, dtype=F64)
        v[50:70] = amp * bump
        results[amp] = perturbed_mourre_constant(v, interval)[0]
    print(f"Mourre constant on {interval}: free {free:.4f} (predicted >= {c_interval}), perturbed "
          + ", ".join(f"amp {a}: {c:.4f}" for a, c in results.items()))
    assert results[0.02] > 0.5 * c_interval and results[0.05] > 0       # stable under small perturbations
    assert results[0.5] < results[0.05]                                  # the compact error grows with V


def test_transparent_boundary_reproduces_the_infinite_chain():
    gen = torch.Generator().manual_seed(12)
    v = torch.zeros(30, dtype=F64)
    v[10:20] = torch.randn(10, generator=gen, dtype=F64)
    z = complex(-1.3, 0.2)
    big = torch.zeros(3000, dtype=F64)
    big[1485:1515] = v
    G_big = full_green_diagonal(-2 + big, torch.ones(3000, dtype=F64), torch.tensor(z, dtype=torch.complex128))
    assert torch.allclose(open_window_resolvent(v, z).diagonal(), G_big[1485:1515], atol=1e-12)
    g = surface_green(torch.tensor([complex(-1, 0.1), complex(-5, 0.01), complex(0.5, 1.0)]))
    assert bool((g.imag > 0).all()) and bool((g.abs() < 1).all())


def test_lap_weighted_resolvent_stays_bounded_as_eta_goes_to_zero():
    gen = torch.Generator().manual_seed(13)
    v = torch.zeros(40, dtype=F64)
    v[15:25] = 0.5 * torch.randn(10, generator=gen, dtype=F64)
    E = torch.linalg.eigvalsh(dense_hamiltonian(-2 + v, torch.ones(40, dtype=F64)))
    lam = float(E[(E + 1.5).abs().argmin()])       # an eigenvalue of the closed chain, inside the band
    etas = [10 ** (-k / 2) for k in range(13)]
    norms = weighted_resolvent_norms(v, lam, etas, s=1.0)
    for eta, o, c in zip(norms["eta"], norms["open"], norms["closed"]):
        print(f"eta={eta:.1e}: weighted open-chain norm {o:.6f}, closed-chain {c:.3e}")
    open_, closed = norms["open"], norms["closed"]
    # LAP: Cauchy as eta -> 0 (successive differences shrink with eta) and bounded
    diffs = [abs(a - b) for a, b in itertools.pairwise(open_[4:])]
    assert all(d <= 2 * eta for d, eta in zip(diffs, etas[4:]))
    assert max(open_) < 2 * open_[-1]
    # the closed chain at one of its eigenvalues: the weighted norm grows like 1/eta
    assert closed[-1] > 1e4 * closed[0] and closed[-1] * etas[-1] == pytest.approx(closed[-2] * etas[-2], rel=1e-3)
