"""The one configuration schema of a training run: `resnet-bk train CONFIG.yaml`, the demo
(resnet_bk_hf/demo_config.yaml) and every run of `resnet-bk compare` (its recipe translated by
compare/config.py:run_config) are a `TrainConfig` checked here.

    model:            ResNetBKConfig fields (vocab and special token ids come from the tokenizer),
                      or `pretrained: DIR` to start from a saved model
    data:             train / validation sources (data/pipeline.py), block_size, streaming, ...
                      (a caller that brings its own datasets gives only block_size)
    training:         passed to `transformers.TrainingArguments` (any of its fields)
    fault_tolerance:  what the guard watches and how the run recovers (FaultToleranceConfig)
    output:           where the final model goes and whether the checkpoints stay (OutputConfig)

Everything is checked before a model is built, through resnet_bk_hf/validation.py: unknown keys, wrong
types, missing files and impossible values fail at once with the file, the field and the value in the
message (`ConfigError`, a `FieldError`).
"""
from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import yaml

from ..validation import FieldError, build_dataclass, check_choice, check_float, check_int, coerce, need

SECTIONS = ("model", "data", "training", "fault_tolerance", "output")


class ConfigError(FieldError):
    """A training configuration that cannot run; the message names the file, the field and the value."""


@dataclass
class DataConfig:
    train: List[Any] = field(default_factory=list)   # sources; required in a file run by `resnet-bk train`
    validation: Optional[List[Any]] = None
    block_size: int = 512
    streaming: bool = False
    shuffle_buffer: int = 10_000          # streaming only: `IterableDataset.shuffle` buffer
    text_field: str = "text"
    txt_sample_by: str = "document"       # how a .txt file splits into documents
    tokenizer: Optional[str] = None       # a folder with tokenizer.json / tokenizer files; default: the shipped one
    num_proc: Optional[int] = None        # tokenization processes (map-style corpora)


@dataclass
class FaultToleranceConfig:
    rollback: bool = True                 # false: an anomaly ends the run (compare records it as "diverged")
    max_rollbacks: int = 5
    lr_decay: float = 0.5
    grad_spike_factor: Optional[float] = 10.0    # null: no gradient-spike check
    grad_spike_window: int = 50
    grad_spike_min_history: int = 10
    divergence_factor: Optional[float] = 2.0     # null: no loss-divergence check
    divergence_window: int = 20
    oom_recovery: bool = True
    handle_signals: bool = True


@dataclass
class OutputConfig:
    model_dir: Optional[str] = None       # the final model + tokenizer; default: training.output_dir
    keep_checkpoints: bool = True         # false: checkpoint-N folders are removed once the final model is saved


@dataclass
class TrainConfig:
    path: Path
    model: dict
    data: DataConfig
    training: dict
    fault_tolerance: FaultToleranceConfig = field(default_factory=FaultToleranceConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


# ------------------------------------------------------------------------------------------------ loading

Overrides = Union[Sequence[str], Mapping[str, Any], None]


def load_config(path: str | Path, overrides: Overrides = None) -> TrainConfig:
    """Read and check a training YAML. `overrides`: "section.key=value" strings (values parsed as YAML), or a
    mapping {"section.key": value} (values taken as they are)."""
    path = Path(path)
    raw = read_yaml(path)
    return parse_config({} if raw is None else raw, path, overrides)


def read_yaml(path: Path):
    """The parsed YAML file (any type; the caller checks its shape), or ConfigError naming the file."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e


def parse_config(raw, path: str | Path = "<config>", overrides: Overrides = None,
                 require_data: bool = True) -> TrainConfig:
    """A checked TrainConfig from the parsed YAML (a dict); `path` names it in the messages. With
    `require_data=False` the data section may name no sources (the caller passes its datasets)."""
    path = Path(path)
    try:
        return _parse(raw, path, overrides, require_data)
    except ConfigError:
        raise
    except FieldError as e:
        raise ConfigError(str(e)) from None


def _parse(raw, path: Path, overrides: Overrides, require_data: bool) -> TrainConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with sections {list(SECTIONS)}, got {raw!r}")
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    items = overrides.items() if isinstance(overrides, Mapping) else ((o, None) for o in overrides or [])
    for dotted, value in items:
        _apply_override(raw, dotted, value, parsed=isinstance(overrides, Mapping))
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; allowed: {list(SECTIONS)}")
    for required in ("data", "training") if require_data else ():
        if not isinstance(raw.get(required), dict):
            raise ConfigError(f"{path}: section '{required}' is missing or not a mapping")
    model = _check_model(path, raw.get("model") or {})
    data = _check_data(path, raw.get("data") or {}, require_data)
    training = _check_training(path, raw.get("training") or {})
    if data.streaming and not (isinstance(training.get("max_steps"), int) and training["max_steps"] > 0):
        raise ConfigError(f"{path}: data.streaming needs training.max_steps > 0 (a stream has no length), "
                          f"got {training.get('max_steps')!r}")
    fault = check_fault_tolerance(path, raw.get("fault_tolerance"))
    output = build_dataclass(f"{path}: output", raw.get("output"), OutputConfig)
    return TrainConfig(path=path, model=model, data=data, training=training, fault_tolerance=fault, output=output)


def _apply_override(raw: dict, dotted: str, value, parsed: bool) -> None:
    shown = dotted if parsed else repr(dotted)
    if not parsed:
        if "=" not in dotted or "." not in dotted.split("=", 1)[0]:
            raise ConfigError(f"override {shown} must look like section.key=value (e.g. training.max_steps=20)")
        dotted, text = dotted.split("=", 1)
        value = yaml.safe_load(text)
    if "." not in dotted:
        raise ConfigError(f"override {shown} must name section.key (e.g. training.max_steps)")
    section, key = dotted.split(".", 1)
    if section not in SECTIONS:
        raise ConfigError(f"override {shown}: unknown section {section!r}; sections: {list(SECTIONS)}")
    if not isinstance(raw.get(section) or {}, dict):
        raise ConfigError(f"override {shown}: section {section!r} is not a mapping")
    if raw.get(section) is None:
        raw[section] = {}
    raw[section][key] = value


# ------------------------------------------------------------------------------------------------ sections

def _check_model(path: Path, model) -> dict:
    from ..configuration import ResNetBKConfig
    if not isinstance(model, dict):
        raise ConfigError(f"{path}: model must be a mapping of ResNetBKConfig fields, got {model!r}")
    # ResNetBKConfig's constructor arguments, and `pretrained`
    params = inspect.signature(ResNetBKConfig.__init__).parameters
    allowed = [n for n, p in params.items() if n != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD]
    allowed.append("pretrained")
    unknown = sorted(set(model) - set(allowed))
    if unknown:
        raise ConfigError(f"{path}: model: unknown key(s) {unknown}; allowed: {allowed}")
    if "pretrained" in model and not Path(str(model["pretrained"])).is_dir():
        raise ConfigError(f"{path}: model.pretrained: no such folder: {model['pretrained']}")
    return model


def _check_data(path: Path, raw: dict, require_sources: bool) -> DataConfig:
    from ..data.pipeline import check_source
    raw = dict(raw)
    if require_sources and "train" not in raw:
        raise ConfigError(f"{path}: data: missing required key(s) ['train']")
    for key in ("train", "validation"):
        if isinstance(raw.get(key), (str, dict)):
            raw[key] = [raw[key]]
    data = build_dataclass(f"{path}: data", raw, DataConfig)
    for key in ("train", "validation"):
        for i, source in enumerate(getattr(data, key) or []):
            try:
                check_source(source)
            except (FileNotFoundError, ValueError) as e:
                raise ConfigError(f"{path}: data.{key}[{i}]: {e}") from e
    if require_sources and not data.train:
        raise ConfigError(f"{path}: data.train must list at least one source")
    where = f"{path}: data."
    check_int(where + "block_size", data.block_size, low=2)
    check_int(where + "shuffle_buffer", data.shuffle_buffer, low=1)
    if data.num_proc is not None:
        check_int(where + "num_proc", data.num_proc, low=1)
    need(where + "text_field", bool(data.text_field), "a field name (not empty)", data.text_field)
    check_choice(where + "txt_sample_by", data.txt_sample_by, ("document", "paragraph", "line"))
    if data.tokenizer is not None and not Path(data.tokenizer).is_dir():
        raise ConfigError(f"{path}: data.tokenizer: no such folder: {data.tokenizer}")
    return data


def training_argument_hints() -> Dict[str, Any]:
    """{field: type hint} of every TrainingArguments constructor field (the keys `training:` accepts)."""
    from transformers import TrainingArguments
    hints = typing.get_type_hints(TrainingArguments)
    return {f.name: hints.get(f.name) for f in dataclasses.fields(TrainingArguments) if f.init}


# Ranges of the numbers in `training:` (types are checked first): a value out of range would run and silently
# misbehave (a NaN learning rate trains nothing), so it fails at load. (kind, low, low_open)
TRAINING_RANGES = {
    "learning_rate": ("float", 0, True), "per_device_train_batch_size": ("int", 1, False),
    "per_device_eval_batch_size": ("int", 1, False), "gradient_accumulation_steps": ("int", 1, False),
    "max_grad_norm": ("float", 0, False),       # 0 turns clipping off (Trainer's convention)
    "weight_decay": ("float", 0, False), "warmup_steps": ("float", 0, False), "warmup_ratio": ("float", 0, False),
    "num_train_epochs": ("float", 0, True), "adam_epsilon": ("float", 0, True),
    "save_steps": ("float", 0, True), "logging_steps": ("float", 0, True),   # < 1: a ratio of the run
    "eval_steps": ("float", 0, True),
}


def _check_training(path: Path, raw: dict) -> dict:
    hints = training_argument_hints()
    unknown = sorted(set(raw) - set(hints))
    if unknown:
        raise ConfigError(f"{path}: training: unknown TrainingArguments field(s) {unknown}")
    training = {k: coerce(f"{path}: training.{k}", v, hints[k]) for k, v in raw.items()}
    for key, (kind, low, low_open) in TRAINING_RANGES.items():
        value = training.get(key)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if kind == "int":
            check_int(f"{path}: training.{key}", value, low=low)
        else:
            check_float(f"{path}: training.{key}", value, low=low, low_open=low_open)
    ds = training.get("deepspeed")
    if isinstance(ds, str) and not Path(ds).is_file():
        raise ConfigError(f"{path}: training.deepspeed: no such file: {ds}")
    return training


def check_fault_tolerance(path: str | Path, raw) -> FaultToleranceConfig:
    """The `fault_tolerance:` section (a mapping or None), checked; `path` names the file in messages."""
    fault = build_dataclass(f"{path}: fault_tolerance", raw, FaultToleranceConfig)
    where = f"{path}: fault_tolerance."
    check_float(where + "lr_decay", fault.lr_decay, low=0, high=1, low_open=True)
    check_int(where + "max_rollbacks", fault.max_rollbacks, low=0)
    for key in ("grad_spike_factor", "divergence_factor"):     # None turns the check off
        if getattr(fault, key) is not None:
            check_float(where + key, getattr(fault, key), low=1, low_open=True)
    for key in ("grad_spike_window", "grad_spike_min_history", "divergence_window"):
        check_int(where + key, getattr(fault, key), low=1)
    # the history never grows past the window
    need(where + "grad_spike_min_history", fault.grad_spike_min_history <= fault.grad_spike_window,
         f"<= grad_spike_window ({fault.grad_spike_window}), or spikes are never checked",
         fault.grad_spike_min_history)
    return fault
