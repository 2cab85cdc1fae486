"""Birman–Schwinger operators, Schatten norms, their bounds, and spectral clipping.

Two settings, both computed in complex128 (float64 references):

**Continuum (the seeds' operator), discretised.** H0 = -d^2/dx^2 on L^2(R) and a potential V. The seeds
write the free kernel as (i/2) exp(iz(u - v)) sgn(u - v); for u < v that grows like exp(Im z |u - v|), so we
use the symmetric form

    R0(z; u, v) = (i/2) exp(i z |u - v|),     |R0(z; u, v)| = 1/2 exp(-Im z |u - v|),

the kernel of z (p^2 - z^2)^{-1} (its Fourier symbol is z / (xi^2 - z^2)). K(z) = |V|^{1/2} R0(z) V^{1/2}
with V^{1/2} = sgn(V) |V|^{1/2}. Discretisation: a uniform grid x_j = x_0 + j h, quadrature weights w_j = h
(rectangle rule), so the Nystrom matrix is

    K_ij = (h |V_i|)^{1/2} R0(z; x_i, x_j) (h |V_j|)^{1/2} sgn(V_j),     ||V||_Lp^p := h sum_j |V_j|^p.

On this grid the seeds' bound ||K||_S2 <= 1/2 (Im z)^{-1/2} ||V||_L2 is not exactly an inequality (a broad
constant V exceeds it by up to the factor (eta h coth(eta h))^{1/2} = 1 + (eta h)^2/6 + ...); the grid's exact
bound replaces the integral of exp(-2 eta |x|), 1/eta, by its Riemann sum h coth(eta h) (Schur test):

    ||K||_S2 <= 1/2 (h coth(eta h))^{1/2} ||V||_L2                 (`s2_bound_grid`, -> seeds' form as h -> 0)

For S1 the seeds state ||K||_S1 <= 1/2 (Im z)^{-1} ||V||_L1 (`s1_bound_seed`). A provable grid bound comes
from factoring the convolution T = U|T| (Kato–Seiler–Simon on the lattice hZ):

    ||K||_S1 <= c(z, h) ||V||_L1,   c(z, h) = (1/2pi) int_{-pi}^{pi} |m(theta)| dtheta,
    m(theta) = sum_n R0(z; nh, 0) e^{-i n theta} = (i/2) (1 - q^2) / (1 - 2 q cos theta + q^2),  q = e^{izh}

(`s1_bound_grid`). At z = i eta, c = 1/2 exactly (the symbol is i/2 times a Poisson kernel), so the seeds'
1/2 eta^{-1} is an upper bound there only for eta <= 1 (a one-point potential gives ||K||_S1 = 1/2 ||V||_L1
exactly; see the tests).

**Lattice (the model's operator).** H = H0 + diag(v) with H0 the model's free part (diagonal h0_diag,
hopping b_t: `tridiagonal_hamiltonian`), R0(z) = (H0 - z)^{-1}, K(z) = |v|^{1/2} R0(z) v^{1/2}.
With M_ij = |R0_ij|^2, the Ward identity sum_j |R0_ij|^2 = Im R0_ii / eta and AM-GM give

    ||K||_S2^2 = sum_ij |v_i| M_ij |v_j| <= (1/eta) sum_i v_i^2 Im R0_ii <= ||v||_2^2 / eta^2,
    ||K||_S1 <= sum_i |v_i| (|H0 - z|^{-1})_ii <= ||v||_1 / eta           (polar decomposition of R0).

det(I + K(z)) = det(H - z) / det(H0 - z): the perturbation determinant (see `scattering.py`).
"""
from __future__ import annotations

import math

import torch

RTYPE, CTYPE = torch.float64, torch.complex128


def dense_hamiltonian(a: torch.Tensor, hop: torch.Tensor) -> torch.Tensor:
    """Batched dense H (..., N, N): diagonal a, H[t-1, t] = H[t, t-1] = hop[..., t] (hop[..., 0] unused).

    The batched float64 form of `tridiagonal_hamiltonian`.
    """
    a, hop = torch.broadcast_tensors(a.to(RTYPE), hop.to(RTYPE))
    return torch.diag_embed(a) + torch.diag_embed(hop[..., 1:], 1) + torch.diag_embed(hop[..., 1:], -1)


def tridiagonal_hamiltonian(a: torch.Tensor, hop: torch.Tensor) -> torch.Tensor:
    """Dense H (N x N) from a (N,) and hop (N,) with hop[t] = H[t-1, t], in their dtype (the scan's convention)."""
    N = a.shape[-1]
    Hm = torch.diag(a)
    if N > 1:
        Hm = Hm + torch.diag(hop[1:], 1) + torch.diag(hop[1:], -1)
    return Hm


def full_green_diagonal(a: torch.Tensor, hop: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The seeds' non-causal diagonal G_tt = [(H - z)^-1]_{t,t} on the whole sequence.

    Stable left/right continued fractions (docs/design.md 2.2):
        G_tt = 1 / (a_t - z - hop_t^2 gl_{t-1} - hop_{t+1}^2 gr_{t+1})
    a, hop: (..., N) real (hop[..., 0] is ignored: there is nothing before t=0);
    z: complex, broadcastable against (...). Returns (..., N) complex (complex128 for float64 input).
    It reads future positions: a tool for analysis, never for a causal model.
    """
    double = a.dtype == torch.float64 or hop.dtype == torch.float64
    rtype, ctype = (torch.float64, torch.complex128) if double else (torch.float32, torch.complex64)
    a = a.to(rtype)
    b2 = hop.to(rtype) ** 2
    z = torch.as_tensor(z).to(ctype)
    N = a.shape[-1]
    zero = torch.zeros(torch.broadcast_shapes(a.shape[:-1], z.shape), dtype=ctype, device=a.device)
    left, gl = [], zero
    for t in range(N):
        b2t = b2[..., t] if t > 0 else torch.zeros_like(b2[..., 0])
        gl = 1.0 / (a[..., t] - z - b2t * gl)
        left.append(gl)
    right, gr = [None] * N, zero
    for t in range(N - 1, -1, -1):
        b2n = b2[..., t + 1] if t + 1 < N else torch.zeros_like(b2[..., 0])
        gr = 1.0 / (a[..., t] - z - b2n * gr)
        right[t] = gr
    out = []
    for t in range(N):
        lterm = b2[..., t] * left[t - 1] if t > 0 else 0.0
        rterm = b2[..., t + 1] * right[t + 1] if t + 1 < N else 0.0
        out.append(1.0 / (a[..., t] - z - lterm - rterm))
    return torch.stack(out, dim=-1)


def as_complex(z) -> torch.Tensor:
    """z as complex128 (a Python complex goes straight to complex128, never through complex64)."""
    if isinstance(z, torch.Tensor):
        return z.to(CTYPE)
    return torch.tensor(z, dtype=CTYPE)


def _grid_spacing(x: torch.Tensor) -> float:
    x = x.to(RTYPE)
    if x.dim() != 1 or x.numel() < 2:
        raise ValueError(f"x must be a 1-D grid of at least 2 points, got shape {tuple(x.shape)}")
    steps = x.diff()
    h = float(steps.mean())
    if h <= 0 or float((steps - h).abs().max()) > 1e-9 * max(1.0, abs(h)):
        raise ValueError("x must be a uniform, increasing grid (the quadrature weights are h)")
    return h


def _eta(z: torch.Tensor) -> torch.Tensor:
    eta = z.imag
    if bool((eta <= 0).any()):
        raise ValueError(f"Im z must be > 0 (the resolvent is taken off the real axis), got min {float(eta.min())}")
    return eta


def free_resolvent_kernel(x: torch.Tensor, z) -> torch.Tensor:
    """R0(z; x_i, x_j) = (i/2) exp(i z |x_i - x_j|), shape (..., N, N) for z of shape (...)."""
    x = x.to(RTYPE)
    z = as_complex(z)
    _eta(z)
    dist = (x[:, None] - x[None, :]).abs().to(CTYPE)
    return 0.5j * torch.exp(1j * z[..., None, None] * dist)


def birman_schwinger_grid(V: torch.Tensor, x: torch.Tensor, z) -> torch.Tensor:
    """K(z)_ij = (h|V_i|)^{1/2} R0(z; x_i, x_j) (h|V_j|)^{1/2} sgn(V_j) on the uniform grid x (spacing h).

    V: (..., N) real; z broadcastable against V's batch shape. Returns (..., N, N) complex128.
    """
    h = _grid_spacing(x)
    V = V.to(RTYPE)
    root = (h * V.abs()).sqrt()
    left, right = root.to(CTYPE), (root * torch.sign(V)).to(CTYPE)
    return left[..., :, None] * free_resolvent_kernel(x, z) * right[..., None, :]


def lattice_free_resolvent(hop: torch.Tensor, z, h0_diag: float = -2.0) -> torch.Tensor:
    """R0(z) = (H0 - z)^{-1}, H0 tridiagonal with diagonal h0_diag and hopping hop (hop[..., t] couples t-1, t)."""
    hop = hop.to(RTYPE)
    z = as_complex(z)
    _eta(z)
    N = hop.shape[-1]
    H0 = dense_hamiltonian(torch.full_like(hop, h0_diag), hop).to(CTYPE)
    eye = torch.eye(N, dtype=CTYPE, device=hop.device)
    return torch.linalg.inv(H0 - z[..., None, None] * eye)


def birman_schwinger_lattice(v: torch.Tensor, hop: torch.Tensor, z, h0_diag: float = -2.0) -> torch.Tensor:
    """K(z) = |v|^{1/2} (H0 - z)^{-1} v^{1/2} for the model's H = H0 + diag(v); (..., N, N) complex128."""
    v = v.to(RTYPE)
    R0 = lattice_free_resolvent(hop, z, h0_diag)
    root = v.abs().sqrt()
    return root.to(CTYPE)[..., :, None] * R0 * (root * torch.sign(v)).to(CTYPE)[..., None, :]


# ---------------------------------------------------------------------------------------------- Schatten norms

def schatten_norm(K: torch.Tensor, p: float) -> torch.Tensor:
    """||K||_Sp = (sum_j sigma_j^p)^{1/p} over the singular values of K (batched over leading dims).

    p = 2 is the Frobenius norm (no SVD), p = 1 the nuclear norm, p = inf the operator norm.
    """
    if p == 2:
        return torch.linalg.matrix_norm(K, ord="fro")
    if p == 1:
        return torch.linalg.matrix_norm(K, ord="nuc")
    if math.isinf(p):
        return torch.linalg.matrix_norm(K, ord=2)
    if not p > 0:
        raise ValueError(f"Schatten exponent p must be > 0, got {p}")
    return (torch.linalg.svdvals(K) ** p).sum(-1) ** (1.0 / p)


def clip_singular_values(K: torch.Tensor, max_singular_value: float) -> torch.Tensor:
    """Spectral clipping: U diag(min(sigma, tau)) V^H. The nearest matrix (Frobenius) with ||.||_op <= tau."""
    if not max_singular_value >= 0:
        raise ValueError(f"max_singular_value must be >= 0, got {max_singular_value}")
    U, S, Vh = torch.linalg.svd(K, full_matrices=False)
    return (U * S.clamp(max=max_singular_value).to(U.dtype)[..., None, :]) @ Vh


# ------------------------------------------------------------------------------------------ continuum bounds

def lp_norm_grid(V: torch.Tensor, h: float, p: float) -> torch.Tensor:
    """||V||_Lp on the grid: (h sum |V_j|^p)^{1/p}."""
    return (h * V.to(RTYPE).abs().pow(p).sum(-1)) ** (1.0 / p)


def s2_bound_seed(V: torch.Tensor, x: torch.Tensor, eta) -> torch.Tensor:
    """The seeds' 1/2 eta^{-1/2} ||V||_L2 (the continuum bound; on a grid see `s2_bound_grid`)."""
    eta = torch.as_tensor(eta, dtype=RTYPE)
    return 0.5 * eta.rsqrt() * lp_norm_grid(V, _grid_spacing(x), 2)


def s2_bound_grid(V: torch.Tensor, x: torch.Tensor, eta) -> torch.Tensor:
    """1/2 (h coth(eta h))^{1/2} ||V||_L2: a true upper bound for ||K||_S2 on the grid."""
    h = _grid_spacing(x)
    eta = torch.as_tensor(eta, dtype=RTYPE)
    return 0.5 * (h / torch.tanh(eta * h)).sqrt() * lp_norm_grid(V, h, 2)


def s1_bound_seed(V: torch.Tensor, x: torch.Tensor, eta) -> torch.Tensor:
    """The seeds' 1/2 eta^{-1} ||V||_L1 (holds on the grid where c(z, h) <= 1/(2 eta); see module doc)."""
    eta = torch.as_tensor(eta, dtype=RTYPE)
    return 0.5 / eta * lp_norm_grid(V, _grid_spacing(x), 1)


def s1_grid_constant(z: complex, h: float, points: int | None = None) -> float:
    """c(z, h) = (1/2pi) int |m(theta)| dtheta with m the lattice symbol of R0 (periodic trapezoid rule).

    The integrand is peaked with width ~ (1 - |q|) ~ eta h; `points` defaults to resolve it 16 times over.
    """
    z = complex(z)
    if z.imag <= 0:
        raise ValueError(f"Im z must be > 0, got {z}")
    q = complex(torch.exp(torch.tensor(1j * z * h, dtype=CTYPE)))
    width = max(1.0 - abs(q), 1e-12)
    n = points or int(min(2 ** 24, max(4096, 16 * 2 * math.pi / width)))
    theta = torch.linspace(-math.pi, math.pi, n + 1, dtype=RTYPE)[:-1]
    m = 0.5j * (1 - q * q) / (1 - 2 * q * torch.cos(theta).to(CTYPE) + q * q)
    return float(m.abs().mean())


def s1_bound_grid(V: torch.Tensor, x: torch.Tensor, z: complex) -> torch.Tensor:
    """c(z, h) ||V||_L1: a true upper bound for ||K||_S1 on the grid (Kato–Seiler–Simon on hZ)."""
    h = _grid_spacing(x)
    return s1_grid_constant(z, h) * lp_norm_grid(V, h, 1)


# -------------------------------------------------------------------------------------------- lattice bounds

def s2_bound_lattice(v: torch.Tensor, hop: torch.Tensor, z, h0_diag: float = -2.0) -> torch.Tensor:
    """sqrt((1/eta) sum_i v_i^2 Im R0(z)_ii) >= ||K||_S2 (Ward identity); R0_ii from the O(N) continued fraction."""
    z = as_complex(z)
    eta = _eta(z)
    G0 = full_green_diagonal(torch.full_like(v, h0_diag, dtype=RTYPE), hop.to(RTYPE), z)
    return ((v.to(RTYPE) ** 2 * G0.imag).sum(-1) / eta).sqrt()


def s2_bound_lattice_simple(v: torch.Tensor, z) -> torch.Tensor:
    """||v||_2 / eta >= ||K||_S2 (from Im R0_ii <= 1/eta): the lattice form of the seeds' S2 bound."""
    return torch.linalg.vector_norm(v.to(RTYPE), dim=-1) / _eta(as_complex(z))


def s1_bound_lattice(v: torch.Tensor, hop: torch.Tensor, z, h0_diag: float = -2.0) -> torch.Tensor:
    """sum_i |v_i| (|H0 - z|^{-1})_ii >= ||K||_S1 (polar decomposition of the normal operator R0)."""
    z = as_complex(z)
    _eta(z)
    hop = hop.to(RTYPE)
    E, Q = torch.linalg.eigh(dense_hamiltonian(torch.full_like(hop, h0_diag), hop))
    weight = 1.0 / (E.to(CTYPE) - z[..., None]).abs()                   # |E - z|^{-1}
    abs_r0_diag = (Q ** 2 * weight[..., None, :]).sum(-1)               # (Q diag(w) Q^T)_ii
    return (v.to(RTYPE).abs() * abs_r0_diag).sum(-1)


def s1_bound_lattice_simple(v: torch.Tensor, z) -> torch.Tensor:
    """||v||_1 / eta >= ||K||_S1."""
    return v.to(RTYPE).abs().sum(-1) / _eta(as_complex(z))
