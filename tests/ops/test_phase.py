"""The per-token scattering phase (`ops/bk/phase.py`, docs/design.md 2.9) against dense prefix determinants."""
import math

import pytest
import torch

from resnet_bk_hf.ops.bk import BKState, causal_green
from resnet_bk_hf.ops.bk.phase import free_green, token_phase
from resnet_bk_hf.theory.operators import tridiagonal_hamiltonian
from resnet_bk_hf.theory.scattering import token_phases

F64 = torch.float64
BACKENDS = ["naive", "recurrent", "parallel"]


def _inputs(B=2, N=12, H=2, K=4):
    a = -2.0 + 2.0 * torch.randn(B, N, H, dtype=F64)
    hop = 2.0 * torch.rand(B, N, H, dtype=F64)
    z_re = -5.0 + 6.0 * torch.rand(H, K, dtype=F64)
    z_im = 0.05 + 2.0 * torch.rand(H, K, dtype=F64)
    return a, hop, z_re, z_im


def _wrap(x):
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


@pytest.mark.parametrize("backend", BACKENDS)
def test_phase_sums_to_prefix_determinant(seed, backend):
    """sum_{s<=t} -arg g_s = arg det(H_{1:t} - z) mod 2 pi, exactly sum_j arg(E_j - z) (continuous branch);
    sum_{s<=t} -log|g_s| = log|det(H_{1:t} - z)|."""
    a, hop, z_re, z_im = _inputs()
    B, N, H = a.shape
    g, _ = causal_green(a, hop, z_re, z_im, backend=backend)
    cum = token_phase(g).cumsum(1)                                        # (B, N, H, K)
    logmag = (-torch.log(torch.linalg.vector_norm(g, dim=-1))).cumsum(1)
    z = torch.complex(z_re, z_im)
    for b in range(B):
        for h in range(H):
            Hm = tridiagonal_hamiltonian(a[b, :, h], hop[b, :, h])
            for t in range(1, N + 1):
                sub = Hm[:t, :t].to(torch.complex128)
                M = sub[None] - z[h][:, None, None] * torch.eye(t, dtype=torch.complex128)
                sign, logabs = torch.linalg.slogdet(M)                   # (K,)
                assert _wrap(cum[b, t - 1, h] - torch.angle(sign)).abs().max() < 1e-10
                assert (logmag[b, t - 1, h] - logabs).abs().max() < 1e-10
                E = torch.linalg.eigvalsh(Hm[:t, :t]).to(torch.complex128)
                branch = torch.angle(E[:, None] - z[h][None, :]).sum(0)
                assert (cum[b, t - 1, h] - branch).abs().max() < 1e-10


def test_increments_strictly_inside_branch(seed):
    a, hop, z_re, z_im = _inputs(B=3, N=64, H=2, K=5)
    a = a * 10.0
    g, _ = causal_green(a, hop * 1.5, z_re, z_im)
    d = token_phase(g)
    assert d.shape == g.shape[:-1] and d.dtype == F64
    assert bool((d > -math.pi).all()) and bool((d < 0).all())
    # the estimate used in docs/design.md 2.9: Im g_t >= eta |g_t|^2
    eta = z_im[None, None]
    assert bool((g[..., 1] >= eta * (g ** 2).sum(-1) * (1 - 1e-12)).all())
    g0 = free_green(hop * 1.5, -2.0, z_re, z_im)
    rel = token_phase(g, g0)
    assert bool((rel.abs() < math.pi).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_causality(seed, backend):
    a, hop, z_re, z_im = _inputs(N=20)
    t = 9
    a2, hop2 = a.clone(), hop.clone()
    a2[:, t + 1:] = torch.randn_like(a2[:, t + 1:]) * 5
    hop2[:, t + 1:] = torch.rand_like(hop2[:, t + 1:]) * 3
    d1 = token_phase(causal_green(a, hop, z_re, z_im, backend=backend)[0])
    d2 = token_phase(causal_green(a2, hop2, z_re, z_im, backend=backend)[0])
    assert torch.equal(d1[:, :t + 1], d2[:, :t + 1]) or (d1[:, :t + 1] - d2[:, :t + 1]).abs().max() < 1e-12
    assert (d1[:, t + 1:] - d2[:, t + 1:]).abs().max() > 1e-6


def test_free_reference(seed):
    """Zero potential: the relative phase is exactly 0; with a potential it is theory's token_phases."""
    a, hop, z_re, z_im = _inputs()
    h0 = -2.0
    g0 = free_green(hop, h0, z_re, z_im)
    g_zero_v, _ = causal_green(torch.full_like(a, h0), hop, z_re, z_im)
    assert torch.equal(token_phase(g_zero_v, g0), torch.zeros_like(g0[..., 0]))
    g, _ = causal_green(a, hop, z_re, z_im)
    rel = token_phase(g, g0)
    assert torch.equal(rel, token_phase(g) - token_phase(g0))
    for b in range(a.shape[0]):
        for h in range(a.shape[2]):
            for k in range(z_re.shape[1]):
                ref = token_phases(a[b, :, h] - h0, hop[b, :, h], complex(z_re[h, k], z_im[h, k]), h0_diag=h0)
                assert (rel[b, :, h, k] - ref).abs().max() < 1e-12
    # a per-head tensor h0_diag broadcasts
    h0_t = torch.tensor([-2.0, -1.5], dtype=F64)
    g0_t = free_green(hop, h0_t, z_re, z_im)
    g0_1 = free_green(hop[..., 1:], -1.5, z_re[1:], z_im[1:])
    assert (g0_t[:, :, 1:] - g0_1).abs().max() < 1e-14


@pytest.mark.parametrize("backend", BACKENDS)
def test_chunked_state_continues_phase(seed, backend):
    a, hop, z_re, z_im = _inputs(N=30)
    cut = 13
    g, _ = causal_green(a, hop, z_re, z_im, backend=backend)
    g0 = free_green(hop, -2.0, z_re, z_im, backend=backend)
    whole = token_phase(g, g0).cumsum(1)
    gA, sA = causal_green(a[:, :cut], hop[:, :cut], z_re, z_im, backend=backend)
    gB, _ = causal_green(a[:, cut:], hop[:, cut:], z_re, z_im, state=sA, backend=backend)
    g0A = free_green(hop[:, :cut], -2.0, z_re, z_im, backend=backend)
    g0B = free_green(hop[:, cut:], -2.0, z_re, z_im, backend=backend,
                     state=BKState(g0A[:, -1], g0A.new_zeros(*g0A[:, -1].shape[:-1], 0, 2)))
    pA = token_phase(gA, g0A).cumsum(1)
    pB = pA[:, -1:] + token_phase(gB, g0B).cumsum(1)
    assert (torch.cat([pA, pB], 1) - whole).abs().max() < 1e-12
    # and the plain increments
    dB = token_phase(gB)
    assert (dB - token_phase(g)[:, cut:]).abs().max() < 1e-12


def test_zero_temperature_limit_counts_eigenvalues(seed):
    """eta -> 0+: the prefix phase tends to -pi N_{1:t}(lambda), each increment to 0 or -pi, and the relative
    phase to pi (N0 - N); lambda kept away from every prefix eigenvalue."""
    N, K = 12, 7
    a = -2.0 + torch.randn(1, N, 1, dtype=F64)
    hop = 0.2 + torch.rand(1, N, 1, dtype=F64)
    Hm = tridiagonal_hamiltonian(a[0, :, 0], hop[0, :, 0])
    H0 = tridiagonal_hamiltonian(torch.full((N,), -2.0, dtype=F64), hop[0, :, 0])
    eig = [torch.linalg.eigvalsh(Hm[:t, :t]) for t in range(1, N + 1)]
    eig0 = [torch.linalg.eigvalsh(H0[:t, :t]) for t in range(1, N + 1)]
    allE = torch.cat(eig + eig0)
    lam = torch.linspace(-5.0, 1.0, 200, dtype=F64)
    gap = (lam[:, None] - allE[None]).abs().min(1).values
    lam = lam[gap.argsort(descending=True)[:K]].sort().values           # the K points farthest from any eigenvalue
    assert gap.max() > 1e-3
    eta = 1e-9
    z_re, z_im = lam[None], torch.full((1, K), eta, dtype=F64)
    d = token_phase(causal_green(a, hop, z_re, z_im)[0])[0, :, 0]        # (N, K)
    d0 = token_phase(free_green(hop, -2.0, z_re, z_im))[0, :, 0]
    count = torch.stack([(E[:, None] < lam).sum(0) for E in eig]).to(F64)
    count0 = torch.stack([(E[:, None] < lam).sum(0) for E in eig0]).to(F64)
    tol = 1e-4
    assert (d.cumsum(0) / math.pi + count).abs().max() < tol
    steps = torch.diff(count, dim=0, prepend=torch.zeros(1, K, dtype=F64))
    assert set(steps.flatten().tolist()) <= {0.0, 1.0}
    assert (d / math.pi + steps).abs().max() < tol
    assert ((d - d0).cumsum(0) / math.pi - (count0 - count)).abs().max() < tol
