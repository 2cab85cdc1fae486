"""`resnet-bk compare CONFIG.yaml`: train every (size, seed, architecture) run, evaluate, aggregate.

Each run lives in OUTPUT_DIR/runs/SIZE/ARCH/seedS/: Trainer checkpoints while it trains (a killed
run resumes from the newest), then result.json (the run is finished: later invocations skip it)
and, with save_models, the final model in model/ (safetensors + tokenizer, for lm-eval).
OUTPUT_DIR/summary.json and the figures are rebuilt from every result.json at the end.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import resource
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, default_data_collator, set_seed

from .. import __version__
from ..data import tokenize_and_chunk
from ..tokenization import load_tokenizer
from ..training import NonFiniteLossCallback, NonFiniteLossError
from .architectures import (ArchSpec, build_model, count_parameters, forward_flops_per_token, mambapy_available,
                            probe_mamba_scan_path, save_trained_model, size_model)
from .config import DEFAULT_WIDTH_MULTIPLE, CompareConfig, TrainConfig
from .data import (VALID_FILES, data_fingerprint, eval_token_stream, load_bench_train, load_valid_texts,
                   resolve_data_dir, token_byte_lengths, tokenizer_fingerprint)
from .evaluation import evaluate_blocks
from .stats import count_spikes

# transformers 5.24 renamed TrainingArguments' gradient_checkpointing to activation_checkpointing (the old name
# warns and goes in v6); resnet-bk train maps a user's config either way (train.make_training_args).
_CHECKPOINTING_ARGUMENT = ("activation_checkpointing" if any(f.name == "activation_checkpointing"
                                                              for f in dataclasses.fields(TrainingArguments))
                           else "gradient_checkpointing")


def pick_device(cfg: CompareConfig) -> str:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("compare config: device is 'cuda' but torch sees no CUDA device")
    return cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")


def use_bf16(cfg: CompareConfig, device: str) -> bool:
    return cfg.train.precision == "bf16" or (cfg.train.precision == "auto" and device == "cuda")


def use_mambapy(cfg: CompareConfig, device: str) -> bool:
    choice = str(cfg.mamba_use_mambapy).lower()
    if choice == "true":
        if not mambapy_available():
            raise ValueError("compare config: mamba_use_mambapy is true but the mambapy package is not installed")
        return True
    return choice == "auto" and device == "cuda" and mambapy_available()


def size_specs(cfg: CompareConfig, vocab_size: int, device: str, max_positions: int) -> Dict[str, Dict[str, ArchSpec]]:
    specs = {}
    for size in cfg.sizes:
        specs[size.name] = {}
        for arch in cfg.architectures:
            multiple = (size.width_multiple or {}).get(arch) or DEFAULT_WIDTH_MULTIPLE[arch] or size.head_dim
            try:
                specs[size.name][arch] = size_model(
                    arch, size.target_non_embedding_params, size.layers[arch], vocab_size, width_multiple=multiple,
                    head_dim=size.head_dim, num_shifts=size.num_shifts, state_size=size.mamba_state_size,
                    transformer_family=cfg.transformer_family, max_position_embeddings=max_positions,
                    use_mambapy=use_mambapy(cfg, device), extra=dict(size.model_overrides.get(arch, {})))
            except TypeError as e:   # an override naming a field the sizing sets itself
                raise ValueError(f"compare config: sizes.{size.name}.model_overrides.{arch}: {e}") from e
    return specs


class RunMonitor(TrainerCallback):
    """Wall time, throughput and peak memory of one run's training in this process (the curves come from
    Trainer's log history, which also holds the steps of earlier sessions of a resumed run)."""

    def __init__(self, tokens_per_step: int, device: str):
        self.tokens_per_step = tokens_per_step
        self.device = device
        self.step_times: List[tuple] = []
        self.t0 = None

    def on_train_begin(self, args, state, control, **kwargs):
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.start_step = state.global_step
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.step_times.append((state.global_step, time.perf_counter()))

    def on_train_end(self, args, state, control, **kwargs):
        if self.device == "cuda":
            torch.cuda.synchronize()
        self.t1 = time.perf_counter()

    def summary(self) -> Dict:
        if self.t0 is None:   # nothing trained in this session (the run had finished before)
            return {"train_seconds": 0.0, "steps_this_session": 0, "tokens_per_second": None,
                    "tokens_per_second_steady": None, "peak_memory_bytes": None}
        steps = (self.step_times[-1][0] - self.start_step) if self.step_times else 0
        seconds = self.t1 - self.t0
        out = {"train_seconds": seconds, "steps_this_session": steps,
               "tokens_per_second": steps * self.tokens_per_step / seconds if seconds > 0 and steps else None}
        # steady state: from the step at 10% of the session on (leaves out compilation / autotuning)
        if len(self.step_times) >= 10:
            k = len(self.step_times) // 10
            (s0, t0), (s1, t1) = self.step_times[k], self.step_times[-1]
            out["tokens_per_second_steady"] = (s1 - s0) * self.tokens_per_step / (t1 - t0) if t1 > t0 else None
        else:
            out["tokens_per_second_steady"] = out["tokens_per_second"]
        if self.device == "cuda":
            out["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated())
            out["peak_memory_kind"] = "torch.cuda.max_memory_allocated during training"
        else:
            out["peak_memory_bytes"] = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
            out["peak_memory_kind"] = "process max RSS so far (CPU; includes earlier runs of this process)"
        return out


def curve_from_log_history(log_history: List[Dict], tokens_per_step: int) -> List[Dict]:
    return [{"step": e["step"], "tokens": e["step"] * tokens_per_step, "loss": float(e["loss"]),
             "grad_norm": float(e.get("grad_norm", math.nan)), "learning_rate": float(e.get("learning_rate", math.nan))}
            for e in log_history if "loss" in e and "step" in e]


def _checkpoint_step(checkpoint) -> int:
    return int(Path(checkpoint).name.split("-")[-1])


def _load_finished_checkpoint(trainer, model, checkpoint: str) -> None:
    from safetensors.torch import load_file
    from transformers import TrainerState
    missing, unexpected = model.load_state_dict(load_file(str(Path(checkpoint) / "model.safetensors")), strict=False)
    tied = {name for name, p in model.named_parameters(remove_duplicate=False)} - \
        {name for name, p in model.named_parameters()}
    if unexpected or set(missing) - tied:
        raise RuntimeError(f"checkpoint {checkpoint} does not fit the model: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))


def _latest_checkpoint(directory: Path) -> Optional[str]:
    checkpoints = sorted(directory.glob("checkpoint-*"), key=_checkpoint_step)
    return str(checkpoints[-1]) if checkpoints else None


def _write_json(path: Path, data) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str, allow_nan=True))
    os.replace(tmp, path)  # a result file is either complete or absent


def environment(device: str) -> Dict:
    import transformers
    env = {"resnet_bk_hf": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
           "python": platform.python_version(), "device": device,
           "host_cpu": platform.processor() or platform.machine()}
    if device == "cuda":
        env["device_name"] = torch.cuda.get_device_name()
    return env


def train_and_evaluate(*, run_dir: Path, arch: str, spec: ArchSpec, seed: int, train_blocks, valid_streams: Dict,
                       byte_lengths, tokenizer, train: TrainConfig, eval_cfg, device: str, bf16: bool,
                       fairness: Dict, extra: Optional[Dict] = None, save_model: bool = True,
                       target_params: Optional[int] = None, after_training=None, gradient_checkpointing: bool = False,
                       gpu_shared_by: int = 1) -> Dict:
    """One training run through transformers.Trainer, then evaluation; writes run_dir/result.json.

    `after_training(model, result)`, if given, runs on a finished run before the result is written
    (the long-context runs add their streaming evaluation there). `gpu_shared_by` > 1 records that other
    processes trained on the same GPU meanwhile: the run's losses are unaffected, its tokens/s is not its own.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    result_path = run_dir / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    set_seed(seed)
    model = build_model(spec, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    counts = count_parameters(model)
    tokens_per_step = train.batch_size * train.seq_len
    steps = train.tokens // tokens_per_step
    micro = train.micro_batch_for(arch)
    ckpt_dir = run_dir / "checkpoints"
    save_steps = train.save_steps or max(1, steps // 4)
    args = TrainingArguments(
        output_dir=str(ckpt_dir), max_steps=steps, per_device_train_batch_size=micro,
        gradient_accumulation_steps=train.batch_size // micro, learning_rate=train.learning_rate,
        lr_scheduler_type=train.lr_scheduler, warmup_steps=int(train.warmup_ratio * steps),
        weight_decay=train.weight_decay, adam_beta1=train.adam_beta1, adam_beta2=train.adam_beta2,
        max_grad_norm=train.max_grad_norm, logging_steps=train.logging_steps, save_strategy="steps",
        save_steps=save_steps, save_total_limit=1, eval_strategy="no", report_to="none", use_cpu=device == "cpu",
        bf16=bf16, seed=seed, data_seed=seed, logging_nan_inf_filter=False, disable_tqdm=False,
        dataloader_num_workers=train.dataloader_workers, optim="adamw_torch", torch_compile=train.torch_compile,
        save_only_model=False, **{_CHECKPOINTING_ARGUMENT: gradient_checkpointing})
    monitor = RunMonitor(tokens_per_step, device)
    trainer = Trainer(model=model, args=args, train_dataset=train_blocks, data_collator=default_data_collator,
                      callbacks=[NonFiniteLossCallback(), monitor])
    scan_path = probe_mamba_scan_path(model, device if device == "cuda" else "cpu") if arch == "mamba" else None
    resume = _latest_checkpoint(ckpt_dir)
    status, error = "ok", None
    if resume is not None and _checkpoint_step(resume) >= steps:
        # training had finished when the last process stopped (during evaluation, say): Trainer would take
        # one more step from this checkpoint; load it instead
        _load_finished_checkpoint(trainer, model, resume)   # the monitor then reports no training time
    else:
        try:
            trainer.train(resume_from_checkpoint=resume)
        except NonFiniteLossError as e:
            status, error = "diverged", str(e)
        except torch.cuda.OutOfMemoryError as e:
            status, error = "oom", str(e).splitlines()[0]
    if not hasattr(monitor, "t1"):
        monitor.t1 = time.perf_counter()
    curve = curve_from_log_history(trainer.state.log_history, tokens_per_step)   # earlier sessions included
    losses = [c["loss"] for c in curve]
    result = {
        "arch": arch, "seed": seed, "status": status, "error": error, "resumed_from": resume,
        "spec": dataclasses.asdict(spec), "model_config": model.config.to_diff_dict(),
        "model_class": type(model).__name__, "parameters": counts,
        "target_non_embedding_params": target_params,
        "param_deviation": (counts["non_embedding"] - target_params) / target_params if target_params else None,
        "flops_per_token": forward_flops_per_token(model.config, arch, train.seq_len),
        "mamba_scan_path": scan_path,
        "attn_implementation": getattr(model.config, "_attn_implementation", None) if arch == "transformer" else None,
        "scan_backend": _resnet_bk_backend(model, device) if arch == "resnet_bk" else None,
        "fairness": fairness | {"seed": seed},
        "train": {"steps": steps, "tokens_per_step": tokens_per_step, "tokens_seen": trainer.state.global_step *
                  tokens_per_step, "precision": "bf16" if bf16 else "fp32", "micro_batch_size": micro,
                  "gradient_checkpointing": gradient_checkpointing, "gpu_shared_by_processes": gpu_shared_by,
                  **monitor.summary()},
        "loss_curve": curve, "loss_spikes": count_spikes(losses),
        "nonfinite_loss": any(not math.isfinite(v) for v in losses),
        "max_grad_norm": max((c["grad_norm"] for c in curve if math.isfinite(c["grad_norm"])), default=None),
        "final_train_loss": _tail_mean(losses), "environment": environment(device), **(extra or {}),
    }
    if status == "ok":
        dtype = torch.bfloat16 if bf16 else None
        result["validation"] = {
            name: evaluate_blocks(model, stream, byte_lengths, eval_cfg.block_size, eval_cfg.batch_size, device,
                                  max_tokens=eval_cfg.max_tokens, autocast_dtype=dtype, desc=f"eval {name}")
            for name, stream in valid_streams.items()}
        if after_training is not None:
            after_training(model, result)
        if save_model:
            save_trained_model(model, run_dir / "model")
            tokenizer.save_pretrained(run_dir / "model")
    _write_json(result_path, result)
    shutil.rmtree(ckpt_dir, ignore_errors=True)  # finished: the checkpoints were only for resuming
    del trainer, model
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


def _tail_mean(losses: List[float], frac: float = 0.05) -> Optional[float]:
    if not losses:
        return None
    k = max(1, int(len(losses) * frac))
    return float(sum(losses[-k:]) / k)


def _resnet_bk_backend(model, device: str) -> str:
    from ..ops.bk import resolve_backend
    cfg_backend = model.config.scan_backend
    return resolve_backend(None if cfg_backend == "auto" else cfg_backend, device)


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
        if not (isinstance(n, int) and isinstance(i, int) and n >= 1 and 0 <= i < n):
            raise ValueError(f"shard must be I/N with 0 <= I < N, got {i}/{n}")
        if not (isinstance(self.gpu_shared_by, int) and self.gpu_shared_by >= 1):
            raise ValueError(f"gpu_shared_by must be an integer >= 1, got {self.gpu_shared_by!r}")

    def pick(self, pending: List, seed_of=lambda run: None) -> List:
        if self.seed is not None:
            pending = [run for run in pending if seed_of(run) in (None, self.seed)]
        i, n = self.shard
        return pending[i::n]


def run_compare(cfg: CompareConfig, aggregate_only: bool = False, extra_run_dirs: Optional[List[str]] = None,
                selection: Optional[RunSelection] = None) -> Dict:
    from .report import aggregate
    selection = selection or RunSelection()
    if selection.seed is not None and selection.seed not in cfg.seeds:
        raise ValueError(f"seed {selection.seed} is not one of the config's seeds {cfg.seeds}")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not aggregate_only:
        device = pick_device(cfg)
        tokenizer = load_tokenizer()
        data_dir = resolve_data_dir(cfg.data_dir)
        byte_lengths = token_byte_lengths(tokenizer)
        fairness = {"tokenizer_sha256": tokenizer_fingerprint(tokenizer),
                    "data_sha256": data_fingerprint(data_dir, cfg.max_train_docs)["sha256"],
                    "train_tokens_budget": cfg.train.tokens, "seeds": sorted(cfg.seeds),
                    "recipe": cfg.train.recipe()}
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
        specs = size_specs(cfg, len(tokenizer), device, max(cfg.train.seq_len, cfg.eval.block_size))
        # shards split the whole list, finished runs included, so the split does not depend on when each starts
        runs = [(s, seed, a) for s in cfg.sizes for seed in cfg.seeds for a in cfg.architectures if cfg.run_main]
        pending = [(s, seed, a) for s, seed, a in selection.pick(runs, seed_of=lambda run: run[1])
                   if not (out / "runs" / s.name / a / f"seed{seed}" / "result.json").is_file()]
        if pending:
            workers = max(1, min(8, (os.cpu_count() or 1) // 2)) if device == "cuda" else None
            train_blocks = tokenize_and_chunk(load_bench_train(data_dir, cfg.max_train_docs), tokenizer,
                                              cfg.train.seq_len, num_proc=workers)
            valid_streams = {name: eval_token_stream(tokenizer, load_valid_texts(data_dir, name), cfg.eval.max_tokens)
                             for name in VALID_FILES}
        # seeds outermost: a run cut short by a time limit still has every architecture of the first seeds
        for size, seed, arch in pending:
            print(f"[compare] size={size.name} arch={arch} seed={seed} spec={specs[size.name][arch]}")
            train_and_evaluate(
                run_dir=out / "runs" / size.name / arch / f"seed{seed}", arch=arch, spec=specs[size.name][arch],
                seed=seed, train_blocks=train_blocks, valid_streams=valid_streams, byte_lengths=byte_lengths,
                tokenizer=tokenizer, train=cfg.train, eval_cfg=cfg.eval, device=device, bf16=use_bf16(cfg, device),
                fairness=fairness, extra={"size": size.name, "data_dir": str(data_dir)},
                save_model=cfg.save_models, target_params=size.target_non_embedding_params,
                gpu_shared_by=selection.gpu_shared_by)
        if cfg.long_context is not None:
            from .long_context import run_long_context
            run_long_context(cfg, specs, device, tokenizer, data_dir, byte_lengths, fairness, selection)
    if not selection.aggregate:
        return {"status": "runs only (aggregation left to a later --aggregate-only)"}
    run_dirs = [out / "runs"] + [Path(d) for d in (extra_run_dirs or [])]
    return aggregate(cfg, run_dirs, out)
