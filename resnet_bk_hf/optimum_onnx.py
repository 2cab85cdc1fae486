"""ONNX export and ONNX Runtime inference through Optimum (optimum-onnx; it pins transformers < 4.58).

    from resnet_bk_hf.optimum_onnx import export_with_optimum, ORTResNetBKForCausalLM
    export_with_optimum("outputs/demo-model", "outputs/demo-onnx")
    model = ORTResNetBKForCausalLM.from_pretrained("outputs/demo-onnx")     # model_with_state.onnx
    model.generate(**tok("Mr. Speaker,", return_tensors="pt"), max_new_tokens=20)

Optimum parts used as they are: `export_models` (export with dynamic axes and the dynamic-axes
fix), `validate_models_outputs` (ONNX Runtime against PyTorch, ATOL_FOR_VALIDATION), `OnnxConfig`
with Optimum's dummy text inputs, `ModelPatcher`, and `ORTModelForCausalLM`, which runs the
full-sequence graph model.onnx as it is
(`ORTModelForCausalLM.from_pretrained(dir, file_name="model.onnx", use_cache=False)`).

Where Optimum does not fit, and what this module adds:
- ResNet-BK is not one of Optimum's architectures, so the two graphs have custom configs
  (`ResNetBKOnnxConfig`, `ResNetBKWithStateOnnxConfig`) passed as `custom_onnx_configs`.
- Optimum's decoder configs and `ORTModelForCausalLM` only know attention key/value caches
  (`past_key_values.{i}.key/value`, growing along the sequence). The BK state is fixed-size and
  replaced, not appended to, so the with-state graph has its own inputs/outputs
  (`past_states.{i}.g/y`, `past_last_mask`) and `ORTResNetBKForCausalLM` subclasses
  `ORTModelForCausalLM` to carry it through `generate()` the way `ResNetBKForCausalLM` carries
  `ResNetBKCache`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
from optimum.exporters.onnx import OnnxConfig, export_models, validate_models_outputs
from optimum.exporters.onnx.model_patcher import ModelPatcher
from optimum.onnxruntime import ORTModelForCausalLM
from optimum.utils import DEFAULT_DUMMY_SHAPES, DummyInputGenerator, DummyTextInputGenerator, NormalizedTextConfig

from .modeling import ResNetBKCausalLMOutput
from .onnx_export import (DEFAULT_OPSET, FULL_MODEL_FILE, WITH_STATE_MODEL_FILE, ResNetBKOnnxDecoder, _load,
                          check_exportable, io_names_and_axes, state_names, state_shapes, write_model_files)
from .ops.bk import forced_backend


class ResNetBKDummyStateGenerator(DummyInputGenerator):
    """Dummy recurrent state: past_last_mask (batch,) and past_states (one g and one y per layer)."""

    SUPPORTED_INPUT_NAMES = ("past_last_mask", "past_states")

    def __init__(self, task: str, normalized_config, batch_size: int = DEFAULT_DUMMY_SHAPES["batch_size"], **kwargs):
        self.task = task
        self.config = normalized_config.config
        self.batch_size = batch_size

    def generate(self, input_name: str, framework: str = "pt", int_dtype: str = "int64", float_dtype: str = "fp32"):
        if input_name == "past_last_mask":
            # 1 = the last absorbed position was a token (not padding)
            return self.random_int_tensor([self.batch_size], max_value=2, min_value=1, framework=framework,
                                          dtype=int_dtype)
        shapes = state_shapes(self.config)
        return [self.random_float_tensor([self.batch_size, *shapes[part][1:]], min_value=-0.1, max_value=0.1,
                                         dtype=float_dtype, framework=framework)
                for _ in range(self.config.num_hidden_layers) for part in ("g", "y")]


class ResNetBKModelPatcher(ModelPatcher):
    """Replaces the model's forward by `ResNetBKOnnxDecoder` (tensors in and out) with the parallel scan."""

    def __init__(self, config: ResNetBKOnnxConfig, model, model_kwargs=None):
        use_cache = model.config.use_cache
        super().__init__(config, model, model_kwargs)
        model.config.use_cache = use_cache   # ModelPatcher sets it from `use_past`; the wrapper passes it itself
        decoder = ResNetBKOnnxDecoder(model, with_state=config.with_state, model_forward=self.orig_forward)

        def patched_forward(input_ids, attention_mask, past_last_mask=None, past_states=None):
            outputs = decoder(input_ids, attention_mask, past_last_mask, past_states)
            if not config.with_state:
                return {"logits": outputs}
            return {"logits": outputs[0], "present_last_mask": outputs[1], "present_states": list(outputs[2:])}

        self.patched_forward = patched_forward

    def __enter__(self):
        super().__enter__()
        self._backend = forced_backend("parallel")   # every BK scan of the trace: the ONNX form
        self._backend.__enter__()

    def __exit__(self, exc_type, exc_value, traceback):
        self._backend.__exit__(exc_type, exc_value, traceback)
        super().__exit__(exc_type, exc_value, traceback)


class ResNetBKOnnxConfig(OnnxConfig):
    """model.onnx: input_ids, attention_mask -> logits (all positions)."""

    NORMALIZED_CONFIG_CLASS = NormalizedTextConfig
    DUMMY_INPUT_GENERATOR_CLASSES = (DummyTextInputGenerator, ResNetBKDummyStateGenerator)
    DEFAULT_ONNX_OPSET = DEFAULT_OPSET
    ATOL_FOR_VALIDATION = 1e-4
    _MODEL_PATCHER = ResNetBKModelPatcher
    with_state = False

    def __init__(self, config, task: str = "text-generation", **kwargs):
        check_exportable(config)
        super().__init__(config, task=task, **kwargs)

    @property
    def inputs(self) -> Dict[str, Dict[int, str]]:
        names, _, axes = io_names_and_axes(self._config, self.with_state)
        return {name: axes[name] for name in names}

    @property
    def outputs(self) -> Dict[str, Dict[int, str]]:
        _, names, axes = io_names_and_axes(self._config, self.with_state)
        return {name: axes[name] for name in names}

    def generate_dummy_inputs(self, framework: str = "pt", **kwargs):
        generators = self._create_dummy_input_generator_classes(**kwargs)
        wanted = ["input_ids", "attention_mask"] + (["past_last_mask", "past_states"] if self.with_state else [])
        dummy = {}
        for name in wanted:
            generator = next(g for g in generators if g.supports_input(name))
            dummy[name] = generator.generate(name, framework=framework, int_dtype=self.int_dtype,
                                             float_dtype=self.float_dtype)
        # The mask must hold a zero, or the model skips its masking path and the trace freezes that branch.
        # Optimum's dummy mask is padded already; make sure of it.
        mask = dummy["attention_mask"]
        if bool((mask != 0).all()):
            mask[0, 0] = 0
        return dummy

    def flatten_output_collection_property(self, name: str, field) -> Dict[str, object]:
        if name in ("past_states", "present_states"):
            return dict(zip(state_names(self._config.num_hidden_layers, name), field))
        return super().flatten_output_collection_property(name, field)


class ResNetBKWithStateOnnxConfig(ResNetBKOnnxConfig):
    """model_with_state.onnx: the recurrent cache in and out (past_states.{i}.g/y -> present_states.{i}.g/y)."""

    with_state = True


def export_with_optimum(model_or_dir, out_dir, opset: Optional[int] = None, validate: bool = True) -> Path:
    """Export model.onnx and model_with_state.onnx with Optimum's `export_models`, then (when `validate`)
    check both against the PyTorch model with Optimum's `validate_models_outputs` (max abs difference
    <= ATOL_FOR_VALIDATION = 1e-4 on Optimum's dummy inputs).

    Why not `onnx_export_from_model`: it infers the library from the model class's module name and
    accepts only modules under transformers/diffusers/timm/sentence_transformers, so it rejects
    `resnet_bk_hf.modeling` (a model loaded with trust_remote_code passes, its module is
    `transformers_modules.*`). `export_models` and `validate_models_outputs` are the functions it calls.
    """
    model, source_dir = _load(model_or_dir)
    check_exportable(model.config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    models_and_configs = {"model": (model, ResNetBKOnnxConfig(model.config)),
                          "model_with_state": (model, ResNetBKWithStateOnnxConfig(model.config))}
    files = [FULL_MODEL_FILE, WITH_STATE_MODEL_FILE]
    opset = opset or ResNetBKOnnxConfig.DEFAULT_ONNX_OPSET
    _, output_names = export_models(models_and_configs, out, opset=opset, output_names=files)
    if validate:
        validate_models_outputs(models_and_configs, output_names, out, atol=ResNetBKOnnxConfig.ATOL_FOR_VALIDATION,
                                onnx_files_subpaths=files, use_subprocess=False)
    write_model_files(model, source_dir, out, exporter="optimum")
    return out


class ResNetBKOnnxState:
    """The recurrent cache of the ONNX graph: what `ResNetBKCache` holds, as ORT inputs."""

    def __init__(self, tensors: Dict[str, torch.Tensor], seqlen_offset: int):
        self.tensors = tensors
        self.seqlen_offset = seqlen_offset

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seqlen_offset

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.tensors = {k: v.index_select(0, beam_idx.to(v.device)) for k, v in self.tensors.items()}


class ORTResNetBKForCausalLM(ORTModelForCausalLM):
    """ONNX Runtime ResNet-BK for `generate()` and pipelines: runs model_with_state.onnx, O(1) per new token."""

    _is_stateful = True   # no DynamicCache: the state travels as `cache_params`, as in ResNetBKForCausalLM

    def __init__(self, *, config=None, **kwargs):
        # ORTModelForCausalLM warns that use_cache=True needs past_key_values inputs: not ours to heed.
        use_cache, config.use_cache = config.use_cache, False
        super().__init__(config=config, **kwargs)
        config.use_cache = use_cache
        self.past_names = state_names(self.config.num_hidden_layers, "past_states")
        self.can_use_cache = "past_states.0.g" in self.input_names
        if not self.can_use_cache:
            raise ValueError(f"{self.__class__.__name__} needs {WITH_STATE_MODEL_FILE} (inputs past_states.*); "
                             f"for {FULL_MODEL_FILE} use ORTModelForCausalLM(..., use_cache=False)")

    @classmethod
    def _from_pretrained(cls, model_id, config, file_name: Optional[str] = None, **kwargs):
        return super()._from_pretrained(model_id, config, file_name=file_name or WITH_STATE_MODEL_FILE, **kwargs)

    def _empty_state(self, batch_size: int) -> Dict[str, torch.Tensor]:
        shapes = state_shapes(self.config)
        state = {"past_last_mask": torch.ones(batch_size, dtype=torch.long)}
        for name in self.past_names:
            state[name] = torch.zeros(batch_size, *shapes[name.rsplit(".", 1)[1]][1:], dtype=torch.float32)
        return state

    def forward(self, input_ids: torch.LongTensor, attention_mask: Optional[torch.LongTensor] = None,
                cache_params: Optional[ResNetBKOnnxState] = None, use_cache: Optional[bool] = None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        state = cache_params.tensors if cache_params is not None else self._empty_state(input_ids.shape[0])
        feed = {"input_ids": input_ids.cpu().numpy().astype(np.int64),
                "attention_mask": attention_mask.cpu().numpy().astype(np.int64)}
        feed.update({name: t.cpu().numpy() for name, t in state.items()})
        outputs = dict(zip(self.output_names, self.session.run(list(self.output_names), feed)))
        new_state = {"past_last_mask": torch.from_numpy(outputs["present_last_mask"])}
        new_state.update({name: torch.from_numpy(outputs[name.replace("past_states", "present_states")])
                          for name in self.past_names})
        offset = (cache_params.seqlen_offset if cache_params is not None else 0) + input_ids.shape[1]
        return ResNetBKCausalLMOutput(logits=torch.from_numpy(outputs["logits"]).to(self.device),
                                      cache_params=ResNetBKOnnxState(new_state, offset))

    def prepare_inputs_for_generation(self, input_ids, cache_params=None, attention_mask=None, **kwargs):
        # As ResNetBKForCausalLM: the state has absorbed `seqlen_offset` tokens, feed only the new ones.
        if cache_params is not None and cache_params.seqlen_offset > 0:
            input_ids = input_ids[:, cache_params.seqlen_offset:]
            if attention_mask is not None:
                attention_mask = attention_mask[:, cache_params.seqlen_offset:]
        return {"input_ids": input_ids, "attention_mask": attention_mask, "cache_params": cache_params}

    @staticmethod
    def _reorder_cache(cache_params, beam_idx):
        cache_params.reorder_cache(beam_idx)
        return cache_params
