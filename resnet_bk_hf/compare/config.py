"""The YAML file of `resnet-bk compare`: every field validated, errors name the field and the value.

See examples/compare/*.yaml and docs/results.md for the fields.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from .architectures import ARCHITECTURES, TRANSFORMER_FAMILIES

DEFAULT_WIDTH_MULTIPLE = {"resnet_bk": None, "transformer": None, "mamba": 16, "mamba2": 32}  # None: head_dim


@dataclass
class SizeConfig:
    name: str
    target_non_embedding_params: int
    layers: Dict[str, int]
    head_dim: int = 64
    width_multiple: Dict[str, int] = field(default_factory=dict)
    num_shifts: int = 8
    mamba_state_size: int = 16
    # architecture -> extra fields of its transformers config, e.g. {mamba: {initializer_range: 0.02,
    # rescale_prenorm_residual: true}} (mamba_ssm's language-model init instead of MambaConfig's defaults)
    model_overrides: Dict[str, Dict] = field(default_factory=dict)


@dataclass
class TrainConfig:
    tokens: int                     # token budget per run (steps = tokens // (batch_size * seq_len))
    seq_len: int = 512
    batch_size: int = 32            # sequences per optimizer step
    # per forward, the rest by gradient accumulation: one number for every architecture, or a mapping
    # architecture -> number (memory differs by architecture; the arithmetic of a step does not)
    micro_batch_size: Optional[int | Dict[str, int]] = None
    learning_rate: float = 1.5e-3
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.05
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    max_grad_norm: float = 1.0
    precision: str = "auto"         # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32
    logging_steps: int = 10
    save_steps: Optional[int] = None  # checkpoint interval for resuming (default: a quarter of the run)
    dataloader_workers: int = 0
    torch_compile: bool = False

    def micro_batch_for(self, arch: str) -> int:
        micro = self.micro_batch_size
        if isinstance(micro, dict):
            micro = micro.get(arch)
        return micro or self.batch_size

    def recipe(self) -> Dict:
        """The fields every compared run must share (fairness check)."""
        return {k: getattr(self, k) for k in ("tokens", "seq_len", "batch_size", "learning_rate", "lr_scheduler",
                                              "warmup_ratio", "weight_decay", "adam_beta1", "adam_beta2",
                                              "max_grad_norm", "precision")} | {"optimizer": "adamw_torch"}


@dataclass
class EvalConfig:
    block_size: int = 512
    batch_size: int = 16
    max_tokens: Optional[int] = None   # per validation set; None = all of it


@dataclass
class LongContextConfig:
    seq_lens: List[int] = field(default_factory=lambda: [512, 2048, 8192, 32768, 131072])
    tokens_per_step: int = 131072
    tokens: int = 13_107_200
    max_micro_batch_tokens: Optional[int] = None
    size: Optional[str] = None         # a name from `sizes`; default: the first
    seed: Optional[int] = None         # default: the first seed
    stream_max_tokens: Optional[int] = None   # tokens of moby-dick.txt to stream; None = the whole novel
    stream_chunk: Optional[int] = None        # default: the run's seq_len
    position_bins: int = 24
    gradient_checkpointing: bool = False      # every architecture alike: memory, not arithmetic


@dataclass
class CompareConfig:
    name: str
    output_dir: str
    sizes: List[SizeConfig]
    train: TrainConfig
    seeds: List[int]
    architectures: List[str] = field(default_factory=lambda: ["resnet_bk", "mamba", "transformer"])
    transformer_family: str = "llama"
    mamba_use_mambapy: str = "auto"    # auto: on CUDA when mambapy is installed | true | false
    data_dir: Optional[str] = None
    max_train_docs: Optional[int] = None     # per training file, for tests
    eval: EvalConfig = field(default_factory=EvalConfig)
    param_tolerance: float = 0.05
    save_models: bool = True
    long_context: Optional[LongContextConfig] = None
    run_main: bool = True              # false: only the long-context runs
    device: Optional[str] = None       # cuda | cpu; default: cuda when available


def _bad(field_name, allowed, value):
    raise ValueError(f"compare config: {field_name} must be {allowed}, got {value!r}")


def _build(cls, data, where):
    if not isinstance(data, dict):
        _bad(where, "a mapping", data)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        _bad(f"{where}.{unknown[0]}", f"one of the known fields {sorted(known)}", unknown[0])
    try:
        return cls(**data)
    except TypeError as e:
        raise ValueError(f"compare config: {where}: {e}") from e


def _pos_int(name, value, allow_none=False):
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        _bad(name, "a positive integer", value)


def _number(name, value, low=None, high=None, low_open=False, high_open=False):
    """A finite real number (not a bool) in the given range; the bounds say which ends are open."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        _bad(name, f"a finite number in {'(' if low_open or low is None else '['}{lo}, {hi}"
             f"{')' if high_open or high is None else ']'}", value)


def parse_config(data: Dict) -> CompareConfig:
    if not isinstance(data, dict):
        _bad("the top level", "a mapping of fields (is the file empty?)", data)
    data = dict(data)
    sizes_raw = data.pop("sizes", None)
    if not isinstance(sizes_raw, dict) or not sizes_raw:
        _bad("sizes", "a non-empty mapping name -> {target_non_embedding_params, layers}", sizes_raw)
    sizes = [_build(SizeConfig, {"name": str(k), **v}, f"sizes.{k}") for k, v in sizes_raw.items()]
    train = _build(TrainConfig, data.pop("train", None), "train")
    ev = _build(EvalConfig, data.pop("eval", {}) or {}, "eval")
    lc_raw = data.pop("long_context", None)
    lc = _build(LongContextConfig, lc_raw, "long_context") if lc_raw else None
    cfg = _build(CompareConfig, {**data, "sizes": sizes, "train": train, "eval": ev, "long_context": lc}, "config")
    validate(cfg)
    return cfg


def validate(cfg: CompareConfig) -> None:
    if not cfg.architectures or any(a not in ARCHITECTURES for a in cfg.architectures):
        _bad("architectures", f"a non-empty list from {ARCHITECTURES}", cfg.architectures)
    if len(set(cfg.architectures)) != len(cfg.architectures):
        _bad("architectures", "a list without repeats", cfg.architectures)
    if cfg.transformer_family not in TRANSFORMER_FAMILIES:
        _bad("transformer_family", f"one of {TRANSFORMER_FAMILIES}", cfg.transformer_family)
    if str(cfg.mamba_use_mambapy).lower() not in ("auto", "true", "false"):
        _bad("mamba_use_mambapy", "auto, true or false", cfg.mamba_use_mambapy)
    if not isinstance(cfg.seeds, list) or not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds) \
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in cfg.seeds):
        _bad("seeds", "a non-empty list of distinct integers >= 0", cfg.seeds)
    if cfg.device not in (None, "cuda", "cpu"):
        _bad("device", "cuda, cpu or null", cfg.device)
    if not (isinstance(cfg.param_tolerance, (int, float)) and 0 <= cfg.param_tolerance < 1):
        _bad("param_tolerance", "a number in [0, 1)", cfg.param_tolerance)
    _pos_int("max_train_docs", cfg.max_train_docs, allow_none=True)
    names = [s.name for s in cfg.sizes]
    for s in cfg.sizes:
        _pos_int(f"sizes.{s.name}.target_non_embedding_params", s.target_non_embedding_params)
        _pos_int(f"sizes.{s.name}.head_dim", s.head_dim)
        _pos_int(f"sizes.{s.name}.num_shifts", s.num_shifts)
        _pos_int(f"sizes.{s.name}.mamba_state_size", s.mamba_state_size)
        for arch in cfg.architectures:
            _pos_int(f"sizes.{s.name}.layers.{arch}", (s.layers or {}).get(arch))
        if not isinstance(s.model_overrides, dict):
            _bad(f"sizes.{s.name}.model_overrides", "a mapping architecture -> {config field: value}", s.model_overrides)
        for arch, fields_ in s.model_overrides.items():
            if arch not in ARCHITECTURES:
                _bad(f"sizes.{s.name}.model_overrides", f"keys from {ARCHITECTURES}", arch)
            if not isinstance(fields_, dict) or not all(isinstance(k, str) for k in fields_):
                _bad(f"sizes.{s.name}.model_overrides.{arch}", "a mapping of config field names to values", fields_)
        for arch, m in (s.width_multiple or {}).items():
            if arch not in ARCHITECTURES:
                _bad(f"sizes.{s.name}.width_multiple", f"keys from {ARCHITECTURES}", arch)
            _pos_int(f"sizes.{s.name}.width_multiple.{arch}", m)
    t = cfg.train
    for name in ("tokens", "seq_len", "batch_size", "logging_steps"):
        _pos_int(f"train.{name}", getattr(t, name))
    _pos_int("train.save_steps", t.save_steps, allow_none=True)
    micro = t.micro_batch_size
    per_arch = micro if isinstance(micro, dict) else {"": micro}
    for arch, m in per_arch.items():
        name = f"train.micro_batch_size.{arch}" if arch else "train.micro_batch_size"
        if arch and arch not in ARCHITECTURES:
            _bad("train.micro_batch_size", f"a number or a mapping with keys from {ARCHITECTURES}", arch)
        _pos_int(name, m, allow_none=True)
        if m and t.batch_size % m:
            _bad(name, f"a divisor of train.batch_size={t.batch_size}", m)
    if t.tokens < t.batch_size * t.seq_len:
        _bad("train.tokens", f">= one step of batch_size * seq_len = {t.batch_size * t.seq_len} tokens", t.tokens)
    for name in ("learning_rate", "max_grad_norm"):
        _number(f"train.{name}", getattr(t, name), low=0, low_open=True)
    _number("train.weight_decay", t.weight_decay, low=0)
    for name in ("adam_beta1", "adam_beta2"):
        _number(f"train.{name}", getattr(t, name), low=0, high=1, high_open=True)
    if not isinstance(t.dataloader_workers, int) or isinstance(t.dataloader_workers, bool) \
            or t.dataloader_workers < 0:
        _bad("train.dataloader_workers", "an integer >= 0", t.dataloader_workers)
    if not isinstance(t.torch_compile, bool):
        _bad("train.torch_compile", "true or false", t.torch_compile)
    if t.precision not in ("auto", "bf16", "fp32"):
        _bad("train.precision", "auto, bf16 or fp32", t.precision)
    if t.lr_scheduler not in ("cosine", "linear", "constant_with_warmup"):
        _bad("train.lr_scheduler", "cosine, linear or constant_with_warmup", t.lr_scheduler)
    _number("train.warmup_ratio", t.warmup_ratio, low=0, high=1, high_open=True)
    _pos_int("eval.block_size", cfg.eval.block_size)
    _pos_int("eval.batch_size", cfg.eval.batch_size)
    _pos_int("eval.max_tokens", cfg.eval.max_tokens, allow_none=True)
    lc = cfg.long_context
    if lc is not None:
        if not lc.seq_lens or any(not isinstance(n, int) or n < 2 for n in lc.seq_lens):
            _bad("long_context.seq_lens", "a non-empty list of integers >= 2", lc.seq_lens)
        _pos_int("long_context.tokens_per_step", lc.tokens_per_step)
        _pos_int("long_context.tokens", lc.tokens)
        for n in lc.seq_lens:
            if lc.tokens_per_step % n:
                _bad("long_context.tokens_per_step", f"a multiple of every seq_len (not of {n})", lc.tokens_per_step)
        if lc.tokens < lc.tokens_per_step:
            _bad("long_context.tokens", f">= tokens_per_step={lc.tokens_per_step}", lc.tokens)
        if lc.size is not None and lc.size not in names:
            _bad("long_context.size", f"one of {names}", lc.size)
        if lc.seed is not None and lc.seed not in cfg.seeds:
            _bad("long_context.seed", f"one of the seeds {cfg.seeds}", lc.seed)
        _pos_int("long_context.stream_max_tokens", lc.stream_max_tokens, allow_none=True)
        _pos_int("long_context.stream_chunk", lc.stream_chunk, allow_none=True)
        _pos_int("long_context.max_micro_batch_tokens", lc.max_micro_batch_tokens, allow_none=True)
        _pos_int("long_context.position_bins", lc.position_bins)
        if not isinstance(lc.gradient_checkpointing, bool):
            _bad("long_context.gradient_checkpointing", "true or false", lc.gradient_checkpointing)


def load_config(path: str | Path, overrides: Optional[Dict] = None) -> CompareConfig:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"compare config not found: {path}")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        _bad(f"the top level of {path}", "a mapping of fields (is the file empty?)", data)
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    return parse_config(data)
