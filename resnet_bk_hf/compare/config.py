"""The YAML file of `resnet-bk compare`: every field checked through resnet_bk_hf/validation.py, errors name the
field and the value (`ConfigError`).

See examples/compare/*.yaml and docs/results.md for the fields. The per-run recipe (`train:`, `RecipeConfig`)
is the same for every architecture; `run_config` translates it, for one run, into the training schema of
`resnet-bk train` (training/schema.py), from which `training.build_trainer` makes that run's Trainer.
`fault_tolerance:` is that schema's section; compare's defaults (COMPARE_FAULT_TOLERANCE) watch only for
non-finite values and end such a run as "diverged" instead of rolling it back (a rollback lowers the
learning rate, a change of recipe); each result records the setting.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union


from ..training.models import ARCHITECTURES, TRANSFORMER_FAMILIES
from ..training.schema import ConfigError, FaultToleranceConfig, TrainConfig, check_fault_tolerance, read_yaml
from ..training.schema import parse_config as parse_train_config
from ..validation import FieldError, build_dataclass, check_choice, check_float, check_int, need

DEFAULT_WIDTH_MULTIPLE = {"resnet_bk": None, "transformer": None, "mamba": 16, "mamba2": 32}  # None: head_dim
COMPARE_FAULT_TOLERANCE = {"rollback": False, "grad_spike_factor": None, "divergence_factor": None,
                           "oom_recovery": False, "handle_signals": True}


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
class RecipeConfig:
    """The `train:` section: the training recipe every compared run shares."""
    tokens: int                     # token budget per run (steps = tokens // (batch_size * seq_len))
    seq_len: int = 512
    batch_size: int = 32            # sequences per optimizer step
    # per forward, the rest by gradient accumulation: one number for every architecture, or a mapping
    # architecture -> number (memory differs by architecture; the arithmetic of a step does not)
    micro_batch_size: Optional[Union[int, Dict[str, int]]] = None
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

    def steps(self) -> int:
        return self.tokens // (self.batch_size * self.seq_len)

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


def compare_fault_tolerance(values: Optional[Dict] = None, where: str = "compare config") -> FaultToleranceConfig:
    """The `fault_tolerance:` section of a compare config: COMPARE_FAULT_TOLERANCE, updated by `values`."""
    return check_fault_tolerance(where, {**COMPARE_FAULT_TOLERANCE, **(values or {})})


@dataclass
class CompareConfig:
    name: str
    output_dir: str
    sizes: List[SizeConfig]
    train: RecipeConfig
    seeds: List[int]
    architectures: List[str] = field(default_factory=lambda: ["resnet_bk", "mamba", "transformer"])
    transformer_family: str = "llama"
    mamba_use_mambapy: Union[str, bool] = "auto"    # auto: on CUDA when mambapy is installed | true | false
    data_dir: Optional[str] = None
    max_train_docs: Optional[int] = None     # per training file, for tests
    eval: EvalConfig = field(default_factory=EvalConfig)
    param_tolerance: float = 0.05
    save_models: bool = True
    long_context: Optional[LongContextConfig] = None
    run_main: bool = True              # false: only the long-context runs
    device: Optional[str] = None       # cuda | cpu; default: cuda when available
    fault_tolerance: FaultToleranceConfig = field(default_factory=compare_fault_tolerance)


# ------------------------------------------------------------------------------------------------ parsing

def parse_config(data, source: str = "compare config") -> CompareConfig:
    """A checked CompareConfig from the parsed YAML; `source` (the file) starts every message."""
    try:
        return _parse(data, source)
    except ConfigError:
        raise
    except FieldError as e:
        raise ConfigError(str(e)) from None


def _parse(data, source: str) -> CompareConfig:
    need(f"{source}: the top level", isinstance(data, dict), "a mapping of fields (is the file empty?)", data)
    data = dict(data)
    sizes_raw = data.pop("sizes", None)
    need(f"{source}: sizes", isinstance(sizes_raw, dict) and bool(sizes_raw),
         "a non-empty mapping name -> {target_non_embedding_params, layers}", sizes_raw)
    sizes = []
    for name, values in sizes_raw.items():
        need(f"{source}: sizes.{name}", isinstance(values, dict), "a mapping", values)
        sizes.append(build_dataclass(f"{source}: sizes.{name}", {"name": str(name), **values}, SizeConfig))
    train = build_dataclass(f"{source}: train", data.pop("train", None), RecipeConfig)
    ev = build_dataclass(f"{source}: eval", data.pop("eval", None) or {}, EvalConfig)
    lc_raw = data.pop("long_context", None)
    lc = build_dataclass(f"{source}: long_context", lc_raw, LongContextConfig) if lc_raw else None
    fault = compare_fault_tolerance(data.pop("fault_tolerance", None), source)
    cfg = build_dataclass(source, {**data, "sizes": sizes, "train": train, "eval": ev, "long_context": lc,
                                   "fault_tolerance": fault}, CompareConfig)
    validate(cfg, source)
    return cfg


def load_config(path: str | Path, overrides: Optional[Dict] = None) -> CompareConfig:
    path = Path(path)
    data = read_yaml(path)
    if isinstance(data, dict):
        data.update({key: value for key, value in (overrides or {}).items() if value is not None})
    return parse_config(data, str(path))


def validate(cfg: CompareConfig, source: str = "compare config") -> None:
    w = f"{source}: "
    need(w + "architectures", bool(cfg.architectures) and all(a in ARCHITECTURES for a in cfg.architectures),
         f"a non-empty list from {ARCHITECTURES}", cfg.architectures)
    need(w + "architectures", len(set(cfg.architectures)) == len(cfg.architectures), "a list without repeats",
         cfg.architectures)
    check_choice(w + "transformer_family", cfg.transformer_family, TRANSFORMER_FAMILIES)
    check_choice(w + "mamba_use_mambapy", str(cfg.mamba_use_mambapy).lower(), ("auto", "true", "false"))
    need(w + "seeds", bool(cfg.seeds) and len(set(cfg.seeds)) == len(cfg.seeds)
         and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in cfg.seeds),
         "a non-empty list of distinct integers >= 0", cfg.seeds)
    check_choice(w + "device", cfg.device, (None, "cuda", "cpu"))
    check_float(w + "param_tolerance", cfg.param_tolerance, low=0, high=1, high_open=True)
    check_int(w + "max_train_docs", cfg.max_train_docs, low=1, allow_none=True)
    for size in cfg.sizes:
        _validate_size(w + f"sizes.{size.name}.", size, cfg.architectures)
    _validate_recipe(w + "train.", cfg.train)
    check_int(w + "eval.block_size", cfg.eval.block_size, low=1)
    check_int(w + "eval.batch_size", cfg.eval.batch_size, low=1)
    check_int(w + "eval.max_tokens", cfg.eval.max_tokens, low=1, allow_none=True)
    if cfg.long_context is not None:
        _validate_long_context(w + "long_context.", cfg.long_context, [s.name for s in cfg.sizes], cfg.seeds)


def _validate_size(w: str, s: SizeConfig, architectures) -> None:
    for key in ("target_non_embedding_params", "head_dim", "num_shifts", "mamba_state_size"):
        check_int(w + key, getattr(s, key), low=1)
    for arch in architectures:
        check_int(w + f"layers.{arch}", (s.layers or {}).get(arch), low=1)
    for arch, fields_ in s.model_overrides.items():
        need(w + "model_overrides", arch in ARCHITECTURES, f"keyed by architectures from {ARCHITECTURES}", arch)
        need(w + f"model_overrides.{arch}", isinstance(fields_, dict) and all(isinstance(k, str) for k in fields_),
             "a mapping of config field names to values", fields_)
    for arch, multiple in (s.width_multiple or {}).items():
        need(w + "width_multiple", arch in ARCHITECTURES, f"keyed by architectures from {ARCHITECTURES}", arch)
        check_int(w + f"width_multiple.{arch}", multiple, low=1)


def _validate_recipe(w: str, t: RecipeConfig) -> None:
    check_int(w + "seq_len", t.seq_len, low=2)
    for key in ("tokens", "batch_size", "logging_steps"):
        check_int(w + key, getattr(t, key), low=1)
    check_int(w + "save_steps", t.save_steps, low=1, allow_none=True)
    micro = t.micro_batch_size
    for arch, m in (micro if isinstance(micro, dict) else {"": micro}).items():
        name = w + (f"micro_batch_size.{arch}" if arch else "micro_batch_size")
        need(w + "micro_batch_size", not arch or arch in ARCHITECTURES,
             f"a number or a mapping with keys from {ARCHITECTURES}", arch)
        check_int(name, m, low=1, allow_none=True)
        need(name, not m or t.batch_size % m == 0, f"a divisor of train.batch_size={t.batch_size}", m)
    need(w + "tokens", t.tokens >= t.batch_size * t.seq_len,
         f">= one step of batch_size * seq_len = {t.batch_size * t.seq_len} tokens", t.tokens)
    for key in ("learning_rate", "max_grad_norm"):
        check_float(w + key, getattr(t, key), low=0, low_open=True)
    check_float(w + "weight_decay", t.weight_decay, low=0)
    for key in ("adam_beta1", "adam_beta2"):
        check_float(w + key, getattr(t, key), low=0, high=1, high_open=True)
    check_int(w + "dataloader_workers", t.dataloader_workers, low=0)
    check_choice(w + "precision", t.precision, ("auto", "bf16", "fp32"))
    check_choice(w + "lr_scheduler", t.lr_scheduler, ("cosine", "linear", "constant_with_warmup"))
    check_float(w + "warmup_ratio", t.warmup_ratio, low=0, high=1, high_open=True)


def _validate_long_context(w: str, lc: LongContextConfig, sizes: List[str], seeds: List[int]) -> None:
    need(w + "seq_lens", bool(lc.seq_lens) and all(isinstance(n, int) and n >= 2 for n in lc.seq_lens),
         "a non-empty list of integers >= 2", lc.seq_lens)
    for key in ("tokens_per_step", "tokens", "position_bins"):
        check_int(w + key, getattr(lc, key), low=1)
    for n in lc.seq_lens:
        need(w + "tokens_per_step", lc.tokens_per_step % n == 0, f"a multiple of every seq_len (not of {n})",
             lc.tokens_per_step)
    need(w + "tokens", lc.tokens >= lc.tokens_per_step, f">= tokens_per_step={lc.tokens_per_step}", lc.tokens)
    need(w + "size", lc.size is None or lc.size in sizes, f"one of {sizes}", lc.size)
    need(w + "seed", lc.seed is None or lc.seed in seeds, f"one of the seeds {seeds}", lc.seed)
    for key in ("stream_max_tokens", "stream_chunk", "max_micro_batch_tokens"):
        check_int(w + key, getattr(lc, key), low=1, allow_none=True)


# ------------------------------------------------------------------------------------------------ one run

def use_bf16(cfg: CompareConfig, device: str) -> bool:
    return cfg.train.precision == "bf16" or (cfg.train.precision == "auto" and device == "cuda")


def run_config(recipe: RecipeConfig, fault_tolerance: FaultToleranceConfig, *, arch: str, run_dir: Path,
               device: str, bf16: bool, seed: int, gradient_checkpointing: bool = False) -> TrainConfig:
    """One compared run in the schema of `resnet-bk train`: the recipe as TrainingArguments fields (the one
    translation of `train:`), checkpoints in RUN_DIR/checkpoints. The datasets come from the caller."""
    steps = recipe.steps()
    micro = recipe.micro_batch_for(arch)
    training = {
        "output_dir": str(Path(run_dir) / "checkpoints"), "max_steps": steps, "per_device_train_batch_size": micro,
        "gradient_accumulation_steps": recipe.batch_size // micro, "learning_rate": recipe.learning_rate,
        "lr_scheduler_type": recipe.lr_scheduler, "warmup_steps": int(recipe.warmup_ratio * steps),
        "weight_decay": recipe.weight_decay, "adam_beta1": recipe.adam_beta1, "adam_beta2": recipe.adam_beta2,
        "max_grad_norm": recipe.max_grad_norm, "logging_steps": recipe.logging_steps, "save_strategy": "steps",
        "save_steps": recipe.save_steps or max(1, steps // 4), "save_total_limit": 1, "eval_strategy": "no",
        "report_to": "none", "use_cpu": device == "cpu", "bf16": bf16, "seed": seed, "data_seed": seed,
        "logging_nan_inf_filter": False, "dataloader_num_workers": recipe.dataloader_workers, "optim": "adamw_torch",
        "torch_compile": recipe.torch_compile, "save_only_model": False,
        "gradient_checkpointing": gradient_checkpointing,
    }
    raw = {"data": {"block_size": recipe.seq_len}, "training": training,
           "fault_tolerance": dataclasses.asdict(fault_tolerance)}
    return parse_train_config(raw, f"compare run {Path(run_dir)}", require_data=False)


@dataclasses.dataclass
class RunSelection:
    """Which pending runs this process trains, so that several processes can share one GPU.

    seed: only that seed's runs (None: all). shard (i, n): every n-th run (of those of `seed`), from the i-th on.
    gpu_shared_by: how many training processes share the GPU meanwhile (recorded in each result; the
    aggregation takes throughput only from runs that had the GPU alone). aggregate: write summary.json.
    """
    seed: Optional[int] = None
    shard: tuple = (0, 1)
    gpu_shared_by: int = 1
    aggregate: bool = True

    def __post_init__(self):
        i, n = self.shard
        check_int("shard N", n, low=1)
        check_int("shard I", i, low=0, high=n - 1)
        check_int("gpu_shared_by", self.gpu_shared_by, low=1)

    def pick(self, pending: List, seed_of=lambda run: None) -> List:
        if self.seed is not None:
            pending = [run for run in pending if seed_of(run) in (None, self.seed)]
        i, n = self.shard
        return pending[i::n]
