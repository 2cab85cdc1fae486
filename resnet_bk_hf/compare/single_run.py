"""One compared run: train a model through the package's training path, evaluate it, write result.json.

The recipe becomes a training config (config.run_config), the Trainer comes from `training.build_trainer`
inside the attempt loop of `resnet-bk train` (training.run.AttemptLoop) with the fault-handling callbacks:
with compare's default `fault_tolerance` a non-finite loss, gradient norm or parameter ends the run as
"diverged" (no rollback), out of memory as "oom", and SIGTERM / SIGINT save a checkpoint and stop the
process (the next invocation resumes the run). result.json records the fault-tolerance setting and events.
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
from transformers import TrainerCallback, set_seed

from .. import __version__
from ..ops.bk import resolve_backend
from ..training.callbacks import EventLog
from ..training.checkpoints import list_checkpoints
from ..training.run import AttemptLoop, TrainingFailedError, read_train_log
from ..training.schema import FaultToleranceConfig
from ..training.trainer import build_trainer, tied_parameter_names
from .architectures import (ArchSpec, build_model, count_parameters, forward_flops_per_token, probe_mamba_scan_path,
                            save_trained_model)
from .config import RecipeConfig, compare_fault_tolerance, run_config
from .evaluation import evaluate_blocks
from .stats import count_spikes


class RunMonitor(TrainerCallback):
    """Wall time, throughput and peak memory of one run's training in this process (the curves come from
    Trainer's log history, which also holds the steps of earlier sessions of a resumed run)."""

    def __init__(self, tokens_per_step: int, device: str):
        self.tokens_per_step = tokens_per_step
        self.device = device
        self.step_times: List[tuple] = []
        self.t0 = self.t1 = None

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
        seconds = (self.t1 or time.perf_counter()) - self.t0   # no t1: training ended by an error
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


def _load_finished_checkpoint(trainer, model, checkpoint: str) -> None:
    from safetensors.torch import load_file
    from transformers import TrainerState
    missing, unexpected = model.load_state_dict(load_file(str(Path(checkpoint) / "model.safetensors")), strict=False)
    if unexpected or set(missing) - tied_parameter_names(model):
        raise RuntimeError(f"checkpoint {checkpoint} does not fit the model: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))


def environment(device: str) -> Dict:
    import transformers
    env = {"resnet_bk_hf": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
           "python": platform.python_version(), "device": device,
           "host_cpu": platform.processor() or platform.machine()}
    if device == "cuda":
        env["device_name"] = torch.cuda.get_device_name()
    return env


@dataclasses.dataclass
class Trained:
    """What training left: the model, the log history, the status and what the fault handling did."""
    model: object
    log_history: List[Dict]
    status: str = "ok"
    error: Optional[str] = None
    events: List[Dict] = dataclasses.field(default_factory=list)
    rollbacks: int = 0
    global_step: int = 0


def train_run(run_cfg, model, make_model, train_blocks, monitor: RunMonitor, resume: Optional[str]) -> Trained:
    """Train `model` as `run_cfg` says (resuming from `resume`), through the attempt loop of `resnet-bk train`."""
    ckpt_dir = Path(run_cfg.training["output_dir"])
    events = EventLog(ckpt_dir)
    if resume is not None and int(Path(resume).name.split("-")[-1]) >= run_cfg.training["max_steps"]:
        # training had finished when the last process stopped (during evaluation, say): Trainer would take
        # one more step from this checkpoint; load it instead (the monitor then reports no training time)
        trainer = build_trainer(model, run_cfg, train_blocks, extra_callbacks=[monitor])
        _load_finished_checkpoint(trainer, model, resume)
        return Trained(model, trainer.state.log_history, global_step=trainer.state.global_step)
    first = [model]
    loop = AttemptLoop(run_cfg, lambda: first.pop() if first else make_model(), train_blocks, None, events,
                       Path(resume) if resume else None, [monitor])
    try:
        outcome = loop.run()
    except torch.cuda.OutOfMemoryError as e:
        state = loop.trainer.state
        return Trained(loop.trainer.model, state.log_history, "oom", str(e).splitlines()[0], events.events,
                       loop.rollbacks, state.global_step)
    except TrainingFailedError as e:   # out of memory at a micro-batch of 1 (fault_tolerance.oom_recovery on)
        history = read_train_log(ckpt_dir)   # no Trainer is left to ask
        return Trained(model, history, "oom", str(e), events.events, loop.rollbacks,
                       max((h["step"] for h in history), default=0))
    if outcome.status == "signal":
        print(f"stopped by signal {outcome.signal} at step {outcome.trainer.state.global_step}: checkpoint saved "
              f"in {ckpt_dir}; run the same command again to resume", flush=True)
        raise SystemExit(128 + outcome.signal)
    state = outcome.trainer.state   # status "ok", or "diverged" with its reason
    return Trained(outcome.trainer.model, state.log_history, outcome.status, outcome.reason or None, events.events,
                   outcome.rollbacks, state.global_step)


def train_and_evaluate(*, run_dir: Path, arch: str, spec: ArchSpec, seed: int, train_blocks, valid_streams: Dict,
                       byte_lengths, tokenizer, train: RecipeConfig, eval_cfg, device: str, bf16: bool,
                       fairness: Dict, extra: Optional[Dict] = None, save_model: bool = True,
                       target_params: Optional[int] = None, after_training=None, gradient_checkpointing: bool = False,
                       gpu_shared_by: int = 1, fault_tolerance: Optional[FaultToleranceConfig] = None) -> Dict:
    """One training run, then evaluation; writes run_dir/result.json.

    `after_training(model, result)`, if given, runs on a finished run before the result is written
    (the long-context runs add their streaming evaluation there). `gpu_shared_by` > 1 records that other
    processes trained on the same GPU meanwhile: the run's losses are unaffected, its tokens/s is not its own.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    result_path = run_dir / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    fault_tolerance = fault_tolerance or compare_fault_tolerance()
    run_cfg = run_config(train, fault_tolerance, arch=arch, run_dir=run_dir, device=device, bf16=bf16, seed=seed,
                         gradient_checkpointing=gradient_checkpointing)

    def make_model():
        return build_model(spec, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)

    set_seed(seed)
    model = make_model()
    counts = count_parameters(model)
    # which scan Mamba runs, by running it (on the device, before training: a run that ends out of memory has one)
    scan_path = probe_mamba_scan_path(model.to(device), device) if arch == "mamba" else None
    tokens_per_step = train.batch_size * train.seq_len
    monitor = RunMonitor(tokens_per_step, device)
    checkpoints = list_checkpoints(run_dir / "checkpoints")
    resume = str(checkpoints[-1][1]) if checkpoints else None
    trained = train_run(run_cfg, model, make_model, train_blocks, monitor, resume)
    model = trained.model
    curve = curve_from_log_history(trained.log_history, tokens_per_step)   # earlier sessions included
    losses = [c["loss"] for c in curve]
    steps = train.steps()
    result = {
        "arch": arch, "seed": seed, "status": trained.status, "error": trained.error, "resumed_from": resume,
        "spec": dataclasses.asdict(spec), "model_config": model.config.to_diff_dict(),
        "model_class": type(model).__name__, "parameters": counts,
        "target_non_embedding_params": target_params,
        "param_deviation": (counts["non_embedding"] - target_params) / target_params if target_params else None,
        "flops_per_token": forward_flops_per_token(model.config, arch, train.seq_len),
        "mamba_scan_path": scan_path,
        "attn_implementation": getattr(model.config, "_attn_implementation", None) if arch == "transformer" else None,
        "scan_backend": resolve_backend(model.config.scan_backend, device) if arch == "resnet_bk" else None,
        "fairness": fairness | {"seed": seed},
        "train": {"steps": steps, "tokens_per_step": tokens_per_step,
                  "tokens_seen": trained.global_step * tokens_per_step,
                  "precision": "bf16" if bf16 else "fp32", "micro_batch_size": train.micro_batch_for(arch),
                  "gradient_checkpointing": gradient_checkpointing, "gpu_shared_by_processes": gpu_shared_by,
                  **monitor.summary()},
        "fault_tolerance": dataclasses.asdict(fault_tolerance) | {"rollbacks": trained.rollbacks,
                                                                  "events": trained.events},
        "loss_curve": curve, "loss_spikes": count_spikes(losses),
        "nonfinite_loss": any(not math.isfinite(v) for v in losses),
        "max_grad_norm": max((c["grad_norm"] for c in curve if math.isfinite(c["grad_norm"])), default=None),
        "final_train_loss": _tail_mean(losses), "environment": environment(device), **(extra or {}),
    }
    if trained.status == "ok":
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
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str, allow_nan=True))
    os.replace(tmp, result_path)  # a result file is either complete or absent
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # finished: the checkpoints were only for resuming
    del model, trained
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


def _tail_mean(losses: List[float], frac: float = 0.05) -> Optional[float]:
    if not losses:
        return None
    k = max(1, int(len(losses) * frac))
    return float(sum(losses[-k:]) / k)
