"""`resnet-bk train CONFIG.yaml`: train a ResNet-BK with `transformers.Trainer`, surviving faults.

The YAML file has four sections (see examples/*.yaml):

    model:            ResNetBKConfig fields (vocab and special token ids come from the tokenizer),
                      or `pretrained: DIR` to start from a saved model
    data:             train / validation sources (data/pipeline.py), block_size, streaming, ...
    training:         passed to `transformers.TrainingArguments` (any of its fields)
    fault_tolerance:  limits of the recoveries (FaultToleranceConfig)

Everything is checked before a model is built: unknown keys, wrong types, missing files and impossible
values fail at once with the file, the field and the value in the message (`ConfigError`).

A run is a loop of attempts around `Trainer.train`. An attempt ends normally, or with:
    - an anomaly flagged by TrainingGuardCallback (NaN/Inf loss, gradients or parameters, gradient-norm
      spike, loss divergence): roll back to the newest intact checkpoint (or the initial weights) and
      lower the learning rate by `lr_decay`, at most `max_rollbacks` times;
    - CUDA out of memory: cut the per-device batch to its largest divisor <= half of it and multiply the
      gradient accumulation by the same factor (exactly the same effective batch, same sample order; see
      `smaller_micro_batch`) and resume from the newest intact checkpoint;
    - SIGTERM / SIGINT: an emergency checkpoint at the end of the current step, then exit 128+signal.
Each recovery goes to OUTPUT_DIR/events.jsonl with its cause. `--resume` continues from the newest
checkpoint whose sha256 manifest verifies, through Trainer's own resume (model, optimizer, scheduler,
RNG states and the position in the data order).
"""
from __future__ import annotations

import dataclasses
import enum
import gc
import inspect
import json
import logging
import math
import signal
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

import torch
import yaml

from .checkpoints import MANIFEST_NAME, latest_valid_checkpoint, list_checkpoints, verify_checkpoint
from .configuration import ResNetBKConfig
from .training import (ChecksumManifestCallback, EventLog, JsonlLogCallback, ResilientTrainer, SignalCheckpointCallback,
                       StepTimerCallback, TrainingGuardCallback)

logger = logging.getLogger(__name__)

SECTIONS = ("model", "data", "training", "fault_tolerance")


class ConfigError(ValueError):
    """A training configuration that cannot run; the message names the file, the field and the value."""


class TrainingFailedError(RuntimeError):
    """Recoveries ran out (too many rollbacks, or out of memory at a per-device batch of 1)."""


@dataclass
class DataConfig:
    train: List[Any]
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
    max_rollbacks: int = 5
    lr_decay: float = 0.5
    grad_spike_factor: float = 10.0
    grad_spike_window: int = 50
    grad_spike_min_history: int = 10
    divergence_factor: float = 2.0
    divergence_window: int = 20
    oom_recovery: bool = True
    handle_signals: bool = True


@dataclass
class TrainConfig:
    path: Path
    model: dict
    data: DataConfig
    training: dict
    fault_tolerance: FaultToleranceConfig = field(default_factory=FaultToleranceConfig)


@dataclass
class TrainResult:
    exit_code: int
    output_dir: Path
    global_step: int
    events: List[dict]
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    metrics: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ config

def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _allowed_types(hint) -> Optional[tuple]:
    """Plain Python types a YAML value may have for a type hint, or None when the hint is not checkable."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [_allowed_types(a) for a in typing.get_args(hint)]
        return None if any(p is None for p in parts) else tuple(t for p in parts for t in p)
    if origin in (list, dict, tuple):
        return (origin,)
    if hint is type(None):
        return (type(None),)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return (str,)
    if hint in (bool, int, float, str, list, dict):
        return (hint,)
    return None


def _coerce(where: str, value, hint):
    """Check `value` against `hint`; YAML quirks fixed: "3e-4" (a str in YAML 1.1) and 1.0 for an int."""
    allowed = _allowed_types(hint)
    if allowed is None or value is None and type(None) in allowed:
        return value
    if isinstance(value, bool):
        if bool in allowed:
            return value
    elif isinstance(value, int) and (int in allowed or float in allowed):
        return value
    elif isinstance(value, float) and float in allowed:
        return value
    elif isinstance(value, float) and int in allowed and value.is_integer():
        return int(value)
    elif isinstance(value, str):
        if str in allowed:
            return value
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is not None and float in allowed:
            return number
        if number is not None and int in allowed and number.is_integer():
            return int(number)
    elif isinstance(value, tuple(t for t in allowed if t in (list, dict))):
        return value
    names = " or ".join(sorted({_type_name(t) for t in allowed}))
    raise ConfigError(f"{where} must be {names}, got {value!r} ({type(value).__name__})")


def _section_dataclass(where: str, values, cls):
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {names}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in values]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {missing}")
    return cls(**{k: _coerce(f"{where}.{k}", v, hints[k]) for k, v in values.items()})


# Ranges of the numbers in `training:` and `fault_tolerance:` (types are checked by _coerce first): a
# value out of range would run and silently misbehave (a spike factor of -1 flags every step, a window
# of 0 turns divergence detection off, a NaN learning rate trains nothing), so it fails at load.
_AT_LEAST_1 = (lambda v: v >= 1, "an integer >= 1")
_AT_LEAST_0 = (lambda v: v >= 0, "an integer >= 0")
_POSITIVE = (lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
_NON_NEGATIVE = (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
_ABOVE_1 = (lambda v: math.isfinite(v) and v > 1, "a finite number > 1")
TRAINING_RANGES = {
    "learning_rate": _POSITIVE, "per_device_train_batch_size": _AT_LEAST_1,
    "per_device_eval_batch_size": _AT_LEAST_1, "gradient_accumulation_steps": _AT_LEAST_1,
    "max_grad_norm": _NON_NEGATIVE,       # 0 turns clipping off (Trainer's convention)
    "weight_decay": _NON_NEGATIVE, "warmup_steps": _NON_NEGATIVE, "warmup_ratio": _NON_NEGATIVE,
    "num_train_epochs": _POSITIVE, "adam_epsilon": _POSITIVE,
    "save_steps": _POSITIVE, "logging_steps": _POSITIVE, "eval_steps": _POSITIVE,   # < 1: a ratio of the run
}
FAULT_TOLERANCE_RANGES = {
    "max_rollbacks": _AT_LEAST_0, "grad_spike_factor": _ABOVE_1, "grad_spike_window": _AT_LEAST_1,
    "grad_spike_min_history": _AT_LEAST_1, "divergence_factor": _ABOVE_1, "divergence_window": _AT_LEAST_1,
}
DATA_RANGES = {"block_size": (lambda v: v >= 2, "an integer >= 2"), "shuffle_buffer": _AT_LEAST_1,
               "num_proc": _AT_LEAST_1}


def _check_ranges(where: str, values: dict, ranges: dict) -> None:
    for key, (ok, expected) in ranges.items():
        value = values.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not ok(value):
            raise ConfigError(f"{where}.{key} must be {expected}, got {value!r}")


def _model_keys() -> List[str]:
    params = inspect.signature(ResNetBKConfig.__init__).parameters
    return [n for n, p in params.items() if n != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD]


def _training_hints() -> dict:
    from transformers import TrainingArguments
    hints = typing.get_type_hints(TrainingArguments)
    return {f.name: hints.get(f.name) for f in dataclasses.fields(TrainingArguments) if f.init}


def _apply_override(raw: dict, override: str) -> None:
    if "=" not in override or "." not in override.split("=", 1)[0]:
        raise ConfigError(f"override {override!r} must look like section.key=value (e.g. training.max_steps=20)")
    dotted, text = override.split("=", 1)
    section, key = dotted.split(".", 1)
    if section not in SECTIONS:
        raise ConfigError(f"override {override!r}: unknown section {section!r}; sections: {list(SECTIONS)}")
    if not isinstance(raw.get(section) or {}, dict):
        raise ConfigError(f"override {override!r}: section {section!r} is not a mapping")
    raw.setdefault(section, {})
    if raw[section] is None:
        raw[section] = {}
    raw[section][key] = yaml.safe_load(text)


def load_config(path: str | Path, overrides: Optional[List[str]] = None) -> TrainConfig:
    """Read and check a training YAML; `overrides` are "section.key=value" strings (values parsed as YAML)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with sections {list(SECTIONS)}, got {raw!r}")
    for override in overrides or []:
        _apply_override(raw, override)
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; allowed: {list(SECTIONS)}")
    for required in ("data", "training"):
        if not isinstance(raw.get(required), dict):
            raise ConfigError(f"{path}: section '{required}' is missing or not a mapping")

    model = raw.get("model") or {}
    if not isinstance(model, dict):
        raise ConfigError(f"{path}: model must be a mapping of ResNetBKConfig fields, got {model!r}")
    allowed_model = _model_keys() + ["pretrained"]
    unknown = sorted(set(model) - set(allowed_model))
    if unknown:
        raise ConfigError(f"{path}: model: unknown key(s) {unknown}; allowed: {allowed_model}")
    if "pretrained" in model and not Path(str(model["pretrained"])).is_dir():
        raise ConfigError(f"{path}: model.pretrained: no such folder: {model['pretrained']}")

    data_raw = dict(raw["data"])
    for key in ("train", "validation"):
        if isinstance(data_raw.get(key), (str, dict)):
            data_raw[key] = [data_raw[key]]
    data = _section_dataclass(f"{path}: data", data_raw, DataConfig)
    from .data.pipeline import check_source
    for key in ("train", "validation"):
        for i, source in enumerate(getattr(data, key) or []):
            try:
                check_source(source)
            except (FileNotFoundError, ValueError) as e:
                raise ConfigError(f"{path}: data.{key}[{i}]: {e}") from e
    if not data.train:
        raise ConfigError(f"{path}: data.train must list at least one source")
    _check_ranges(f"{path}: data", dataclasses.asdict(data), DATA_RANGES)
    if not data.text_field:
        raise ConfigError(f"{path}: data.text_field must name a field, got {data.text_field!r}")
    if data.txt_sample_by not in ("document", "paragraph", "line"):
        raise ConfigError(f"{path}: data.txt_sample_by must be 'document', 'paragraph' or 'line', "
                          f"got {data.txt_sample_by!r}")
    if data.tokenizer is not None and not Path(data.tokenizer).is_dir():
        raise ConfigError(f"{path}: data.tokenizer: no such folder: {data.tokenizer}")

    hints = _training_hints()
    training_raw = dict(raw["training"])
    unknown = sorted(set(training_raw) - set(hints))
    if unknown:
        raise ConfigError(f"{path}: training: unknown TrainingArguments field(s) {unknown}")
    training = {k: _coerce(f"{path}: training.{k}", v, hints[k]) for k, v in training_raw.items()}
    _check_ranges(f"{path}: training", training, TRAINING_RANGES)
    ds = training.get("deepspeed")
    if isinstance(ds, str) and not Path(ds).is_file():
        raise ConfigError(f"{path}: training.deepspeed: no such file: {ds}")
    if data.streaming and not (isinstance(training.get("max_steps"), int) and training["max_steps"] > 0):
        raise ConfigError(f"{path}: data.streaming needs training.max_steps > 0 (a stream has no length), "
                          f"got {training.get('max_steps')!r}")
    fault = _section_dataclass(f"{path}: fault_tolerance", raw.get("fault_tolerance"), FaultToleranceConfig)
    if not 0 < fault.lr_decay <= 1:
        raise ConfigError(f"{path}: fault_tolerance.lr_decay must be in (0, 1], got {fault.lr_decay}")
    _check_ranges(f"{path}: fault_tolerance", dataclasses.asdict(fault), FAULT_TOLERANCE_RANGES)
    if fault.grad_spike_min_history > fault.grad_spike_window:   # the history never grows past the window
        raise ConfigError(f"{path}: fault_tolerance.grad_spike_min_history ({fault.grad_spike_min_history}) must "
                          f"be <= grad_spike_window ({fault.grad_spike_window}), or spikes are never checked")
    return TrainConfig(path=path, model=model, data=data, training=training, fault_tolerance=fault)


def make_training_args(cfg: TrainConfig, **changes):
    """TrainingArguments from the `training:` section, with this package's defaults where it says nothing."""
    from transformers import TrainingArguments
    kwargs = dict(cfg.training, **changes)
    kwargs.setdefault("output_dir", str(Path("outputs") / cfg.path.stem))
    kwargs.setdefault("report_to", "none")
    kwargs.setdefault("save_total_limit", 3)            # keep the last few: a corrupt newest one has a fallback
    kwargs.setdefault("logging_nan_inf_filter", False)  # show NaN losses in the log rather than hide them
    if cfg.data.validation:
        kwargs.setdefault("eval_strategy", "steps")
    if "bf16" not in kwargs and "fp16" not in kwargs and not kwargs.get("use_cpu"):
        kwargs["bf16"] = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    hints = _training_hints()
    # transformers 5 renamed gradient_checkpointing to activation_checkpointing: accept either name
    if "activation_checkpointing" in hints and "gradient_checkpointing" in kwargs:
        kwargs.setdefault("activation_checkpointing", kwargs.pop("gradient_checkpointing"))
    elif "activation_checkpointing" not in hints and "activation_checkpointing" in kwargs:
        kwargs.setdefault("gradient_checkpointing", kwargs.pop("activation_checkpointing"))
    report_to = kwargs["report_to"]
    if "tensorboard" in ([report_to] if isinstance(report_to, str) else list(report_to or [])):
        try:
            import tensorboard  # noqa: F401
        except ImportError as e:
            raise ConfigError(f"{cfg.path}: training.report_to asks for tensorboard, which is not installed "
                              "(pip install 'resnet_bk_hf[train]' or tensorboard)") from e
    try:
        return TrainingArguments(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{cfg.path}: training: {e}") from e


# ------------------------------------------------------------------------------------------------ building

def load_training_tokenizer(cfg: TrainConfig):
    from .tokenization import load_tokenizer
    if cfg.data.tokenizer is None:
        return load_tokenizer()
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(cfg.data.tokenizer)


def build_model_config(cfg: TrainConfig, tokenizer):
    from transformers import AutoConfig
    kwargs = {k: v for k, v in cfg.model.items() if k != "pretrained"}
    try:
        if "pretrained" in cfg.model:
            return AutoConfig.from_pretrained(cfg.model["pretrained"], **kwargs)
        kwargs.setdefault("vocab_size", len(tokenizer))
        kwargs.setdefault("pad_token_id", tokenizer.pad_token_id)
        kwargs.setdefault("bos_token_id", tokenizer.eos_token_id)
        kwargs.setdefault("eos_token_id", tokenizer.eos_token_id)
        return ResNetBKConfig(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{cfg.path}: model: {e}") from e


def build_model(cfg: TrainConfig, model_config):
    from transformers import AutoModelForCausalLM
    if "pretrained" in cfg.model:
        return AutoModelForCausalLM.from_pretrained(cfg.model["pretrained"], config=model_config)
    # from_config (not the constructor): under DeepSpeed ZeRO-3 it builds the model already partitioned
    return AutoModelForCausalLM.from_config(model_config)


def build_datasets(cfg: TrainConfig, tokenizer, seed: int):
    from accelerate import PartialState

    from .data.pipeline import load_text_corpus, pack_documents
    d = cfg.data

    def packed(sources):
        texts = load_text_corpus(sources, streaming=d.streaming, text_field=d.text_field,
                                 txt_sample_by=d.txt_sample_by)
        return pack_documents(texts, tokenizer, d.block_size, num_proc=d.num_proc)

    with PartialState().main_process_first():   # rank 0 tokenizes, the others read its cache
        train = packed(d.train)
        valid = packed(d.validation) if d.validation else None
    if d.streaming:
        train = train.shuffle(seed=seed, buffer_size=d.shuffle_buffer)
    return train, valid


# ------------------------------------------------------------------------------------------------ the run

def _is_out_of_memory(error: BaseException) -> bool:
    from accelerate.utils.memory import should_reduce_batch_size
    return isinstance(error, torch.cuda.OutOfMemoryError) or should_reduce_batch_size(error)


def smaller_micro_batch(per_device_batch: int, accumulation: int) -> tuple[int, int] | None:
    """(micro-batch, accumulation) to retry with after out of memory, or None at a micro-batch of 1.

    The new micro-batch is the largest divisor of the current one that is at most half of it, and the
    accumulation grows by the same factor, so the samples per optimizer step stay exactly the same (and in
    the same order): 4 x 1 -> 2 x 2, 3 x 1 -> 1 x 3, 6 x 1 -> 3 x 2 -> 1 x 6.
    """
    for smaller in range(per_device_batch // 2, 0, -1):
        if per_device_batch % smaller == 0:
            return smaller, accumulation * (per_device_batch // smaller)
    return None


def _release(*objects) -> None:
    for obj in objects:
        accelerator = getattr(obj, "accelerator", None)
        if accelerator is not None:
            accelerator.free_memory()
    del objects
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def find_resume_checkpoint(output_dir: Path, events: EventLog) -> Optional[Path]:
    """Newest intact checkpoint; rank 0 checks the manifests and moves corrupt ones aside, the rest follow."""
    from accelerate import PartialState
    state = PartialState()
    if state.is_main_process:
        def report(folder, reason):
            events.record("corrupt_checkpoint", f"{folder.name.removeprefix('corrupt-')}: {reason}",
                          moved_to=str(folder))
        found = latest_valid_checkpoint(output_dir, on_corrupt=report)
    state.wait_for_everyone()
    if not state.is_main_process:
        remaining = list_checkpoints(output_dir)
        found = remaining[-1][1] if remaining else None
    return found


def run_training(cfg: TrainConfig, resume: bool | str | None = None, callbacks=()) -> TrainResult:
    """Train as the config says, recovering from the faults listed in the module docstring."""
    from accelerate import PartialState
    from transformers import default_data_collator, set_seed

    tokenizer = load_training_tokenizer(cfg)
    model_config = build_model_config(cfg, tokenizer)
    ft = cfg.fault_tolerance
    per_device_batch = cfg.training.get("per_device_train_batch_size", 8)
    accumulation = cfg.training.get("gradient_accumulation_steps", 1)
    args = make_training_args(cfg, per_device_train_batch_size=per_device_batch,
                              gradient_accumulation_steps=accumulation)
    output_dir = Path(args.output_dir)
    events = EventLog(output_dir, PartialState().is_main_process)

    checkpoint: Optional[Path] = None
    if resume:
        if isinstance(resume, str):
            checkpoint = Path(resume)
            if not (checkpoint / "trainer_state.json").is_file():
                raise ConfigError(f"--resume {resume}: not a Trainer checkpoint (no trainer_state.json)")
            if (checkpoint / MANIFEST_NAME).is_file():
                ok, reason = verify_checkpoint(checkpoint)
                if not ok:
                    raise ConfigError(f"--resume {resume}: the checkpoint does not verify: {reason}")
            else:   # e.g. saved by a plain Trainer run: usable, but nothing to check it against
                events.record("resume", f"{checkpoint} has no {MANIFEST_NAME}: resuming without verifying it")
        else:
            checkpoint = find_resume_checkpoint(output_dir, events)
            if checkpoint is None:
                events.record("resume", "no intact checkpoint in the output folder: starting from step 0",
                              output_dir=str(output_dir))
    elif list_checkpoints(output_dir):
        raise ConfigError(f"{output_dir} already holds checkpoints: pass --resume to continue that run, "
                          "or choose another training.output_dir")

    train_dataset, eval_dataset = build_datasets(cfg, tokenizer, args.seed)
    guard = TrainingGuardCallback(grad_spike_factor=ft.grad_spike_factor, window=ft.grad_spike_window,
                                  min_history=ft.grad_spike_min_history, divergence_factor=ft.divergence_factor,
                                  divergence_window=ft.divergence_window, lr_decay=ft.lr_decay)
    saved_scale = guard.restore(checkpoint)
    guard.plan_lr(saved_scale, saved_scale)
    signals = SignalCheckpointCallback() if ft.handle_signals else None
    timer = StepTimerCallback()
    rollbacks = 0
    while True:
        set_seed(args.seed)
        model = build_model(cfg, model_config)
        trainer = ResilientTrainer(
            model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
            data_collator=default_data_collator, guard=guard,
            callbacks=[ChecksumManifestCallback(), JsonlLogCallback(), timer, *([signals] if signals else []),
                       *callbacks])
        out_of_memory = oom_error = None
        try:
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        except Exception as error:  # noqa: BLE001  (only out-of-memory is handled; the rest re-raised)
            if not (ft.oom_recovery and _is_out_of_memory(error)):
                raise
            oom_error = error
            out_of_memory = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        step = trainer.state.global_step

        if out_of_memory is not None:
            _release(trainer)
            del trainer, model
            _release()
            smaller = smaller_micro_batch(per_device_batch, accumulation)
            if smaller is None:
                raise TrainingFailedError(f"out of memory at step {step} with a per-device batch of 1 "
                                          f"({out_of_memory}); use a smaller model, block_size, ZeRO-3/offload "
                                          "or gradient checkpointing") from oom_error
            per_device_batch, accumulation = smaller
            args = make_training_args(cfg, per_device_train_batch_size=per_device_batch,
                                      gradient_accumulation_steps=accumulation)
            checkpoint = find_resume_checkpoint(output_dir, events)
            lr_scale = guard.lr_scale
            guard.plan_lr(lr_scale, guard.restore(checkpoint))
            events.record("out_of_memory", out_of_memory, step=step, per_device_train_batch_size=per_device_batch,
                          gradient_accumulation_steps=accumulation,
                          resume_from=str(checkpoint) if checkpoint else "initial weights")
            continue

        if guard.anomaly is not None:
            anomaly = guard.anomaly
            if rollbacks >= ft.max_rollbacks:
                events.record("gave_up", anomaly.cause, step=anomaly.step, rollbacks=rollbacks)
                raise TrainingFailedError(f"{anomaly.cause}; {rollbacks} rollbacks already done "
                                          f"(fault_tolerance.max_rollbacks={ft.max_rollbacks}); see "
                                          f"{events.path}")
            rollbacks += 1
            _release(trainer)
            del trainer, model
            _release()
            target = guard.lr_scale * ft.lr_decay
            checkpoint = find_resume_checkpoint(output_dir, events)
            guard.plan_lr(target, guard.restore(checkpoint))
            events.record("rollback", anomaly.cause, kind=anomaly.kind, step=anomaly.step,
                          resume_from=str(checkpoint) if checkpoint else "initial weights",
                          lr_scale=target, rollback=rollbacks)
            continue

        if signals is not None and signals.received is not None:
            name = signal.Signals(signals.received).name
            saved = output_dir / f"checkpoint-{step}"
            events.record("signal", f"{name} received: saved {saved.name} and stopped", step=step,
                          checkpoint=str(saved))
            return TrainResult(128 + signals.received, output_dir, step, events.events, per_device_batch,
                               accumulation)
        break

    metrics = _finish(trainer, tokenizer, cfg, output_dir, events, timer)
    return TrainResult(0, output_dir, trainer.state.global_step, events.events, per_device_batch, accumulation,
                       metrics)


def _finish(trainer, tokenizer, cfg: TrainConfig, output_dir: Path, events: EventLog, timer: StepTimerCallback) -> dict:
    """Save the final model + tokenizer to output_dir and a summary (train_summary.json)."""
    from accelerate.utils import gather_object
    trainer.save_model(str(output_dir))
    trainer.save_state()
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    peaks = gather_object([peak]) if trainer.args.world_size > 1 else [peak]
    train_metrics = [h for h in trainer.state.log_history if "train_runtime" in h]
    last = train_metrics[-1] if train_metrics else {}
    n_params = sum(p.numel() for p in trainer.model.parameters())
    ds_params = sum(getattr(p, "ds_numel", 0) for p in trainer.model.parameters())
    args = trainer.args
    tokens_per_step = args.world_size * args.per_device_train_batch_size * args.gradient_accumulation_steps \
        * cfg.data.block_size
    step_seconds = timer.steady_step_seconds()
    summary = {
        "config": str(cfg.path), "output_dir": str(output_dir), "global_step": trainer.state.global_step,
        "parameters": ds_params or n_params, "world_size": trainer.args.world_size,
        "per_device_train_batch_size": trainer.args.per_device_train_batch_size,
        "gradient_accumulation_steps": trainer.args.gradient_accumulation_steps,
        "block_size": cfg.data.block_size, "tokens_per_step": tokens_per_step, "train_metrics": last,
        "median_step_seconds": step_seconds, "steps_timed": len(timer.step_seconds),
        "tokens_per_second": tokens_per_step / step_seconds if step_seconds else None,
        "peak_memory_bytes_per_device": peaks, "events": len(events.events),
        "final_train_loss": next((h["loss"] for h in reversed(trainer.state.log_history) if "loss" in h), None),
    }
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(output_dir))
        (output_dir / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def per_step_losses(output_dir: str | Path) -> dict:
    """{step: loss} from OUTPUT_DIR/train_log.jsonl; a step logged twice (after a resume) keeps the last value."""
    losses = {}
    path = Path(output_dir) / "train_log.jsonl"
    if path.is_file():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                # a line torn by a kill mid-write (or read while being written): that step has no loss
                logger.warning(f"{path}:{number}: skipped a line that is not JSON: {line[:80]!r}")
                continue
            if not isinstance(entry, dict) or not isinstance(entry.get("step"), int):
                logger.warning(f"{path}:{number}: skipped an entry without a step: {line[:80]!r}")
                continue
            if isinstance(entry.get("loss"), (int, float)) and math.isfinite(entry["loss"]):
                losses[entry["step"]] = entry["loss"]
    return losses


def main_train(config: str, resume=None, overrides=None) -> int:
    start = time.time()
    cfg = load_config(config, overrides)
    result = run_training(cfg, resume=resume)
    if result.exit_code == 0:
        print(f"trained {result.global_step} steps in {time.time() - start:.0f}s; model and tokenizer in "
              f"{result.output_dir}; {len(result.events)} recovery event(s) (events.jsonl)")
    else:
        print(f"stopped by signal at step {result.global_step}: checkpoint saved; continue with "
              f"`resnet-bk train {config} --resume`")
    return result.exit_code
