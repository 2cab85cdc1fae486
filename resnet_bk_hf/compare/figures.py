"""Figures of the comparison, each written as PNG and SVG."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Dict, List

from ..training.plots import pyplot, save_figure

COLORS = {"resnet_bk": "tab:blue", "mamba": "tab:orange", "mamba2": "tab:red", "transformer": "tab:green"}


def _save(fig, stem: Path) -> List[str]:
    paths = [stem.with_suffix(f".{ext}") for ext in ("png", "svg")]
    save_figure(fig, *paths)
    return [str(path) for path in paths]


def plot_curves(runs: List[Dict], stem: Path, title: str) -> List[str]:
    """Training loss and gradient norm against tokens, one line per run (seeds share a colour)."""
    plt = pyplot()
    fig, (ax_loss, ax_grad) = plt.subplots(1, 2, figsize=(11, 4))
    labelled = set()
    for r in sorted(runs, key=lambda r: (r["arch"], r["seed"])):
        curve = r.get("loss_curve") or []
        if not curve:
            continue
        tokens = [c["tokens"] for c in curve]
        label = None if r["arch"] in labelled else r["arch"]
        labelled.add(r["arch"])
        color = COLORS.get(r["arch"])
        ax_loss.plot(tokens, [c["loss"] for c in curve], color=color, alpha=0.8, lw=1, label=label)
        ax_grad.plot(tokens, [c["grad_norm"] for c in curve], color=color, alpha=0.8, lw=1, label=label)
    ax_loss.set(xlabel="training tokens", ylabel="train loss (nats/token)", title=f"{title}: loss")
    ax_grad.set(xlabel="training tokens", ylabel="gradient norm (before clipping)", title=f"{title}: grad norm",
                yscale="log")
    for ax in (ax_loss, ax_grad):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return _save(fig, stem)


def plot_validation(size_entry: Dict, stem: Path, title: str) -> List[str]:
    """Validation bits-per-byte per architecture and set: mean over seeds, 95% t interval as error bar."""
    plt = pyplot()
    archs = sorted(size_entry["architectures"])
    sets = sorted({k.split(".")[0] for a in archs for k in size_entry["architectures"][a]["metrics"]
                   if k.endswith(".bits_per_byte")})
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(archs) * max(1, len(sets)) / 2, 4))
    width = 0.8 / max(1, len(archs))
    for i, arch in enumerate(archs):
        metrics = size_entry["architectures"][arch]["metrics"]
        means, errs = [], [[], []]
        for s in sets:
            m = metrics.get(f"{s}.bits_per_byte", {})
            mean, ci = m.get("mean"), m.get("ci95_t")
            means.append(mean if mean is not None else float("nan"))
            errs[0].append(mean - ci[0] if ci else 0)
            errs[1].append(ci[1] - mean if ci else 0)
        xs = [j + i * width for j in range(len(sets))]
        ax.bar(xs, means, width, yerr=errs, capsize=3, color=COLORS.get(arch), label=arch)
    ax.set_xticks([j + width * (len(archs) - 1) / 2 for j in range(len(sets))], sets)
    ax.set(ylabel="bits per byte (lower is better)", title=f"{title}: validation")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _save(fig, stem)


def plot_long_context(rows: List[Dict], stem: Path, title: str) -> List[str]:
    """Long-context stability: final loss vs training length, and streaming perplexity vs position."""
    plt = pyplot()
    fig, (ax_final, ax_stream) = plt.subplots(1, 2, figsize=(12, 4.5))
    by_arch = defaultdict(list)
    for r in rows:
        by_arch[r["arch"]].append(r)
    for arch, rs in sorted(by_arch.items()):
        rs = sorted(rs, key=lambda r: r["seq_len"])
        color = COLORS.get(arch)
        ok = [r for r in rs if r["status"] == "ok" and r["final_train_loss"] is not None]
        ax_final.plot([r["seq_len"] for r in ok], [r["final_train_loss"] for r in ok], "o-", color=color, label=arch)
        for r in rs:
            if r["status"] != "ok":
                ax_final.annotate(r["status"], (r["seq_len"], ax_final.get_ylim()[1]), color=color, fontsize=8,
                                  rotation=90, va="top")
        for r in ok:
            prof = (r.get("streaming") or {}).get("profile")
            if prof:
                ax_stream.plot(prof["end"], prof["perplexity"], color=color, alpha=0.35 + 0.65 * (r is ok[-1]),
                               lw=1, label=f"{arch} (trained at N={r['seq_len']})")
    ax_final.set(xscale="log", xlabel="training sequence length N (equal tokens per step)",
                 ylabel="final train loss (nats/token)", title=f"{title}: long-context training")
    ax_stream.set(xscale="log", yscale="log", xlabel="token position in moby-dick.txt (state carried)",
                  ylabel="perplexity (bin)", title="streaming evaluation")
    for ax in (ax_final, ax_stream):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, stem)
