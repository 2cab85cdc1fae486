"""BKLayer on its own (resnet_bk_hf/layers/bk.py): explicit arguments, no HF config; equal to the model's mixer,
its public hamiltonian() is what the scan receives, causal, one state shape per mode, arguments checked."""
import pytest
import torch

from resnet_bk_hf.layers import BKLayer
from resnet_bk_hf.modeling import bk_layer_arguments
from resnet_bk_hf.ops.bk import BKState

from conftest import widened_model as model_for   # a tiny model with its potentials drawn away from 0

LAYER_MODES = [dict(mixer_mode="resolvent"), dict(mixer_mode="diag"),
               dict(mixer_mode="resolvent", hopping_mode="learned", hop_value=0.5, positional_potential="prime_bump",
                    positional_potential_length=12, positional_potential_learned=True)]


def _masks(batch=2, length=11):
    """A left-padded row, packed documents and positions: every input the layer reads beside x."""
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1, :3] = 0
    doc_start = torch.zeros(batch, length, dtype=torch.bool)
    doc_start[0, 6] = True
    positions = torch.cat([torch.arange(6), torch.arange(length - 6)]).expand(batch, length)
    return dict(attention_mask=mask, prev_mask=torch.tensor([1, 0]), doc_start=doc_start, positions=positions)


@pytest.mark.parametrize("kw", LAYER_MODES)
def test_standalone_layer_equals_the_models_mixer(seed, kw):
    """BKLayer built from explicit arguments (no config object anywhere) computes what the model's mixer does."""
    model = model_for(**kw).double()
    mixer = model.model.layers[1].mixer
    cfg = model.config
    layer = BKLayer(24, 2, 3, mode=cfg.mixer_mode, hopping_mode=cfg.hopping_mode, hop_value=cfg.hop_value,
                    positional_potential=cfg.positional_potential, positional_potential_length=12,
                    positional_potential_learned=cfg.positional_potential_learned).double()
    assert bk_layer_arguments(cfg)["lambda_init_range"] == layer.lambda_init_range
    layer.load_state_dict(mixer.state_dict())
    x = torch.randn(2, 11, 24, dtype=torch.float64)
    state = BKState(*[0.1 * torch.randn(s, dtype=torch.float64) for s in layer.state_shapes(2)])
    with torch.no_grad():
        got, got_state = layer(x, state=state, **_masks())
        want, want_state = mixer(x, state=state, **_masks())
    assert torch.equal(got, want) and torch.equal(got_state.g, want_state.g) and torch.equal(got_state.y, want_state.y)


@pytest.mark.parametrize("kw", LAYER_MODES)
def test_hamiltonian_is_what_the_scan_receives(seed, kw, monkeypatch):
    from resnet_bk_hf.layers import bk as bk_module
    layer = model_for(**kw).model.layers[0].mixer
    seen = {}

    def recorder(name, scan):
        def record(*args, **kwargs):
            seen[name] = args
            return scan(*args, **kwargs)
        return record

    monkeypatch.setattr(bk_module, "causal_resolvent_scan", recorder("resolvent", bk_module.causal_resolvent_scan))
    monkeypatch.setattr(bk_module, "causal_green", recorder("diag", bk_module.causal_green))
    x = torch.randn(2, 11, 24)
    with torch.no_grad():
        layer(x, **_masks())
        ham = layer.hamiltonian(x, **_masks())
    args = seen[layer.mode]
    received = dict(a=args[0], hop=args[1], z_re=args[-2], z_im=args[-1])
    for name, value in received.items():
        assert torch.equal(value, getattr(ham, name)), name
    assert torch.equal(ham.a, layer.h0_diag + ham.v) and bool((ham.hop[1, :4] == 0).all())   # padding cuts
    assert bool((ham.hop[0, 6] == 0).all()) and bool((ham.z_im >= layer.eta_min).all())      # document start


@pytest.mark.parametrize("kw", LAYER_MODES)
def test_standalone_layer_is_causal(seed, kw):
    layer = model_for(**kw).model.layers[0].mixer.double()
    x = torch.randn(3, 20, 24, dtype=torch.float64)
    with torch.no_grad():
        base, _ = layer(x)
        for t in (0, 7, 18):
            changed = x.clone()
            changed[:, t + 1:] = torch.randn_like(changed[:, t + 1:])
            out, _ = layer(changed)
            assert torch.equal(out[:, :t + 1], base[:, :t + 1])
            assert (out[:, t + 1:] - base[:, t + 1:]).abs().max() > 1e-6


@pytest.mark.parametrize("mode,channels", [("resolvent", 12), ("diag", 0)])
def test_bk_state_has_one_shape_per_mode(seed, mode, channels):
    """BKState(g (B, H, K, 2), y (B, H, K, P, 2)) in both modes; diag mode carries no values (P = 0)."""
    layer = BKLayer(24, 2, 3, mode=mode)
    out, state = layer(torch.randn(4, 5, 24))
    assert isinstance(state, BKState) and state.g.shape == (4, 2, 3, 2) and state.y.shape == (4, 2, 3, channels, 2)
    assert layer.state_shapes(4) == (tuple(state.g.shape), tuple(state.y.shape))
    # the model's cache holds one BKState per layer, and beam search reorders it as a BKState
    model = model_for(mixer_mode=mode)
    cache = model(torch.randint(0, 97, (3, 4)), use_cache=True).cache
    assert all(isinstance(s, BKState) and s.y.shape == (3, 2, 3, channels, 2) for s in cache.states)
    cache.reorder_cache(torch.tensor([2, 2, 0]))
    assert all(isinstance(s, BKState) and s.g.shape[0] == 3 for s in cache.states)
    with pytest.raises(ValueError, match=r"state must be BKState\(g \(4, 2, 3, 2\)"):
        layer(torch.randn(4, 5, 24), state=BKState(state.g[:, :1], state.y))
    with pytest.raises(ValueError, match=r"input must have shape \(batch, seq_len, 24\)"):
        layer(torch.randn(4, 5, 23))


def test_layer_arguments_are_checked():
    from resnet_bk_hf.validation import FieldError
    with pytest.raises(FieldError, match="BKLayer.num_heads must be a divisor of hidden_size=24"):
        BKLayer(24, 5, 3)
    with pytest.raises(FieldError, match="BKLayer.scan_backend must be one of"):
        BKLayer(24, 2, 3, scan_backend="cuda")
    with pytest.raises(ValueError, match="needs `positions` when it carries a state"):
        layer = BKLayer(24, 2, 3, positional_potential="prime_bump", positional_potential_length=8)
        _, state = layer(torch.randn(1, 3, 24))
        layer(torch.randn(1, 2, 24), state=state)
