"""Training through `transformers.Trainer`, plus the guard that stops on a non-finite loss."""
from __future__ import annotations

import math
from pathlib import Path
from typing import List

from transformers import TrainerCallback


class NonFiniteLossError(RuntimeError):
    pass


class NonFiniteLossCallback(TrainerCallback):
    """Stop training at the first logged NaN/inf loss or gradient norm, with a clear error.

    Trainer keeps the checkpoints it saved before that point, so no finished work is lost;
    the error names the newest one to resume from (`trainer.train(resume_from_checkpoint=...)`).
    Set `logging_nan_inf_filter=False` in TrainingArguments, or Trainer hides such losses.
    """

    def __init__(self):
        self.bad_log = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        for key in ("loss", "grad_norm"):
            value = logs.get(key)
            if value is not None and not math.isfinite(float(value)):
                self.bad_log = (state.global_step, key, value)
                control.should_training_stop = True
                control.should_save = False

    def on_train_end(self, args, state, control, **kwargs):
        if self.bad_log is not None:
            step, key, value = self.bad_log
            checkpoints = sorted(Path(args.output_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
            resume = f"resume from {checkpoints[-1]}" if checkpoints else "no checkpoint was saved before it"
            raise NonFiniteLossError(f"{key} became {value} at step {step}; training stopped ({resume}). "
                                     "Lower the learning rate or enable gradient clipping (max_grad_norm).")


def loss_history(log_history: List[dict]):
    """(steps, train losses, eval steps, eval losses) from Trainer.state.log_history."""
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h]
    return train, evals


def plot_loss_curve(log_history: List[dict], path: str | Path, title: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, evals = loss_history(log_history)
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train), label="train loss")
    if evals:
        ax.plot(*zip(*evals), "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
