"""The seeds' operator theory as tested tools (docs/design.md section 4); docs/theory.md describes each object.

    operators       Birman–Schwinger K(z) (grid and lattice), Schatten norms, their bounds, spectral clipping
    primes          prime sieve, alpha_{p,k}, the prime-bump potential, overlap check, eps schedule
    spectra         unfolding, nearest-neighbour spacings, Wigner surmises (GOE, GUE), Poisson, KS fit
    mourre          Mourre commutator for the lattice Laplacian, LAP weighted-resolvent checks
    scattering      det2, perturbation determinant, scattering phase, spectral shift, Birman–Krein,
                    resonances, Clark measures
    model_operators each BK layer's Hamiltonian per head, read from a model through hooks and the layer's
                    public `hamiltonian(...)` (nothing here imports the model code)

Everything is float64 / complex128 and batched over leading dimensions where it says so. These tools read
the model from outside (hooks, callbacks: `resnet_bk_hf.monitoring`); none of them runs in the mixer.
"""
from .operators import (
                        birman_schwinger_grid,
                        birman_schwinger_lattice,
                        clip_singular_values,
                        dense_hamiltonian,
                        free_resolvent_kernel,
                        full_green_diagonal,
                        lattice_free_resolvent,
                        s1_bound_grid,
                        s1_bound_lattice,
                        s1_bound_seed,
                        s2_bound_grid,
                        s2_bound_lattice,
                        s2_bound_seed,
                        schatten_norm,
                        tridiagonal_hamiltonian,
)
from .primes import (
                        alpha_coefficient,
                        bump_overlap,
                        eps_schedule,
                        gaussian_cutoff,
                        positional_prime_bump,
                        prime_bump_potential,
                        prime_power_coefficients,
                        primes_up_to,
)
from .scattering import (
                        birman_krein_derivative,
                        clark_measure,
                        detect_resonances,
                        fredholm_det2,
                        log_det2,
                        scattering_phase,
                        spectral_shift,
                        token_phases,
)
from .spectra import nearest_neighbor_spacings, spacing_fit, spacing_ratios, unfold_spectrum, wigner_surmise

__all__ = ["alpha_coefficient", "birman_krein_derivative", "birman_schwinger_grid", "birman_schwinger_lattice",
           "bump_overlap", "clark_measure", "clip_singular_values", "dense_hamiltonian", "detect_resonances",
           "eps_schedule", "fredholm_det2", "free_resolvent_kernel", "full_green_diagonal", "gaussian_cutoff",
           "lattice_free_resolvent", "log_det2", "nearest_neighbor_spacings", "positional_prime_bump",
           "prime_bump_potential", "prime_power_coefficients", "primes_up_to", "s1_bound_grid", "s1_bound_lattice",
           "s1_bound_seed", "s2_bound_grid", "s2_bound_lattice", "s2_bound_seed", "scattering_phase", "schatten_norm",
           "spacing_fit", "spacing_ratios", "spectral_shift", "token_phases", "tridiagonal_hamiltonian",
           "unfold_spectrum", "wigner_surmise"]
