"""The log-depth real-pair scan (ops/bk/parallel.py, the ONNX form) against the reference."""
import pytest
import torch

from resnet_bk_hf import ResNetBKForCausalLM
from resnet_bk_hf.ops.bk import causal_resolvent_scan, forced_backend
from resnet_bk_hf.ops.bk.naive import causal_resolvent_scan_naive
from resnet_bk_hf.ops.bk.parallel import causal_resolvent_scan_parallel

from conftest import tiny_config
from test_scan_reference import random_problem


@pytest.mark.parametrize("N", [1, 2, 7, 33])
def test_parallel_matches_naive_forward_and_backward(seed, N):
    args = [t.requires_grad_() for t in random_problem(2, N, 3, 2, 4)]
    with torch.no_grad():
        args[1][0, N // 2] = 0.0          # a reset (padding) inside the sequence
    state = (torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True),
             torch.randn(2, 3, 2, 4, 2, dtype=torch.float64, requires_grad=True))
    o1, s1 = causal_resolvent_scan_naive(*args, state)
    o2, s2 = causal_resolvent_scan_parallel(*args, state)
    assert (o1 - o2).abs().max() < 1e-10
    assert (s1[0] - s2[0]).abs().max() < 1e-10 and (s1[1] - s2[1]).abs().max() < 1e-10
    weights = [torch.randn_like(o1), torch.randn_like(s1[0]), torch.randn_like(s1[1])]
    inputs = args + list(state)
    g1 = torch.autograd.grad(sum((w * x).sum() for w, x in zip(weights, (o1, *s1))), inputs)
    g2 = torch.autograd.grad(sum((w * x).sum() for w, x in zip(weights, (o2, *s2))), inputs)
    for x, y in zip(g1, g2):
        assert (x - y).abs().max() < 1e-8


def test_parallel_float32_long_sequence_stays_finite_and_accurate(seed):
    """N = 4096 with large potentials and near-band shifts: the renormalised Mobius products must not overflow."""
    a, hop, u, c_re, c_im, z_re, z_im = random_problem(1, 4096, 2, 2, 3, v_scale=30.0, hop_range=(0.5, 1.0),
                                                       eta_range=(0.02, 0.5))
    ref, _ = causal_resolvent_scan(a, hop, u, c_re, c_im, z_re, z_im, backend="recurrent")
    o, (g, y) = causal_resolvent_scan_parallel(*[t.float() for t in (a, hop, u, c_re, c_im, z_re, z_im)])
    assert torch.isfinite(o).all() and torch.isfinite(g).all() and torch.isfinite(y).all()
    err = ((o.double() - ref).abs().max() / ref.abs().max()).item()
    print(f"relative max error float32 parallel vs float64 recurrent, N=4096: {err:.2e}")
    assert err < 1e-4


@pytest.mark.parametrize("mixer_mode", ["resolvent", "diag"])
def test_model_with_parallel_backend_matches_recurrent(seed, mixer_mode):
    ids = torch.randint(0, 97, (2, 19))
    model = ResNetBKForCausalLM(tiny_config(mixer_mode=mixer_mode)).eval()
    parallel = ResNetBKForCausalLM(tiny_config(mixer_mode=mixer_mode, scan_backend="parallel")).eval()
    parallel.load_state_dict(model.state_dict())
    with torch.no_grad():
        ref = model(ids).logits
        out = parallel(ids).logits
        with forced_backend("parallel"):    # the ONNX export's override: the model and its config untouched
            forced = model(ids).logits
    assert model.config.scan_backend == "auto" and model.model.layers[0].mixer.scan_backend == "auto"
    assert (out - ref).abs().max() < 1e-5 and torch.equal(forced, out)
