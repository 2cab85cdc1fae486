"""Training FLOPs ResNet-BK needs to reach each other architecture's final training loss, per seed.

    python benchmarks/flops_to_loss.py [benchmarks/results/compare/gpu_10m benchmarks/results/compare/gpu_50m]

For each seed: the other run's final training loss (mean of the last 5% of its logged losses) is the target;
the first logged point where ResNet-BK's 3-point running mean of the training loss is at or below it gives
the tokens ResNet-BK needed; the ratio is (ResNet-BK train FLOPs/token x those tokens) / (the other's train
FLOPs/token x all its tokens). Analytic FLOPs per token come from the result files (docs/results.md).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def running_mean(curve, width=3):
    return [(curve[i][0], sum(v for _, v in curve[max(0, i - width + 1):i + 1]) / len(curve[max(0, i - width + 1):i + 1]))
            for i in range(len(curve))]


def main(dirs):
    print("| comparison | size | seed | target loss | ResNet-BK tokens to reach it | of | FLOP ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for d in map(Path, dirs):
        for bk_path in sorted(d.glob("runs/*/resnet_bk/seed*/result.json")):
            bk = json.loads(bk_path.read_text())
            smoothed = running_mean([(c["tokens"], c["loss"]) for c in bk["loss_curve"]])
            for other in ("transformer", "mamba"):
                path = bk_path.parents[1].parent / other / bk_path.parent.name / "result.json"
                if not path.is_file():
                    continue
                o = json.loads(path.read_text())
                target, total = o["final_train_loss"], o["train"]["tokens_seen"]
                hit = next((t for t, v in smoothed if v <= target), None)
                ratio = (bk["flops_per_token"]["train"] * hit) / (o["flops_per_token"]["train"] * total) if hit else None
                print(f"| resnet_bk vs {other} | {bk['size']} | {bk['seed']} | {target:.3f} | "
                      f"{hit if hit else 'not reached'} | {total} | {f'{ratio:.3f}' if ratio else '-'} |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["benchmarks/results/compare/gpu_10m", "benchmarks/results/compare/gpu_50m"])
