"""Spacing statistics: surmises, unfolding, and the separation of GOE from Poisson spectra (seeded, not flaky)."""
import math

import pytest
import torch

from resnet_bk_hf.theory.spectra import (
    MEAN_SPACING_RATIO,
    SPACING_CDFS,
    nearest_neighbor_spacings,
    poisson_spacing,
    spacing_fit,
    spacing_ratios,
    unfold_spectrum,
    wigner_surmise,
)

F64 = torch.float64


def goe_spectra(gen, count, n):
    A = torch.randn(count, n, n, generator=gen, dtype=F64)
    return torch.linalg.eigvalsh((A + A.mT) / 2)


def poisson_spectra(gen, count, n):
    return torch.rand(count, n, generator=gen, dtype=F64).sort(-1).values * n


def pooled_fit(spectra):
    spacings = torch.cat([nearest_neighbor_spacings(E) for E in spectra])
    ratios = torch.cat([spacing_ratios(E) for E in spectra])
    return spacing_fit(spacings, ratios)


def test_surmises_are_normalised_densities_with_mean_one():
    s = torch.linspace(0, 40, 400001, dtype=F64)
    for name, density in (("poisson", poisson_spacing(s)), ("goe", wigner_surmise(s, 1)),
                          ("gue", wigner_surmise(s, 2))):
        assert float(torch.trapezoid(density, s)) == pytest.approx(1, abs=1e-7), name
        assert float(torch.trapezoid(s * density, s)) == pytest.approx(1, abs=1e-7), name
        cdf = torch.cumulative_trapezoid(density, s)
        assert torch.allclose(cdf, SPACING_CDFS[name](s[1:]), atol=1e-7), name
    with pytest.raises(ValueError, match="beta"):
        wigner_surmise(s, 4)


def test_unfolding_gives_unit_mean_spacing():
    E = torch.linspace(-1, 1, 300, dtype=F64) ** 3        # strongly non-uniform density
    u = unfold_spectrum(E, degree=7, trim=0.1)
    assert u.numel() == 240
    assert float(u.diff().mean()) == pytest.approx(1, rel=0.05)
    with pytest.raises(ValueError, match="at least"):
        unfold_spectrum(torch.arange(5.0))


def test_spacing_statistic_separates_goe_from_poisson():
    gen = torch.Generator().manual_seed(7)
    goe = pooled_fit(goe_spectra(gen, 6, 200))
    poisson = pooled_fit(poisson_spectra(gen, 6, 200))
    for name, fit in (("GOE samples", goe), ("Poisson samples", poisson)):
        print(f"{name}: KS poisson {fit['ks_poisson']:.3f} goe {fit['ks_goe']:.3f} gue {fit['ks_gue']:.3f}, "
              f"mean ratio {fit['mean_ratio']:.3f} ({fit['num_spacings']} spacings) -> {fit['verdict']}")
    assert goe["verdict"] == "goe" and poisson["verdict"] == "poisson"
    # margins far beyond the KS 1% critical value 1.63 / sqrt(n) ~ 0.04 for ~950 spacings
    assert goe["ks_goe"] < 0.06 and goe["ks_poisson"] > 0.15
    assert poisson["ks_poisson"] < 0.06 and poisson["ks_goe"] > 0.15
    assert abs(goe["mean_ratio"] - MEAN_SPACING_RATIO["goe"]) < 0.03
    assert abs(poisson["mean_ratio"] - MEAN_SPACING_RATIO["poisson"]) < 0.03
    assert math.isclose(MEAN_SPACING_RATIO["poisson"], 2 * math.log(2) - 1)
