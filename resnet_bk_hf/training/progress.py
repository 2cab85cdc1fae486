"""What a run shows while it works: tqdm bars on a terminal, plain lines everywhere else.

Trainer's tqdm bars redraw with carriage returns; written to a file or a CI log they become thousands of
updates, with the evaluation bar nested inside the training bar. When stdout is not a terminal (nor a
notebook, and the config does not set `training.disable_tqdm` itself) `build_trainer` turns the bars off and attaches
`PlainProgressCallback`: one line per logging step (step, loss, learning rate, gradient norm, tokens/s).
`say` prints the preparation steps (tokenizer, data loading, tokenizing) from the main process only; the bars
that transformers and `datasets` draw themselves are turned off too (`quiet_library_bars`).
"""
from __future__ import annotations

import math
import sys
import time
from typing import Optional

from transformers import TrainerCallback


def stdout_is_terminal() -> bool:
    """Whether bars can redraw in place: stdout is a terminal, or this is a Jupyter notebook (Trainer draws its
    notebook bar there)."""
    from transformers.utils import is_in_notebook
    try:
        return bool(sys.stdout.isatty()) or is_in_notebook()
    except (AttributeError, ValueError):   # replaced or closed stdout
        return False


def quiet_library_bars() -> None:
    """Turn off the bars transformers and datasets draw themselves ("Writing model shards", map progress):
    called when stdout is not a terminal, where PlainProgressCallback and `say` tell the same in lines."""
    import datasets
    from transformers.utils import logging as transformers_logging
    transformers_logging.disable_progress_bar()
    datasets.disable_progress_bars()


def say(message: str) -> None:
    """A line of progress on stdout (main process only), flushed at once."""
    from accelerate import PartialState
    if PartialState().is_main_process:
        print(message, flush=True)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class PlainProgressCallback(TrainerCallback):
    """One line per Trainer log entry: `step 10/300 | loss 6.2113 | lr 2.00e-03 | grad_norm 1.52 | 8,431 tokens/s`.

    `tokens_per_step` (all processes, all accumulation micro-batches) gives the throughput over the last
    logging interval; without it the line leaves throughput out.
    """

    def __init__(self, tokens_per_step: Optional[int] = None, stream=None):
        self.tokens_per_step = tokens_per_step
        self.stream = stream
        self._start = self._last_time = None
        self._last_step = 0

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout, flush=True)

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = self._last_time = time.perf_counter()
        self._last_step = state.global_step
        if state.is_world_process_zero:
            start = f" from step {state.global_step}" if state.global_step else ""
            self._print(f"training {state.max_steps} steps{start}; a line every {args.logging_steps} steps")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        now = time.perf_counter()
        elapsed = _duration(now - (self._start or now))
        head = f"step {state.global_step:>{len(str(state.max_steps))}}/{state.max_steps}"
        if "loss" in logs:
            parts = [head, f"loss {logs['loss']:.4f}"]
            if "learning_rate" in logs:
                parts.append(f"lr {logs['learning_rate']:.2e}")
            if logs.get("grad_norm") is not None:
                parts.append(f"grad_norm {float(logs['grad_norm']):.3g}")
            steps, seconds = state.global_step - self._last_step, now - (self._last_time or now)
            if self.tokens_per_step and steps > 0 and seconds > 0:
                parts.append(f"{steps * self.tokens_per_step / seconds:,.0f} tokens/s")
            self._last_step, self._last_time = state.global_step, now
            self._print(" | ".join(parts + [elapsed]))
        elif "eval_loss" in logs:
            loss = logs["eval_loss"]
            perplexity = f" (perplexity {math.exp(loss):.2f})" if math.isfinite(loss) and loss < 700 else ""
            self._print(f"{head} | eval_loss {loss:.4f}{perplexity} | {elapsed}")
        elif "train_runtime" in logs:
            final = f" (mean train loss {logs['train_loss']:.4f})" if "train_loss" in logs else ""
            self._print(f"done: step {state.global_step} after {_duration(logs['train_runtime'])}{final}")
