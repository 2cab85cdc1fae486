"""ONNX export of ResNetBKForCausalLM, and inference with ONNX Runtime.

Two graphs, both float32, complex numbers as real pairs, dynamic batch and length:

    model.onnx             input_ids, attention_mask -> logits
    model_with_state.onnx  input_ids, attention_mask, past_last_mask, past_states.{i}.g, past_states.{i}.y
                           -> logits, present_last_mask, present_states.{i}.g, present_states.{i}.y

The state inputs/outputs are `ResNetBKCache` flattened: per layer g (batch, heads, shifts, 2) and
y (batch, heads, shifts, head_dim, 2), plus the attention mask of the last absorbed position
(a padded last position does not couple to the next token). Zeros and a mask of ones are the empty
cache, so the with-state graph does the prefill and every decoding step.

The scan is exported in the log-depth form of `ops/bk/parallel.py` (an ONNX Loop of ceil(log2 N)
wide steps; why: docs/ecosystem.md), chosen with `ops.bk.forced_backend("parallel")` around the trace:
the model and its config are not touched. `export_onnx` uses torch.onnx directly and needs only onnx;
`optimum_onnx.py` exports the same graphs through Optimum (transformers < 4.58).
"""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .modeling import ResNetBKCache, ResNetBKForCausalLM
from .ops.bk import BKState, forced_backend

FULL_MODEL_FILE = "model.onnx"
WITH_STATE_MODEL_FILE = "model_with_state.onnx"
DEFAULT_OPSET = 18
EXPORT_INFO_FILE = "resnet_bk_onnx.json"


def state_names(num_layers: int, prefix: str) -> List[str]:
    """`prefix.{i}.g`, `prefix.{i}.y` for every layer, in the order the graphs use."""
    return [f"{prefix}.{i}.{part}" for i in range(num_layers) for part in ("g", "y")]


def state_shapes(config) -> Dict[str, Tuple[str, ...]]:
    """Symbolic shape of one layer's g and y (the batch axis is dynamic)."""
    return {"g": ("batch_size", config.num_heads, config.num_shifts, 2),
            "y": ("batch_size", config.num_heads, config.num_shifts, config.head_dim, 2)}


def check_exportable(config) -> None:
    if config.mixer_mode != "resolvent":
        raise ValueError(f"ONNX export supports mixer_mode='resolvent' only, got mixer_mode={config.mixer_mode!r} "
                         "(the graphs' state inputs and outputs are the resolvent mode's g and y)")
    if config.positional_potential is not None:
        # The with-state graph carries g and y only: a step would restart the positional bias at position 0.
        raise ValueError("ONNX export does not support positional_potential="
                         f"{config.positional_potential!r} yet: the with-state graph has no position input, so "
                         "step-by-step decoding would use the wrong positional potential")


class ResNetBKOnnxDecoder(nn.Module):
    """ResNetBKForCausalLM with tensors in and tensors out: what the ONNX graphs compute.

    It runs the model's own forward (so the graph is the model, not a copy of it), building a
    `ResNetBKCache` from the state tensors when `with_state`. Trace it with an attention mask that
    has a zero in it: the model skips the masking work for all-ones masks, and tracing freezes
    that branch.
    """

    def __init__(self, model: ResNetBKForCausalLM, with_state: bool, model_forward=None):
        super().__init__()
        check_exportable(model.config)
        self.model = model
        self.with_state = with_state
        # Optimum's ModelPatcher replaces model.forward by this wrapper: it hands over the original.
        self.model_forward = model_forward or model

    def forward(self, input_ids, attention_mask, past_last_mask=None, past_states: Optional[Sequence] = None):
        cache = None
        if self.with_state:
            cache = ResNetBKCache(self.model.config, input_ids.shape[0], input_ids.device)
            cache.states = [BKState(past_states[2 * i], past_states[2 * i + 1]) for i in range(len(cache.states))]
            cache.last_mask = past_last_mask
        out = self.model_forward(input_ids=input_ids, attention_mask=attention_mask, cache=cache,
                                 use_cache=self.with_state, return_dict=True)
        if not self.with_state:
            return out.logits
        states = [s for layer in out.cache.states for s in layer]
        return (out.logits, out.cache.last_mask, *states)


def example_inputs(config, with_state: bool, batch: int = 2, length: int = 5):
    """Inputs to trace with: the first row is left-padded so that the masking path is recorded."""
    g = torch.Generator().manual_seed(0)   # a private generator: exporting leaves the global RNG alone
    input_ids = torch.randint(0, config.vocab_size, (batch, length), generator=g)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[0, :2] = 0
    if not with_state:
        return input_ids, attention_mask
    shapes = state_shapes(config)
    states = []
    for _ in range(config.num_hidden_layers):
        for part in ("g", "y"):
            states.append(0.1 * torch.randn(batch, *shapes[part][1:], generator=g))
    return input_ids, attention_mask, torch.ones(batch, dtype=torch.long), states


def io_names_and_axes(config, with_state: bool):
    """(input names, output names, dynamic axes) of one graph."""
    seq = {0: "batch_size", 1: "sequence_length"}
    inputs, outputs = ["input_ids", "attention_mask"], ["logits"]
    axes = {"input_ids": seq, "attention_mask": seq, "logits": seq}
    if with_state:
        past, present = state_names(config.num_hidden_layers, "past_states"), \
            state_names(config.num_hidden_layers, "present_states")
        inputs += ["past_last_mask"] + past
        outputs += ["present_last_mask"] + present
        for name in ["past_last_mask", "present_last_mask"] + past + present:
            axes[name] = {0: "batch_size"}
    return inputs, outputs, axes


def _export_graph(model, path: Path, with_state: bool, opset: int):
    wrapper = ResNetBKOnnxDecoder(model, with_state).eval()
    args = example_inputs(model.config, with_state)
    inputs, outputs, axes = io_names_and_axes(model.config, with_state)
    with torch.no_grad(), forced_backend("parallel"), warnings.catch_warnings():
        # TracerWarnings: the model's input checks (int(ids.max()) etc.) become constants, as intended.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # The TorchScript exporter is deprecated in torch >= 2.9, but it is the one that turns the scripted
        # doubling loop into an ONNX Loop, and the one Optimum uses (dynamo=False).
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(wrapper, args, str(path), input_names=inputs, output_names=outputs, dynamic_axes=axes,
                          opset_version=opset, do_constant_folding=True, dynamo=False)


def export_onnx(model_or_dir, out_dir, opset: int = DEFAULT_OPSET, check: bool = True) -> Path:
    """Export model.onnx and model_with_state.onnx (torch.onnx, TorchScript exporter) into `out_dir`.

    `model_or_dir` is a ResNetBKForCausalLM or a directory saved by `save_pretrained`. The config,
    generation config and (when the source directory has one) the tokenizer are copied beside the
    graphs, so `out_dir` is a self-describing model directory for ONNX Runtime.
    """
    import onnx

    model, source_dir = _load(model_or_dir)
    check_exportable(model.config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for with_state, name in ((False, FULL_MODEL_FILE), (True, WITH_STATE_MODEL_FILE)):
        _export_graph(model, out / name, with_state, opset)
        if check:
            onnx.checker.check_model(str(out / name), full_check=True)
    write_model_files(model, source_dir, out, exporter="torch.onnx")
    return out


def _load(model_or_dir):
    if isinstance(model_or_dir, ResNetBKForCausalLM):
        return model_or_dir.float().eval(), None
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(str(model_or_dir)).float().eval(), Path(model_or_dir)


def write_model_files(model, source_dir: Optional[Path], out: Path, exporter: str) -> None:
    """Config, generation config, tokenizer and an index of the graphs' inputs and outputs."""
    model.config.save_pretrained(out)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(out)
    if source_dir is not None:
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (source_dir / name).is_file() and not (out / name).exists():
                shutil.copy(source_dir / name, out / name)
    info = {"exporter": exporter, "graphs": {}}
    for with_state, name in ((False, FULL_MODEL_FILE), (True, WITH_STATE_MODEL_FILE)):
        inputs, outputs, _ = io_names_and_axes(model.config, with_state)
        info["graphs"][name] = {"inputs": inputs, "outputs": outputs}
    (out / EXPORT_INFO_FILE).write_text(json.dumps(info, indent=2))


class OnnxResNetBK:
    """ONNX Runtime inference on an exported directory, with numpy in and out.

    `logits(ids)` runs model.onnx; `step(ids, state)` runs model_with_state.onnx and returns the next
    state; `greedy_generate` decodes one token per step from the state. For `generate()` (greedy
    and beam search are tested), use `optimum_onnx.ORTResNetBKForCausalLM` (needs Optimum).
    """

    def __init__(self, onnx_dir, providers: Sequence[str] = ("CPUExecutionProvider",), session_options=None):
        import onnxruntime as ort
        from transformers import AutoConfig

        self.dir = Path(onnx_dir)
        self.config = AutoConfig.from_pretrained(str(self.dir))
        self.full = ort.InferenceSession(str(self.dir / FULL_MODEL_FILE), session_options, providers=list(providers))
        self.with_state = ort.InferenceSession(str(self.dir / WITH_STATE_MODEL_FILE), session_options,
                                               providers=list(providers))
        self.past_names = state_names(self.config.num_hidden_layers, "past_states")

    def initial_state(self, batch_size: int) -> Dict[str, np.ndarray]:
        """The empty cache: zero states, last position not padded."""
        shapes = state_shapes(self.config)
        state = {"past_last_mask": np.ones(batch_size, dtype=np.int64)}
        for name in self.past_names:
            state[name] = np.zeros((batch_size, *shapes[name.rsplit(".", 1)[1]][1:]), dtype=np.float32)
        return state

    @staticmethod
    def _mask(input_ids, attention_mask):
        return np.ones(input_ids.shape, dtype=np.int64) if attention_mask is None else \
            np.asarray(attention_mask, dtype=np.int64)

    def logits(self, input_ids, attention_mask=None) -> np.ndarray:
        input_ids = np.asarray(input_ids, dtype=np.int64)
        return self.full.run(["logits"], {"input_ids": input_ids,
                                          "attention_mask": self._mask(input_ids, attention_mask)})[0]

    def step(self, input_ids, state: Optional[Dict[str, np.ndarray]] = None, attention_mask=None):
        """Absorb `input_ids` (batch, n) into `state`; returns (logits (batch, n, vocab), new state)."""
        input_ids = np.asarray(input_ids, dtype=np.int64)
        state = self.initial_state(input_ids.shape[0]) if state is None else state
        feed = {"input_ids": input_ids, "attention_mask": self._mask(input_ids, attention_mask), **state}
        names = [o.name for o in self.with_state.get_outputs()]
        outputs = dict(zip(names, self.with_state.run(names, feed)))
        new_state = {"past_last_mask": outputs["present_last_mask"]}
        new_state.update({name: outputs[name.replace("past_states", "present_states")] for name in self.past_names})
        return outputs["logits"], new_state

    def greedy_generate(self, input_ids, max_new_tokens: int, attention_mask=None,
                        eos_token_id: Optional[int] = None) -> np.ndarray:
        """Prefill once, then one with-state step per token (O(1) each). Returns prompt + new tokens."""
        ids = np.asarray(input_ids, dtype=np.int64)
        logits, state = self.step(ids, attention_mask=attention_mask)
        done = np.zeros(ids.shape[0], dtype=bool)
        pad = self.config.pad_token_id if self.config.pad_token_id is not None else eos_token_id
        for _ in range(max_new_tokens):
            nxt = logits[:, -1].argmax(-1)
            if eos_token_id is not None:
                nxt = np.where(done, pad, nxt)
                done |= nxt == eos_token_id
            ids = np.concatenate([ids, nxt[:, None]], axis=1)
            if done.all():
                break
            logits, state = self.step(nxt[:, None], state)
        return ids
