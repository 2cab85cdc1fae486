"""Trainer callbacks of the fault handling: the anomaly guard (NaN/Inf, gradient-norm spikes, loss divergence),
SIGTERM/SIGINT checkpoints, sha256 manifests after each save, a JSONL log of every Trainer log entry, step
timing, and the event log (OUTPUT_DIR/events.jsonl) that records each recovery with its cause.

`build_trainer` (trainer.py) attaches them; `run_training` (run.py) reads the guard's verdict after each attempt.
"""
from __future__ import annotations

import json
import math
import signal
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState
from transformers.utils import logging

from .checkpoints import list_checkpoints, write_manifest

logger = logging.get_logger("resnet_bk_hf.training")

# Events of events.jsonl that are recoveries (the run went on after them); the others are notes ("resume":
# where a run started from), a stop ("signal") or the end of the recoveries ("gave_up").
RECOVERY_EVENTS = ("rollback", "out_of_memory", "corrupt_checkpoint")


class NonFiniteLossError(RuntimeError):
    pass


def first_non_finite(named_values):
    """The first (name, value) whose value is NaN or infinite (None values are skipped), else None."""
    for name, value in named_values:
        if value is not None and not math.isfinite(float(value)):
            return name, value
    return None


class NonFiniteLossCallback(TrainerCallback):
    """Stop training at the first logged NaN/inf loss or gradient norm, with a clear error.

    For a plain `Trainer` (the examples); `build_trainer`'s trainers have the `TrainingGuardCallback` instead.
    Trainer keeps the checkpoints it saved before that point, so no finished work is lost; the error names
    the newest one to resume from (`trainer.train(resume_from_checkpoint=...)`). Set
    `logging_nan_inf_filter=False` in TrainingArguments, or Trainer hides such losses.
    """

    def __init__(self):
        self.bad_log = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        bad = first_non_finite((key, logs.get(key)) for key in ("loss", "grad_norm"))
        if bad is not None:
            self.bad_log = (state.global_step, *bad)
            control.should_training_stop = True
            control.should_save = False

    def on_train_end(self, args, state, control, **kwargs):
        if self.bad_log is not None:
            step, key, value = self.bad_log
            checkpoints = list_checkpoints(args.output_dir)
            resume = f"resume from {checkpoints[-1][1]}" if checkpoints else "no checkpoint was saved before it"
            raise NonFiniteLossError(f"{key} became {value} at step {step}; training stopped ({resume}). "
                                     "Lower the learning rate or enable gradient clipping (max_grad_norm).")


class EventLog:
    """Recoveries and their causes: one JSON object per line in OUTPUT_DIR/events.jsonl, and a log warning."""

    def __init__(self, output_dir: str | Path, is_main_process: bool = True):
        self.path = Path(output_dir) / "events.jsonl"
        self.is_main_process = is_main_process
        self.events: List[dict] = []

    def record(self, event: str, cause: str, **details) -> dict:
        entry = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "event": event, "cause": cause,
                 **details}
        self.events.append(entry)
        logger.warning(f"[{event}] {cause}" + (f" {details}" if details else ""))
        if self.is_main_process:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry, default=str) + "\n")
        return entry


def count_events(path: str | Path) -> Dict[str, int]:
    """{event kind: count} of an events.jsonl, earlier sessions of a resumed run included (lines that are not JSON
    objects are skipped)."""
    path = Path(path)
    counts: Counter = Counter()
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("event"), str):
                counts[entry["event"]] += 1
    return dict(counts)


@dataclass
class Anomaly:
    step: int
    kind: str        # "non_finite" | "grad_spike" | "loss_divergence"
    cause: str


class TrainingGuardCallback(TrainerCallback, ExportableState):
    """Watches the optimizer steps (loss, pre-clip gradient norm) and flags what must not go on.

    - non-finite loss or gradient norm, or non-finite parameters about to be saved in a checkpoint;
    - a gradient-norm spike: more than `grad_spike_factor` x the median of the last `window` accepted steps;
    - loss divergence: the mean loss of the last `divergence_window` steps above `divergence_factor` x the
      lowest such mean seen so far.
    `grad_spike_factor=None` / `divergence_factor=None` turn those two checks off; with both off the guard
    reads only the logged loss and gradient norm (no per-step synchronisation with the GPU).
    On an anomaly it stops training without saving (so no checkpoint holds the bad state); the caller
    (`ResilientTrainer` feeds the values, `run.train_with_recovery` decides) rolls back to the last good
    checkpoint and lowers the LR by `lr_decay`, or ends the run. `lr_scale` (the product of those decays) and
    the statistics travel inside every checkpoint (trainer_state.json, as an ExportableState), so a resumed
    run goes on with them. The detection is cheap: a few floats per step.
    """

    def __init__(self, grad_spike_factor: Optional[float] = 10.0, window: int = 50, min_history: int = 10,
                 divergence_factor: Optional[float] = 2.0, divergence_window: int = 20, lr_decay: float = 0.5):
        self.grad_spike_factor = grad_spike_factor
        self.window = window
        self.min_history = min_history
        self.divergence_factor = divergence_factor
        self.divergence_window = divergence_window
        self.lr_decay = lr_decay
        self.pending_lr_factor = 1.0   # applied once to the optimizer/scheduler at the next train() start
        self.restore(None)             # empty statistics (grad_norms, losses, best_mean_loss), lr_scale 1, no anomaly

    @property
    def per_step(self) -> bool:
        """Whether every optimizer step must be judged (spike or divergence detection is on)."""
        return self.grad_spike_factor is not None or self.divergence_factor is not None

    # -- state that travels in checkpoints --
    def state(self) -> dict:
        return {"args": {"grad_spike_factor": self.grad_spike_factor, "window": self.window,
                         "min_history": self.min_history, "divergence_factor": self.divergence_factor,
                         "divergence_window": self.divergence_window, "lr_decay": self.lr_decay},
                "attributes": {"grad_norms": list(self.grad_norms), "losses": list(self.losses),
                               "best_mean_loss": self.best_mean_loss, "lr_scale": self.lr_scale}}

    def restore(self, checkpoint: Optional[str | Path]) -> float:
        """Load the statistics saved in `checkpoint` (or start empty); returns the lr_scale it was saved with."""
        attributes = {"grad_norms": [], "losses": [], "best_mean_loss": None, "lr_scale": 1.0}
        if checkpoint is not None:
            path = Path(checkpoint) / "trainer_state.json"
            saved = json.loads(path.read_text()).get("stateful_callbacks", {}).get(type(self).__name__)
            if isinstance(saved, list):
                saved = saved[-1] if saved else None
            if saved:
                attributes.update(saved.get("attributes", {}))
        for key, value in attributes.items():
            setattr(self, key, value)
        self.anomaly = None
        return float(self.lr_scale)

    def plan_lr(self, target_scale: float, checkpoint_scale: float) -> None:
        """Make the next run's LR `target_scale` x the configured schedule (the checkpoint holds checkpoint_scale)."""
        self.pending_lr_factor = target_scale / checkpoint_scale
        self.lr_scale = target_scale

    def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        # Runs after Trainer has loaded the optimizer and scheduler states of a resumed checkpoint.
        factor, self.pending_lr_factor = self.pending_lr_factor, 1.0
        if factor != 1.0:
            scale_learning_rate(optimizer, lr_scheduler, factor)

    def on_log(self, args, state, control, logs=None, **kwargs):
        # Without per-step checks, the logged loss (a mean over the logging interval: NaN if any step was) and
        # gradient norm are what is judged, before Trainer saves this step.
        if self.per_step or self.anomaly is not None:
            return
        bad = first_non_finite((key, (logs or {}).get(key)) for key in ("loss", "grad_norm"))
        if bad is not None:
            name = "gradient norm" if bad[0] == "grad_norm" else bad[0]
            self._flag(state.global_step, "non_finite", f"logged {name} is {bad[1]} at step {state.global_step}")
            control.should_training_stop = True
            control.should_save = False
            control.should_evaluate = False

    # -- detection --
    def check_step(self, step: int, loss: Optional[float], grad_norm: Optional[float]) -> Optional[Anomaly]:
        """Judge one optimizer step; accepted steps join the running statistics."""
        bad = first_non_finite((("loss", loss), ("gradient norm", grad_norm)))
        if bad is not None:
            return self._flag(step, "non_finite", f"{bad[0]} is {bad[1]} at step {step}")
        spikes = self.grad_spike_factor is not None
        if spikes and grad_norm is not None and len(self.grad_norms) >= self.min_history:
            median = statistics.median(self.grad_norms)
            if median > 0 and grad_norm > self.grad_spike_factor * median:
                return self._flag(step, "grad_spike", f"gradient norm {grad_norm:.4g} at step {step} is "
                                  f"{grad_norm / median:.1f}x the running median {median:.4g} "
                                  f"(limit {self.grad_spike_factor}x)")
        if loss is not None and self.divergence_factor is not None:
            recent = (self.losses + [loss])[-self.divergence_window:]
            if len(recent) == self.divergence_window:
                mean = sum(recent) / len(recent)
                if self.best_mean_loss is not None and mean > self.divergence_factor * self.best_mean_loss:
                    return self._flag(step, "loss_divergence", f"mean loss of the last {len(recent)} steps "
                                      f"{mean:.4g} at step {step} is above {self.divergence_factor}x the best "
                                      f"such mean {self.best_mean_loss:.4g}")
                self.best_mean_loss = mean if self.best_mean_loss is None else min(self.best_mean_loss, mean)
            self.losses = recent[-max(self.divergence_window, 1):]
        if grad_norm is not None and spikes:
            self.grad_norms = (self.grad_norms + [grad_norm])[-self.window:]
        return None

    def flag_parameters(self, step: int) -> Anomaly:
        return self._flag(step, "non_finite", f"non-finite parameters at step {step}, found before saving a checkpoint")

    def _flag(self, step: int, kind: str, cause: str) -> Anomaly:
        self.anomaly = Anomaly(step, kind, cause)
        return self.anomaly


def scale_learning_rate(optimizer, lr_scheduler, factor: float) -> None:
    """Multiply the current LR and the schedule's base LRs by `factor` (Trainer's LambdaLR schedules)."""
    if optimizer is not None:
        for group in optimizer.param_groups:
            group["lr"] *= factor
            if "initial_lr" in group:
                group["initial_lr"] *= factor
    scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)   # accelerate wraps it
    if scheduler is not None and hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = [lr * factor for lr in scheduler.base_lrs]
        if hasattr(scheduler, "_last_lr"):
            scheduler._last_lr = [lr * factor for lr in scheduler._last_lr]


def parameters_are_finite(model) -> bool:
    # Under ZeRO-3 the local parameters are empty placeholders (the shards live in DeepSpeed): skipped.
    return all(bool(torch.isfinite(p).all()) for p in model.parameters() if p.numel() > 0)


class ChecksumManifestCallback(TrainerCallback):
    """After each checkpoint save, write its sha256 manifest (checkpoints.write_manifest)."""

    def on_save(self, args, state, control, **kwargs):
        from accelerate import PartialState
        PartialState().wait_for_everyone()   # every rank has written its shards
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                write_manifest(folder)
        PartialState().wait_for_everyone()


class SignalCheckpointCallback(TrainerCallback):
    """SIGTERM / SIGINT: finish the current optimizer step, save a checkpoint, stop training.

    The handlers are installed while `train()` runs (main thread only) and the previous ones restored
    after it. A second SIGINT while the checkpoint is being written falls through to the default (abort).
    Under several processes the flag is all-reduced every step, so all ranks save the same step.
    """

    def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
        self.signals = tuple(signals)
        self.received: Optional[int] = None
        self._previous = {}

    def _handle(self, signum, frame):
        self.received = signum
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)

    def on_step_end(self, args, state, control, **kwargs):
        received = self.received is not None
        if args.world_size > 1:
            flag = torch.tensor(float(received), device=args.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            received = bool(flag > 0)
            if received and self.received is None:
                self.received = signal.SIGTERM   # another rank was signalled
        if received:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}


class JsonlLogCallback(TrainerCallback):
    """Every Trainer log entry (loss, grad_norm, learning_rate, eval) as one JSON line in OUTPUT_DIR/train_log.jsonl."""

    def on_train_begin(self, args, state, control, **kwargs):
        # A run killed mid-write leaves a torn last line: end it, so the resumed run's entries start on their own
        # lines (readers skip the torn one, run.per_step_losses).
        path = Path(args.output_dir) / "train_log.jsonl"
        if state.is_world_process_zero and path.is_file() and path.stat().st_size > 0:
            with open(path, "rb+") as f:
                f.seek(-1, 2)
                if f.read(1) != b"\n":
                    f.write(b"\n")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            path = Path(args.output_dir) / "train_log.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": state.global_step, **logs}) + "\n")


class StepTimerCallback(TrainerCallback):
    """Wall time between consecutive optimizer steps (the first steps include compilation and warm-up)."""

    def __init__(self):
        self.step_seconds: List[float] = []
        self._last: Optional[float] = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._last = None

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        now = time.perf_counter()
        if self._last is not None:
            self.step_seconds.append(now - self._last)
        self._last = now

    def steady_step_seconds(self, skip: int = 2) -> Optional[float]:
        """Median step time, leaving out the first `skip` intervals (warm-up)."""
        times = self.step_seconds[skip:] or self.step_seconds
        return statistics.median(times) if times else None
