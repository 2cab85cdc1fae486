"""`resnet-bk train CONFIG.yaml`: train with `transformers.Trainer` (built by trainer.build_trainer), surviving faults.

A run is a loop of attempts around `Trainer.train` (`AttemptLoop`; `resnet-bk compare` runs its runs through
the same loop). An attempt ends normally, or with:
    - an anomaly flagged by TrainingGuardCallback (NaN/Inf loss, gradients or parameters, gradient-norm
      spike, loss divergence): roll back to the newest intact checkpoint (or the initial weights) and
      lower the learning rate by `lr_decay`, at most `max_rollbacks` times (with `fault_tolerance.rollback:
      false` the run ends there instead: "diverged");
    - CUDA out of memory: cut the per-device batch to its largest divisor <= half of it and multiply the
      gradient accumulation by the same factor (exactly the same effective batch, same sample order; see
      `smaller_micro_batch`) and resume from the newest intact checkpoint;
    - SIGTERM / SIGINT: an emergency checkpoint at the end of the current step, then exit 128+signal.
Each recovery goes to OUTPUT_DIR/events.jsonl with its cause. `--resume` continues from the newest
checkpoint whose sha256 manifest verifies, through Trainer's own resume (model, optimizer, scheduler,
RNG states and the position in the data order).
"""
from __future__ import annotations

import gc
import json
import logging
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional

import torch

from . import trainer as trainer_lib
from .callbacks import RECOVERY_EVENTS, Anomaly, EventLog, StepTimerCallback, count_events
from .checkpoints import MANIFEST_NAME, latest_valid_checkpoint, list_checkpoints, verify_checkpoint
from .data import build_datasets, load_training_tokenizer
from .models import build_model, model_config
from .progress import say
from .schema import ConfigError, TrainConfig, load_config

logger = logging.getLogger(__name__)


class TrainingFailedError(RuntimeError):
    """Recoveries ran out (too many rollbacks, out of memory at a per-device batch of 1), or rollback is off."""


@dataclass
class TrainResult:
    exit_code: int
    output_dir: Path
    global_step: int
    events: List[dict]                    # this session's events (events.jsonl holds every session's)
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    metrics: dict = field(default_factory=dict)
    trainer: Any = field(default=None, repr=False)   # the last attempt's Trainer (model, datasets, log history)
    tokenizer: Any = field(default=None, repr=False)


@dataclass
class Outcome:
    """How the attempts ended: status "ok", "signal" (checkpoint saved, stopped) or "diverged" (rollback off)."""
    trainer: Any
    status: str
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    anomaly: Optional[Anomaly] = None
    rollbacks: int = 0
    signal: Optional[int] = None
    reason: str = ""                      # why a "diverged" run stopped


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


def release(*objects) -> None:
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


class AttemptLoop:
    """Attempts of `Trainer.train` until one ends normally, by a signal, or (rollback off) on an anomaly.

    `make_model()` builds the model of each attempt (after `set_seed(training.seed)`); every Trainer comes
    from `trainer.build_trainer` with the same fault handlers, so the guard's statistics and the signal
    flag carry over from one attempt to the next.
    """

    def __init__(self, cfg: TrainConfig, make_model: Callable, train_dataset, eval_dataset, events: EventLog,
                 checkpoint: Optional[Path] = None, callbacks=()):
        self.cfg, self.make_model, self.events = cfg, make_model, events
        self.train_dataset, self.eval_dataset, self.callbacks = train_dataset, eval_dataset, list(callbacks)
        args = trainer_lib.make_training_args(cfg)
        self.seed, self.output_dir = args.seed, Path(args.output_dir)
        self.batch, self.accumulation = args.per_device_train_batch_size, args.gradient_accumulation_steps
        self.handlers = trainer_lib.FaultHandlers.from_config(cfg.fault_tolerance)
        self.checkpoint, self.rollbacks = checkpoint, 0
        self.trainer = None                   # the current attempt's (compare reads it after an error)
        saved_scale = self.handlers.guard.restore(checkpoint)
        self.handlers.guard.plan_lr(saved_scale, saved_scale)

    def run(self) -> Outcome:
        from transformers import set_seed
        guard, signals, ft = self.handlers.guard, self.handlers.signals, self.cfg.fault_tolerance
        while True:
            set_seed(self.seed)
            self.trainer = trainer_lib.build_trainer(
                self.make_model(), self.cfg, self.train_dataset, self.eval_dataset, self.callbacks,
                handlers=self.handlers, per_device_train_batch_size=self.batch,
                gradient_accumulation_steps=self.accumulation)
            error = self._attempt(self.trainer)
            step = self.trainer.state.global_step
            if error is None and guard.anomaly is not None and not (ft.rollback and self.rollbacks < ft.max_rollbacks):
                return self._stop()
            if error is not None or guard.anomaly is not None:
                release(self.trainer)   # the next attempt builds its model anew: free this one
                self.trainer = None
                release()
                if error is not None:
                    self._recover_from_oom(step, error)
                else:
                    self._roll_back()
                continue
            if signals is not None and signals.received is not None:
                saved = self.output_dir / f"checkpoint-{step}"
                self.events.record("signal", f"{signal.Signals(signals.received).name} received: saved "
                                   f"{saved.name} and stopped", step=step, checkpoint=str(saved))
                return self._outcome("signal", signal=signals.received)
            return self._outcome("ok")

    def _stop(self) -> Outcome:
        """The anomaly ends the run: rollback is off, or the rollbacks ran out."""
        ft, anomaly = self.cfg.fault_tolerance, self.handlers.guard.anomaly
        if ft.rollback:
            self.events.record("gave_up", anomaly.cause, step=anomaly.step, rollbacks=self.rollbacks)
            reason = (f"{anomaly.cause}; {self.rollbacks} rollbacks already done "
                      f"(fault_tolerance.max_rollbacks={ft.max_rollbacks}); see {self.events.path}")
        else:
            self.events.record("stopped", f"{anomaly.cause} (fault_tolerance.rollback is false)",
                               kind=anomaly.kind, step=anomaly.step)
            reason = f"{anomaly.cause}; fault_tolerance.rollback is false, so the run stops here"
        return self._outcome("diverged", anomaly=anomaly, reason=reason)

    def _attempt(self, trainer) -> Optional[BaseException]:
        """Train; the out-of-memory error it ended with when that is recovered from, else None."""
        try:
            trainer.train(resume_from_checkpoint=str(self.checkpoint) if self.checkpoint else None)
        except Exception as error:  # noqa: BLE001  (only out-of-memory is handled; the rest re-raised)
            from accelerate.utils.memory import should_reduce_batch_size
            out_of_memory = isinstance(error, torch.cuda.OutOfMemoryError) or should_reduce_batch_size(error)
            if not (self.cfg.fault_tolerance.oom_recovery and out_of_memory):
                raise
            return error
        return None

    def _outcome(self, status: str, **details) -> Outcome:
        return Outcome(self.trainer, status, self.batch, self.accumulation, rollbacks=self.rollbacks, **details)

    def _recover_from_oom(self, step: int, error: BaseException) -> None:
        described = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        smaller = smaller_micro_batch(self.batch, self.accumulation)
        if smaller is None:
            raise TrainingFailedError(f"out of memory at step {step} with a per-device batch of 1 "
                                      f"({described}); use a smaller model, block_size, ZeRO-3/offload "
                                      "or gradient checkpointing") from error
        self.batch, self.accumulation = smaller
        self.checkpoint = find_resume_checkpoint(self.output_dir, self.events)
        guard = self.handlers.guard
        lr_scale = guard.lr_scale
        guard.plan_lr(lr_scale, guard.restore(self.checkpoint))
        self.events.record("out_of_memory", described, step=step, per_device_train_batch_size=self.batch,
                           gradient_accumulation_steps=self.accumulation,
                           resume_from=str(self.checkpoint) if self.checkpoint else "initial weights")

    def _roll_back(self) -> None:
        ft, guard = self.cfg.fault_tolerance, self.handlers.guard
        anomaly = guard.anomaly
        self.rollbacks += 1
        target = guard.lr_scale * ft.lr_decay
        self.checkpoint = find_resume_checkpoint(self.output_dir, self.events)
        guard.plan_lr(target, guard.restore(self.checkpoint))
        self.events.record("rollback", anomaly.cause, kind=anomaly.kind, step=anomaly.step,
                           resume_from=str(self.checkpoint) if self.checkpoint else "initial weights",
                           lr_scale=target, rollback=self.rollbacks)


# ---------------------------------------------------------------------------------------------- the command

def build_model_config(cfg: TrainConfig, tokenizer):
    """The model's transformers config from the `model:` section (ConfigError naming a bad value)."""
    try:
        return model_config(cfg.model, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{cfg.path}: model: {e}") from e


def resume_checkpoint(resume, output_dir: Path, events: EventLog) -> Optional[Path]:
    """The checkpoint `--resume [CKPT]` names (checked), or None for a fresh run (refused over old checkpoints)."""
    if not resume:
        if list_checkpoints(output_dir):
            raise ConfigError(f"{output_dir} already holds checkpoints: pass --resume to continue that run, "
                              "or choose another training.output_dir")
        return None
    if isinstance(resume, (str, Path)):
        checkpoint = Path(resume)
        if not (checkpoint / "trainer_state.json").is_file():
            raise ConfigError(f"--resume {resume}: not a Trainer checkpoint (no trainer_state.json)")
        if (checkpoint / MANIFEST_NAME).is_file():
            ok, reason = verify_checkpoint(checkpoint)
            if not ok:
                raise ConfigError(f"--resume {resume}: the checkpoint does not verify: {reason}")
        else:   # e.g. saved by a plain Trainer run: usable, but nothing to check it against
            events.record("resume", f"{checkpoint} has no {MANIFEST_NAME}: resuming without verifying it")
        return checkpoint
    checkpoint = find_resume_checkpoint(output_dir, events)
    if checkpoint is None:
        events.record("resume", "no intact checkpoint in the output folder: starting from step 0",
                      output_dir=str(output_dir))
    return checkpoint


def run_training(cfg: TrainConfig, resume: bool | str | None = None, callbacks=()) -> TrainResult:
    """Train as the config says, recovering from the faults listed in the module docstring."""
    from accelerate import PartialState
    say(f"{cfg.path}: loading the tokenizer")
    tokenizer = load_training_tokenizer(cfg)
    config = build_model_config(cfg, tokenizer)
    args = trainer_lib.make_training_args(cfg)
    output_dir = Path(args.output_dir)
    events = EventLog(output_dir, PartialState().is_main_process)
    checkpoint = resume_checkpoint(resume, output_dir, events)
    train_dataset, eval_dataset = build_datasets(cfg, tokenizer, args.seed)
    built = []

    def make_model():
        model = build_model(cfg.model, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id, config=config)
        if not built:
            start = f", resuming from {checkpoint}" if checkpoint else ""
            say(f"model: {type(model).__name__}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M "
                f"parameters; {args.max_steps if args.max_steps > 0 else args.num_train_epochs} "
                f"{'steps' if args.max_steps > 0 else 'epochs'} into {output_dir}{start}")
        built.append(1)
        return model

    timer = StepTimerCallback()
    outcome = AttemptLoop(cfg, make_model, train_dataset, eval_dataset, events, checkpoint,
                          [timer, *callbacks]).run()
    trainer = outcome.trainer
    if outcome.status == "diverged":
        raise TrainingFailedError(outcome.reason)
    signalled = outcome.status == "signal"
    return TrainResult(128 + outcome.signal if signalled else 0, output_dir, trainer.state.global_step, events.events,
                       outcome.per_device_train_batch_size, outcome.gradient_accumulation_steps,
                       {} if signalled else _finish(trainer, tokenizer, cfg, output_dir, events, timer),
                       trainer=trainer, tokenizer=tokenizer)


def _finish(trainer, tokenizer, cfg: TrainConfig, output_dir: Path, events: EventLog,
            timer: StepTimerCallback) -> dict:
    """Save the final model + tokenizer (output.model_dir, default output_dir) and OUTPUT_DIR/train_summary.json;
    without output.keep_checkpoints, remove the checkpoints once the model is saved."""
    from accelerate import PartialState
    from accelerate.utils import gather_object
    model_dir = Path(cfg.output.model_dir or output_dir)
    trainer.save_model(str(model_dir))
    trainer.save_state()
    args = trainer.args
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    peaks = gather_object([peak]) if args.world_size > 1 else [peak]
    train_metrics = [h for h in trainer.state.log_history if "train_runtime" in h]
    tokens_per_step = trainer_lib.tokens_per_step(args, cfg.data.block_size)
    step_seconds = timer.steady_step_seconds()
    kinds = count_events(events.path)
    summary = {
        "config": str(cfg.path), "output_dir": str(output_dir), "model_dir": str(model_dir),
        "global_step": trainer.state.global_step,
        "parameters": sum(getattr(p, "ds_numel", 0) for p in trainer.model.parameters())
        or sum(p.numel() for p in trainer.model.parameters()),
        "world_size": args.world_size, "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps, "block_size": cfg.data.block_size,
        "tokens_per_step": tokens_per_step, "train_metrics": train_metrics[-1] if train_metrics else {},
        "median_step_seconds": step_seconds, "steps_timed": len(timer.step_seconds),
        "tokens_per_second": tokens_per_step / step_seconds if step_seconds else None,
        "peak_memory_bytes_per_device": peaks,
        "events": sum(kinds.values()), "events_by_kind": kinds,
        "recoveries": sum(kinds.get(k, 0) for k in RECOVERY_EVENTS),
        "final_train_loss": next((h["loss"] for h in reversed(trainer.state.log_history) if "loss" in h), None),
    }
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(model_dir))
        (output_dir / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str))
        if model_dir.resolve() != output_dir.resolve() and (model_dir / "training_args.bin").is_file():
            # a pickle of TrainingArguments: a record of the run, kept with the run, not in the model folder
            os.replace(model_dir / "training_args.bin", output_dir / "training_args.bin")
        if not cfg.output.keep_checkpoints:
            for _, folder in list_checkpoints(output_dir):
                shutil.rmtree(folder)
    PartialState().wait_for_everyone()
    return summary


def read_train_log(output_dir: str | Path) -> List[dict]:
    """The entries of OUTPUT_DIR/train_log.jsonl; a line that is not JSON or has no step is skipped, with a warning."""
    entries = []
    path = Path(output_dir) / "train_log.jsonl"
    for number, line in enumerate(path.read_text().splitlines() if path.is_file() else [], 1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            # a line torn by a kill mid-write (or read while being written): that step has no loss
            logger.warning(f"{path}:{number}: skipped a line that is not JSON: {line[:80]!r}")
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("step"), int):
            logger.warning(f"{path}:{number}: skipped an entry without a step: {line[:80]!r}")
            continue
        entries.append(entry)
    return entries


def per_step_losses(output_dir: str | Path) -> dict:
    """{step: loss} from OUTPUT_DIR/train_log.jsonl; a step logged twice (after a resume) keeps the last value."""
    return {entry["step"]: entry["loss"] for entry in read_train_log(output_dir)
            if isinstance(entry.get("loss"), (int, float)) and math.isfinite(entry["loss"])}


def describe_events(output_dir: str | Path) -> str:
    """What OUTPUT_DIR/events.jsonl holds, by kind, and how many of those are recoveries."""
    path = Path(output_dir) / "events.jsonl"
    kinds = count_events(path)
    if not kinds:
        return "no events (no recoveries)"
    recoveries = sum(kinds.get(k, 0) for k in RECOVERY_EVENTS)
    listed = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    return (f"{sum(kinds.values())} event(s) in {path} ({listed}); {recoveries} of them recoveries "
            f"({' / '.join(RECOVERY_EVENTS)})")


def main_train(config: str, resume=None, overrides=None) -> int:
    start = time.time()
    cfg = load_config(config, overrides)
    result = run_training(cfg, resume=resume)
    if result.exit_code == 0:
        print(f"trained {result.global_step} steps in {time.time() - start:.0f}s; model and tokenizer in "
              f"{result.metrics.get('model_dir', result.output_dir)}; {describe_events(result.output_dir)}")
    else:
        print(f"stopped by signal at step {result.global_step}: checkpoint saved; continue with "
              f"`resnet-bk train {config} --resume`")
    return result.exit_code
