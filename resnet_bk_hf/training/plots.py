"""The loss curve of a run, from `Trainer.state.log_history` (the demo's results/demo_loss.png)."""
from __future__ import annotations

from pathlib import Path
from typing import List


def pyplot():
    """matplotlib.pyplot on the Agg backend (writes files, needs no display)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, *paths: Path) -> None:
    """Write `fig` to each path (making its folder) at 120 dpi, then close it."""
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    pyplot().close(fig)


def loss_history(log_history: List[dict]):
    """(steps, train losses, eval steps, eval losses) from Trainer.state.log_history."""
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h]
    return train, evals


def plot_loss_curve(log_history: List[dict], path: str | Path, title: str) -> Path:
    train, evals = loss_history(log_history)
    fig, ax = pyplot().subplots(figsize=(6, 4))
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
    save_figure(fig, path)
    return path
