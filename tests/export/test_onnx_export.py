"""ONNX export (torch.onnx, and Optimum where it is installed) and ONNX Runtime inference."""
import collections

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx", reason="onnx not installed (pip install -e '.[onnx]')")
pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install -e '.[onnx]')")

from resnet_bk_hf import ResNetBKForCausalLM  # noqa: E402
from resnet_bk_hf.cli import main as cli_main  # noqa: E402
from resnet_bk_hf.onnx_export import (FULL_MODEL_FILE, WITH_STATE_MODEL_FILE, OnnxResNetBK,  # noqa: E402
                                      export_onnx)

from conftest import tiny_config, widened_model  # noqa: E402

try:
    import optimum.exporters.onnx  # noqa: F401
    OPTIMUM_ERROR = None
except ImportError as e:  # optimum-onnx 0.1.0 pins transformers < 4.58: `make test-transformers-4.57` runs these
    OPTIMUM_ERROR = f"optimum-onnx not importable ({e}); it pins transformers<4.58, run make test-transformers-4.57"
needs_optimum = pytest.mark.skipif(OPTIMUM_ERROR is not None, reason=OPTIMUM_ERROR or "")

TOL = 1e-4


def tiny_model(**kw):
    torch.manual_seed(1234)
    return widened_model(**kw)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = tiny_model()
    out = export_onnx(model, tmp_path_factory.mktemp("onnx"))
    return model, out


def batch_with_left_padding(length=29):
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(2, 97, (3, length), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :6] = 0
    return ids, mask


def test_graphs_pass_checker_and_keep_the_scan_as_a_loop(exported):
    model, out = exported
    for name in (FULL_MODEL_FILE, WITH_STATE_MODEL_FILE):
        onnx.checker.check_model(str(out / name), full_check=True)
        ops = collections.Counter(node.op_type for node in onnx.load(str(out / name)).graph.node)
        # two doubling loops per layer (g, then y): the graph does not grow with the sequence length
        assert ops["Loop"] == 2 * model.config.num_hidden_layers


@pytest.mark.parametrize("length", [1, 29, 130])
def test_full_sequence_logits_match_pytorch(exported, length):
    model, out = exported
    ids, mask = batch_with_left_padding(length)
    if length == 1:
        mask = torch.ones_like(ids)
    with torch.no_grad():
        ref = model(ids, attention_mask=mask, use_cache=False).logits.numpy()
    got = OnnxResNetBK(out).logits(ids.numpy(), mask.numpy())
    err = float(np.abs(got - ref).max())
    print(f"ORT vs PyTorch, full sequence, length {length}: max abs err {err:.1e}")
    assert got.shape == ref.shape and err <= TOL


def test_step_by_step_with_state_matches_pytorch(exported):
    model, out = exported
    ids, mask = batch_with_left_padding()
    runner = OnnxResNetBK(out)
    with torch.no_grad():
        ref = model(ids, attention_mask=mask, use_cache=False).logits.numpy()
    logits, state = runner.step(ids[:, :11].numpy(), attention_mask=mask[:, :11].numpy())   # prefill
    pieces = [logits]
    for t in range(11, ids.shape[1]):                                                       # one token per step
        logits, state = runner.step(ids[:, t:t + 1].numpy(), state)
        pieces.append(logits)
    err = float(np.abs(np.concatenate(pieces, axis=1) - ref).max())
    print(f"ORT with-state steps vs PyTorch: max abs err {err:.1e}")
    assert err <= TOL
    # the state after the prefill is the PyTorch cache's
    with torch.no_grad():
        cache = model(ids[:, :11], attention_mask=mask[:, :11], use_cache=True).cache
    _, state = runner.step(ids[:, :11].numpy(), attention_mask=mask[:, :11].numpy())
    for i, (g, y) in enumerate(cache.states):
        assert np.abs(state[f"past_states.{i}.g"] - g.numpy()).max() <= TOL
        assert np.abs(state[f"past_states.{i}.y"] - y.numpy()).max() <= TOL


def test_greedy_generation_same_tokens(exported):
    model, out = exported
    ids, _ = batch_with_left_padding(9)
    with torch.no_grad():
        ref = model.generate(ids, max_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=0)
    got = OnnxResNetBK(out).greedy_generate(ids.numpy(), max_new_tokens=20)
    assert np.array_equal(got, ref.numpy())


def test_export_rejects_diag_mode(tmp_path):
    with pytest.raises(ValueError, match="mixer_mode='resolvent' only"):
        export_onnx(ResNetBKForCausalLM(tiny_config(mixer_mode="diag")), tmp_path)


def test_export_rejects_the_positional_potential(tmp_path):
    model = ResNetBKForCausalLM(tiny_config(positional_potential="prime_bump", positional_potential_length=16))
    with pytest.raises(ValueError, match="positional_potential='prime_bump'"):
        export_onnx(model, tmp_path)


@pytest.mark.parametrize("kw", [dict(hopping_mode="learned", hop_value=0.5),
                                dict(hopping_mode="constant", ffn_type="mlp")])
def test_other_hopping_modes_export(tmp_path, kw):
    model = tiny_model(**kw)
    export_onnx(model, tmp_path)
    ids, mask = batch_with_left_padding(17)
    with torch.no_grad():
        ref = model(ids, attention_mask=mask, use_cache=False).logits.numpy()
    assert np.abs(OnnxResNetBK(tmp_path).logits(ids.numpy(), mask.numpy()) - ref).max() <= TOL


def test_cli_export_onnx(tmp_path, capsys):
    model = tiny_model()
    model.save_pretrained(tmp_path / "model")
    cli_main(["export-onnx", str(tmp_path / "model"), str(tmp_path / "onnx"), "--exporter", "torch"])
    assert "model_with_state.onnx" in capsys.readouterr().out
    ids, mask = batch_with_left_padding(12)
    with torch.no_grad():
        ref = model(ids, attention_mask=mask, use_cache=False).logits.numpy()
    assert np.abs(OnnxResNetBK(tmp_path / "onnx").logits(ids.numpy(), mask.numpy()) - ref).max() <= TOL


@pytest.fixture(scope="module")
def optimum_exported(tmp_path_factory):
    if OPTIMUM_ERROR is not None:
        pytest.skip(OPTIMUM_ERROR)
    from resnet_bk_hf.optimum_onnx import export_with_optimum
    model = tiny_model()
    out = export_with_optimum(model, tmp_path_factory.mktemp("optimum"))   # runs Optimum's output validation
    return model, out


@needs_optimum
def test_optimum_export_full_sequence_with_ORTModelForCausalLM(optimum_exported):
    from optimum.onnxruntime import ORTModelForCausalLM
    model, out = optimum_exported
    ort_model = ORTModelForCausalLM.from_pretrained(out, file_name=FULL_MODEL_FILE, use_cache=False)
    ids, mask = batch_with_left_padding()
    with torch.no_grad():
        ref = model(ids, attention_mask=mask, use_cache=False).logits
    got = ort_model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    assert (got - ref).abs().max() <= TOL
    ids = ids[:, :8]
    with torch.no_grad():
        ref_tokens = model.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0)
    tokens = ort_model.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert torch.equal(tokens, ref_tokens)


@needs_optimum
def test_optimum_with_state_model_steps_and_generates(optimum_exported):
    from resnet_bk_hf.optimum_onnx import ORTResNetBKForCausalLM
    model, out = optimum_exported
    ort_model = ORTResNetBKForCausalLM.from_pretrained(out)
    ids, mask = batch_with_left_padding()
    with torch.no_grad():
        ref = model(ids, attention_mask=mask, use_cache=False).logits
    first = ort_model(input_ids=ids[:, :10], attention_mask=mask[:, :10])
    pieces, cache = [first.logits], first.cache_params
    for t in range(10, ids.shape[1]):
        step = ort_model(input_ids=ids[:, t:t + 1], cache_params=cache)
        pieces.append(step.logits)
        cache = step.cache_params
    assert (torch.cat(pieces, 1) - ref).abs().max() <= TOL
    prompt = ids[:, :8]
    with torch.no_grad():
        ref_tokens = model.generate(prompt, max_new_tokens=15, do_sample=False, eos_token_id=None, pad_token_id=0)
    tokens = ort_model.generate(prompt, max_new_tokens=15, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert torch.equal(tokens, ref_tokens)
    with torch.no_grad():   # beam search reorders the state (ResNetBKOnnxState.reorder_cache)
        ref_beams = model.generate(prompt, max_new_tokens=8, num_beams=3, do_sample=False, eos_token_id=None,
                                   pad_token_id=0)
    beams = ort_model.generate(prompt, max_new_tokens=8, num_beams=3, do_sample=False, eos_token_id=None,
                               pad_token_id=0)
    assert torch.equal(beams, ref_beams)
