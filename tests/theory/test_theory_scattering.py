"""det2, perturbation determinant, spectral shift, scattering phase, Birman–Krein, resonances, Clark measures."""
import math

import pytest
import torch

from resnet_bk_hf.ops.bk.naive import causal_green_naive
from resnet_bk_hf.theory.operators import birman_schwinger_lattice, dense_hamiltonian, full_green_diagonal
from resnet_bk_hf.theory.scattering import (
    birman_krein_derivative,
    causal_green,
    clark_average,
    clark_measure,
    density_of_states,
    detect_resonances,
    fredholm_det2,
    log_det2,
    log_perturbation_determinant,
    open_local_density,
    resonance_poles,
    scattering_phase,
    spectral_shift,
    spectral_shift_from_eigenvalues,
    token_phases,
)

F64, C128 = torch.float64, torch.complex128


def chain(gen, n=12):
    return torch.randn(n, generator=gen, dtype=F64), 0.5 + torch.rand(n, generator=gen, dtype=F64)


def spectra(v, hop):
    E = torch.linalg.eigvalsh(dense_hamiltonian(-2 + v, hop))
    E0 = torch.linalg.eigvalsh(dense_hamiltonian(torch.full_like(v, -2.0), hop))
    return E, E0


def test_det2_matches_its_definition_on_small_matrices():
    gen = torch.Generator().manual_seed(21)
    for n in (1, 3, 8):
        K = 0.7 * torch.randn(5, n, n, generator=gen, dtype=C128)
        eye = torch.eye(n, dtype=C128)
        definition = torch.linalg.det((eye + K) @ torch.linalg.matrix_exp(-K))
        assert torch.allclose(fredholm_det2(K), definition, rtol=1e-10, atol=1e-12)
        eig = torch.linalg.eigvals(K)
        assert torch.allclose(fredholm_det2(K), ((1 + eig) * torch.exp(-eig)).prod(-1), rtol=1e-10)
    assert float(log_det2(K).imag.abs().max()) <= math.pi


def test_perturbation_determinant_is_det_h_over_det_h0_in_o_n():
    gen = torch.Generator().manual_seed(22)
    v, hop = chain(gen, 14)
    for z in (complex(-1.2, 0.3), complex(-5, 0.01), complex(1, 2)):
        K = birman_schwinger_lattice(v, hop, z)
        dense = torch.linalg.det(torch.eye(14, dtype=C128) + K)
        fast = torch.exp(log_perturbation_determinant(v, hop, z))
        assert torch.allclose(fast, dense, rtol=1e-10)
    # the theory module's causal g is the model's kernel
    z = complex(-1.2, 0.3)
    ref = causal_green_naive((-2 + v)[None, :, None], hop[None, :, None], torch.tensor([[z.real]], dtype=F64),
                             torch.tensor([[z.imag]], dtype=F64))[0, :, 0, 0]
    ref = torch.view_as_complex(ref.contiguous())
    assert torch.allclose(causal_green(-2 + v, hop, z), ref, rtol=1e-14)


def test_spectral_shift_function():
    gen = torch.Generator().manual_seed(23)
    v, hop = chain(gen)
    E, E0 = spectra(v, hop)
    lambdas = torch.linspace(-12, 8, 8001, dtype=F64)
    for eta in (0.5, 0.01, 1e-4):
        xi = spectral_shift(v, hop, lambdas, eta)
        assert torch.allclose(xi, spectral_shift_from_eigenvalues(E, E0, lambdas, eta), atol=1e-11)
    # eta -> 0: the eigenvalue counting difference N_H0 - N_H, away from eigenvalues
    xi = spectral_shift(v, hop, lambdas, 1e-7)
    count = (E0[None] < lambdas[:, None]).sum(-1) - (E[None] < lambdas[:, None]).sum(-1)
    far = torch.cat([E, E0])[None].sub(lambdas[:, None]).abs().min(-1).values > 0.01
    assert torch.allclose(xi[far], count[far].to(F64), atol=1e-4)
    # trace formula with f(x) = x: int xi = tr(H - H0) = sum v (Lorentzian tails cut at the ends: small eta)
    integral = float(torch.trapezoid(spectral_shift(v, hop, lambdas, 1e-3), lambdas))
    print(f"int xi dlambda = {integral:.5f}, tr V = {float(v.sum()):.5f}")
    assert integral == pytest.approx(float(v.sum()), abs=2e-3)


def test_scattering_phase_is_arg_det2_and_token_phases_sum_to_it():
    gen = torch.Generator().manual_seed(24)
    v, hop = chain(gen)
    lambdas = torch.linspace(-6, 2, 9, dtype=F64)
    delta = scattering_phase(v, hop, lambdas, 0.3)
    for lam, d in zip(lambdas.tolist(), delta.tolist()):
        det2 = fredholm_det2(birman_schwinger_lattice(v, hop, complex(lam, 0.3)))
        assert abs(math.remainder(d - float(torch.angle(det2)), 2 * math.pi)) < 1e-10
    # per-token phases: the prefix sums are the phases of the prefix determinants
    z = complex(-1.7, 0.2)
    phases = token_phases(v, hop, z)
    for t in (1, 5, 12):
        assert float(phases[:t].sum()) == pytest.approx(float(log_perturbation_determinant(v[:t], hop[:t], z).imag),
                                                        abs=1e-12)


def test_birman_krein_derivative():
    gen = torch.Generator().manual_seed(25)
    v, hop = chain(gen)
    E, E0 = spectra(v, hop)
    lambdas = torch.linspace(-7, 3, 20001, dtype=F64)
    eta = 0.05
    bk = birman_krein_derivative(v, hop, lambdas, eta)
    lorentz = lambda levels: (eta / math.pi / ((levels[None] - lambdas[:, None]) ** 2 + eta ** 2)).sum(-1)
    assert torch.allclose(bk, lorentz(E0) - lorentz(E), atol=1e-10)
    assert torch.allclose(density_of_states(v, hop, lambdas, eta), lorentz(E), atol=1e-10)
    numeric = torch.gradient(spectral_shift(v, hop, lambdas, eta), spacing=(lambdas,))[0]
    assert float((bk - numeric).abs().max()) < 1e-3 * float(bk.abs().max())


def test_resonances_closed_chain_eigenvalues_have_width_eta():
    v = torch.zeros(20, dtype=F64)
    v[5], v[14] = -3.0, -4.5                     # two bound states below the band [-4, 0]
    hop = torch.ones(20, dtype=F64)
    E, _ = spectra(v, hop)
    lambdas = torch.linspace(-9, -4.5, 9001, dtype=F64)
    eta = 0.02
    found = detect_resonances(lambdas, density_of_states(v, hop, lambdas, eta), min_height=1.0)
    bound = E[E < -4.5]
    assert len(found) == bound.numel() == 2
    for res, level in zip(found, bound.tolist()):
        assert res["center"] == pytest.approx(level, abs=1e-5)
        assert res["hwhm"] == pytest.approx(eta, rel=0.02)


def test_resonances_of_an_open_double_barrier_match_the_continued_poles():
    W = 40
    v = torch.zeros(W, dtype=F64)
    v[14] = v[24] = 3.0
    lambdas = torch.linspace(-3.9, -0.1, 7601, dtype=F64)
    rho = open_local_density(v, lambdas, 1e-9, sites=slice(15, 24))     # inside the well
    found = detect_resonances(lambdas, rho, min_height=0.05 * float(rho.max()))
    poles = resonance_poles(v, [r["center"] for r in found])
    assert len(found) >= 4
    for res, pole in zip(found, poles):
        print(f"resonance: peak {res['center']:.5f} hwhm {res['hwhm']:.5f}; pole {pole.real:.5f} {pole.imag:+.5f}i")
        assert pole.imag < 0
        assert res["center"] == pytest.approx(pole.real, abs=5e-4)
        assert res["hwhm"] == pytest.approx(-pole.imag, rel=0.04)
    # higher barriers trap longer: the narrowest resonance gets narrower
    v[14] = v[24] = 5.0
    narrower = detect_resonances(lambdas, open_local_density(v, lambdas, 1e-9, sites=slice(15, 24)), 1.0)
    assert min(r["hwhm"] for r in narrower) < min(r["hwhm"] for r in found)


def test_clark_measures_integrate_to_their_predicted_totals():
    gen = torch.Generator().manual_seed(26)
    v, hop = chain(gen, 10)
    atoms, weights = clark_measure(-2 + v, hop, 3, torch.tensor([-5.0, 0.0, 0.7, 40.0]))
    assert torch.allclose(weights.sum(-1), torch.ones(4, dtype=F64), atol=1e-12)     # mu_alpha(R) = ||e_s||^2
    # the measure is the spectral measure of e_s: its Borel transform is G_ss(z)
    z = complex(-1.1, 0.4)
    G = full_green_diagonal(-2 + v, hop, torch.tensor(z, dtype=C128))[3]
    assert complex((weights[1] / (atoms[1] - z)).sum()) == pytest.approx(complex(G), abs=1e-12)
    # Aleksandrov: averaged over alpha in R the measures give Lebesgue measure
    for interval in ((-3.0, -1.0), (-2.5, -2.2)):
        total = clark_average(-2 + v, hop, 3, interval)
        print(f"int mu_alpha({interval}) dalpha = {total:.5f} (predicted {interval[1] - interval[0]:.5f})")
        assert total == pytest.approx(interval[1] - interval[0], rel=2e-3)
    # the smoothed density (1/pi) Im G_ss integrates to the mass inside the window, predicted from the atoms
    lambdas = torch.linspace(-30, 30, 600001, dtype=F64)
    eta = 0.05
    G = full_green_diagonal((-2 + v)[None], hop[None], torch.complex(lambdas, torch.full_like(lambdas, eta)))
    numeric = float(torch.trapezoid(G[:, 3].imag / math.pi, lambdas))
    predicted = float((weights[1] * (torch.atan((30 - atoms[1]) / eta) + torch.atan((30 + atoms[1]) / eta))).sum()
                      / math.pi)
    assert numeric == pytest.approx(predicted, abs=1e-5)


def test_open_green_diagonal_matches_the_dense_window_resolvent():
    from resnet_bk_hf.theory.mourre import open_window_resolvent
    from resnet_bk_hf.theory.scattering import open_green_diagonal
    gen = torch.Generator().manual_seed(27)
    v = torch.randn(15, generator=gen, dtype=F64)
    zs = torch.tensor([complex(-1.0, 1e-6), complex(-3.3, 0.1), complex(0.7, 0.5)], dtype=C128)
    fast = open_green_diagonal(v, zs)
    for i, z in enumerate(zs.tolist()):
        assert torch.allclose(fast[i], open_window_resolvent(v, z).diagonal(), rtol=1e-10)
