"""The reference scans against their definition (dense prefix inverses) and each other; the dispatcher's
choices and fallbacks."""
import pytest
import torch

from resnet_bk_hf.ops.bk import (BKState, causal_green, causal_resolvent_scan, causal_resolvent_scan_recurrent,
                                  forced_backend, resolve_backend)
from resnet_bk_hf.ops.bk.naive import causal_green_naive, causal_resolvent_scan_naive
from resnet_bk_hf.theory.operators import full_green_diagonal, tridiagonal_hamiltonian

f64 = torch.float64


def random_problem(B, N, H, K, P, dtype=f64, v_scale=3.0, hop_range=(0.2, 1.5), eta_range=(0.1, 2.0)):
    a = -2.0 + v_scale * torch.randn(B, N, H, dtype=dtype)
    hop = torch.empty(B, N, H, dtype=dtype).uniform_(*hop_range)
    u = torch.randn(B, N, H, P, dtype=dtype)
    c_re, c_im = torch.randn(B, N, H, K, dtype=dtype), torch.randn(B, N, H, K, dtype=dtype)
    z_re = torch.empty(H, K, dtype=dtype).uniform_(-4.5, 0.5)
    z_im = torch.empty(H, K, dtype=dtype).uniform_(*eta_range)
    return a, hop, u, c_re, c_im, z_re, z_im


def test_scan_equals_prefix_inverse(seed):
    B, N, H, P = 2, 40, 2, 3
    a, hop, u, _, _, z_re, z_im = random_problem(B, N, H, 1, P)
    ones, zeros = torch.ones(B, N, H, 1, dtype=f64), torch.zeros(B, N, H, 1, dtype=f64)
    y_re, _ = causal_resolvent_scan_naive(a, hop, u, ones, zeros, z_re, z_im)   # Re(conj(1) y)
    y_im, _ = causal_resolvent_scan_naive(a, hop, u, zeros, ones, z_re, z_im)   # Re(conj(i) y) = Im y
    g = torch.view_as_complex(causal_green_naive(a, hop, z_re, z_im))
    for b in range(B):
        for h in range(H):
            z = torch.complex(z_re[h, 0], z_im[h, 0])
            Hm = tridiagonal_hamiltonian(a[b, :, h], hop[b, :, h]).to(torch.complex128)
            for t in range(1, N + 1):
                inv = torch.linalg.inv(Hm[:t, :t] - z * torch.eye(t, dtype=torch.complex128))
                assert abs(g[b, t - 1, h, 0] - inv[t - 1, t - 1]) < 1e-10
                y_dense = inv[t - 1] @ u[b, :t, h].to(torch.complex128)             # (P,)
                y_scan = torch.complex(y_re[b, t - 1, h], y_im[b, t - 1, h])
                assert (y_scan - y_dense).abs().max() < 1e-10


def test_full_diagonal_equals_dense_inverse(seed):
    N = 50
    a = -2.0 + 5 * torch.randn(3, N, dtype=f64)
    hop = torch.rand(3, N, dtype=f64) + 0.1
    z = torch.complex(torch.tensor(-1.3, dtype=f64), torch.tensor(0.05, dtype=f64))
    G = full_green_diagonal(a, hop, z)
    for b in range(3):
        Hm = tridiagonal_hamiltonian(a[b], hop[b]).to(torch.complex128)
        dense = torch.diagonal(torch.linalg.inv(Hm - z * torch.eye(N, dtype=torch.complex128)))
        assert (G[b] - dense).abs().max() < 1e-10


def test_recurrent_matches_naive_forward_and_backward(seed):
    args = [t.requires_grad_() for t in random_problem(2, 17, 3, 2, 4)]
    state = (torch.randn(2, 3, 2, 2, dtype=f64, requires_grad=True),
             torch.randn(2, 3, 2, 4, 2, dtype=f64, requires_grad=True))
    o1, s1 = causal_resolvent_scan_naive(*args, state)
    o2, s2 = causal_resolvent_scan_recurrent(*args, state)
    assert torch.allclose(o1, o2, atol=1e-12) and torch.allclose(s1[0], s2[0]) and torch.allclose(s1[1], s2[1])
    weights = [torch.randn_like(o1), torch.randn_like(s1[0]), torch.randn_like(s1[1])]
    inputs = args + list(state)
    g1 = torch.autograd.grad(sum((w * x).sum() for w, x in zip(weights, (o1, *s1))), inputs)
    g2 = torch.autograd.grad(sum((w * x).sum() for w, x in zip(weights, (o2, *s2))), inputs)
    for x, y in zip(g1, g2):
        assert torch.allclose(x, y, rtol=1e-9, atol=1e-11)


def test_recurrent_gradcheck(seed):
    args = [t.requires_grad_() for t in random_problem(1, 6, 2, 2, 2)]
    state = (torch.randn(1, 2, 2, 2, dtype=f64, requires_grad=True),
             torch.randn(1, 2, 2, 2, 2, dtype=f64, requires_grad=True))

    def fn(*x):
        o, (g, y) = causal_resolvent_scan_recurrent(*x[:7], (x[7], x[8]))
        return o, g, y

    assert torch.autograd.gradcheck(fn, (*args, *state))


@pytest.mark.parametrize("backend", ["naive", "recurrent"])
def test_chunked_with_state_equals_whole(seed, backend):
    a, hop, u, c_re, c_im, z_re, z_im = random_problem(2, 30, 2, 3, 4)
    whole, s_whole = causal_resolvent_scan(a, hop, u, c_re, c_im, z_re, z_im, backend=backend)
    cut = 13
    first, s = causal_resolvent_scan(a[:, :cut], hop[:, :cut], u[:, :cut], c_re[:, :cut], c_im[:, :cut],
                                     z_re, z_im, backend=backend)
    second, s2 = causal_resolvent_scan(a[:, cut:], hop[:, cut:], u[:, cut:], c_re[:, cut:], c_im[:, cut:],
                                       z_re, z_im, state=s, backend=backend)
    assert isinstance(s2, BKState) and s2.g.shape == (2, 2, 3, 2) and s2.y.shape == (2, 2, 3, 4, 2)
    assert torch.allclose(torch.cat([first, second], 1), whole, atol=1e-12)
    assert torch.allclose(s2[0], s_whole[0]) and torch.allclose(s2[1], s_whole[1])


def test_green_bounds_hold_for_any_potential(seed):
    a, hop, *_ , z_re, z_im = random_problem(2, 300, 3, 4, 1, v_scale=100.0, hop_range=(0.0, 3.0))
    g = torch.view_as_complex(causal_green_naive(a, hop, z_re, z_im))
    assert torch.isfinite(g).all()
    assert (g.imag > 0).all(), "Im g_t > 0 for Im z > 0"
    assert (g.abs() <= 1.0 / z_im + 1e-12).all(), "|g_t| <= 1/eta"


def test_float32_stability_at_long_length(seed):
    """N = 131072, |v| up to 1e3, float32: finite everywhere and |g_t| <= 1/eta."""
    N, H, K = 131072, 2, 2
    a = -2.0 + torch.empty(1, N, H).uniform_(-1e3, 1e3)
    a[0, : N // 4] = -2.0 + torch.randn(N // 4, H) * 0.1   # near the band too, where |g| is largest
    hop = torch.empty(1, N, H).uniform_(0.5, 1.0)
    z_re = torch.tensor([[-2.0, -0.5], [-3.9, -1.0]])
    z_im = torch.tensor([[0.05, 1.0], [0.01, 0.3]])
    g = torch.view_as_complex(causal_green(a, hop, z_re, z_im)[0])   # the CPU default: recurrent
    assert torch.isfinite(torch.view_as_real(g)).all()
    assert (g.abs() <= (1.0 / z_im) * (1 + 1e-5)).all()
    u = torch.randn(1, N, H, 2)
    c = torch.randn(1, N, H, K)
    o, (gN, yN) = causal_resolvent_scan_recurrent(a, hop, u, c, c, z_re, z_im)
    assert torch.isfinite(o).all() and torch.isfinite(gN).all() and torch.isfinite(yN).all()


def test_backend_switch_rejects_unknown():
    a, hop, u, c_re, c_im, z_re, z_im = random_problem(1, 3, 1, 1, 1)
    with pytest.raises(ValueError, match="scan backend must be one of"):
        causal_resolvent_scan(a, hop, u, c_re, c_im, z_re, z_im, backend="bk_v2")


# ------------------------------------------------------------------------------------------ the dispatcher

@pytest.fixture
def fake_triton(monkeypatch):
    """Triton "available", its scan replaced by a recorder: which calls reach the kernels, with what config."""
    import sys
    import types
    from resnet_bk_hf.ops.bk import dispatch
    calls = []

    def scan(a, hop, u, c_re, c_im, z_re, z_im, state=None, config=None):
        calls.append({"dtype": u.dtype, "config": config})
        return causal_resolvent_scan_recurrent(a, hop, u, c_re, c_im, z_re, z_im, state)

    module = types.ModuleType("resnet_bk_hf.ops.bk.triton")
    module.causal_resolvent_scan_triton = scan
    monkeypatch.setitem(sys.modules, "resnet_bk_hf.ops.bk.triton", module)
    monkeypatch.setattr(dispatch, "triton_available", lambda: True)
    monkeypatch.delenv("RESNET_BK_SCAN_BACKEND", raising=False)
    return calls


def test_backend_rules_argument_environment_and_forced(monkeypatch, fake_triton):
    assert resolve_backend("auto", "cuda") == "triton" and resolve_backend(None, "cpu") == "recurrent"
    monkeypatch.setenv("RESNET_BK_SCAN_BACKEND", "naive")
    assert resolve_backend("auto", "cuda") == "naive"            # the variable replaces "auto" only
    assert resolve_backend("parallel", "cuda") == "parallel"     # an explicit argument wins over it
    with forced_backend("parallel"):
        assert resolve_backend("recurrent", "cpu") == "parallel"  # the override wins over everything
        with forced_backend("naive"):
            assert resolve_backend("auto", "cpu") == "naive"
        assert resolve_backend("auto", "cpu") == "parallel"        # nested blocks restore the outer choice
    assert resolve_backend("recurrent", "cpu") == "recurrent"
    monkeypatch.setenv("RESNET_BK_SCAN_BACKEND", "fast")
    with pytest.raises(ValueError, match="RESNET_BK_SCAN_BACKEND"):
        resolve_backend("auto", "cpu")
    with pytest.raises(ValueError, match="scan backend must be one of"):
        forced_backend("cuda").__enter__()


def test_float64_asked_of_triton_runs_the_exact_recurrent_path(seed, fake_triton):
    args = [t.requires_grad_() for t in random_problem(2, 11, 2, 3, 4)]
    state = BKState(torch.randn(2, 2, 3, 2, dtype=f64), torch.randn(2, 2, 3, 4, 2, dtype=f64))
    o, s = causal_resolvent_scan(*args, state=state, backend="triton")
    o_ref, s_ref = causal_resolvent_scan_naive(*args, state)
    assert fake_triton == [], "float64 never reaches the float32 kernels"
    assert (o - o_ref).abs().max() < 1e-12 and (s.y - s_ref.y).abs().max() < 1e-12
    g1 = torch.autograd.grad((o * o_ref.detach()).sum(), args)
    g2 = torch.autograd.grad((o_ref * o_ref.detach()).sum(), args)
    assert all(torch.allclose(x, y, rtol=1e-9, atol=1e-11) for x, y in zip(g1, g2))
    # float32 inputs with a float64 state: the exact path too
    causal_resolvent_scan(*[t.detach().float() for t in args], state=state, backend="triton")
    assert fake_triton == []
    causal_resolvent_scan(*[t.detach().float() for t in args], backend="triton", scan_config={"block_t": 64})
    from resnet_bk_hf.ops.bk import ScanConfig
    assert fake_triton[0]["dtype"] == torch.float32 and fake_triton[0]["config"] == ScanConfig(block_t=64)


@pytest.mark.parametrize("backend", ["recurrent", "parallel", "triton", "auto"])
def test_diag_mode_fast_paths_equal_the_naive_loop(seed, backend, fake_triton):
    """causal_green (diag mode) against the Python loop in float64, forward and gradients, with a carried g."""
    a, hop, _, _, _, z_re, z_im = random_problem(2, 23, 3, 4, 1)
    with torch.no_grad():
        hop[1, 9] = 0.0                                  # a restart (padding) inside the sequence
    g0 = 0.3 * torch.randn(2, 3, 4, 2, dtype=f64)
    inputs = [t.requires_grad_() for t in (a, hop, z_re, z_im, g0)]
    g, state = causal_green(a, hop, z_re, z_im, state=BKState(g0, g0.new_zeros(2, 3, 4, 0, 2)), backend=backend)
    ref = causal_green_naive(a, hop, z_re, z_im, g0)
    assert g.shape == (2, 23, 3, 4, 2) and state.g.shape == (2, 3, 4, 2) and state.y.shape == (2, 3, 4, 0, 2)
    assert (g - ref).abs().max() < 1e-12 and torch.equal(state.g, g[:, -1])
    weight = torch.randn_like(g)
    got = torch.autograd.grad((weight * g).sum(), inputs)
    want = torch.autograd.grad((weight * ref).sum(), inputs)
    for name, x, y in zip(("a", "hop", "z_re", "z_im", "g0"), got, want):
        assert (x - y).abs().max() <= 1e-10 * (1 + y.abs().max()), name
    assert fake_triton == [], "diag mode has no kernel: it never reaches the resolvent scan's"


def test_recurrent_green_gradcheck(seed):
    a, hop, *_, z_re, z_im = random_problem(1, 6, 2, 2, 1)
    g0 = 0.3 * torch.randn(1, 2, 2, 2, dtype=f64)
    from resnet_bk_hf.ops.bk.recurrent import causal_green_recurrent
    inputs = tuple(t.requires_grad_() for t in (a, hop, z_re, z_im, g0))
    assert torch.autograd.gradcheck(causal_green_recurrent, inputs)
