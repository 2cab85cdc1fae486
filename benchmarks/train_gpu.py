"""GPU measurements of the training pipeline (issue 4). Two jobs launching `resnet-bk train` runs:

    python benchmarks/train_gpu.py zero-compare --out DIR   # 2 GPUs: the same small config on one GPU
        without DeepSpeed, and under ZeRO-2 and ZeRO-3 on one and on two GPUs (+ a second seed as the noise
        yardstick): per-step losses, per-GPU peak memory, step time -> DIR/zero_compare.json, .png
    python benchmarks/train_gpu.py zero-merge --out DIR --merge A/zero_compare.json --merge B/zero_compare.json
        # one table from runs made in several calls (same device, config and steps)
    python benchmarks/train_gpu.py train-1b --out DIR       # 1 GPU: a 1.05B-parameter ResNet-BK, a few steps
        under ZeRO-3 with CPU offload: peak GPU memory, host memory, tokens/s -> DIR/train_1b.json

Needs CUDA, deepspeed and datasets (carried as wheels on the GPU machine). Every run is its own process
with its own time limit; a failed run is recorded (exit code, log tail) and the others go on.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZERO_CONFIG = "benchmarks/zero_compare.yaml"
BIG_CONFIG = "benchmarks/train_1b.yaml"

# name: (GPUs, accelerate config or None for a plain single-process run, gradient accumulation, seed)
# Effective batch 16 sequences everywhere: 8 per GPU x 2 accumulation on 1 GPU, 8 per GPU x 2 GPUs.
ZERO_RUNS = {
    "1gpu": (1, None, 2, 0),
    "1gpu-seed1": (1, None, 2, 1),
    "1gpu-zero2": (1, "examples/accelerate/deepspeed_zero2.yaml", 2, 0),
    "1gpu-zero3": (1, "examples/accelerate/deepspeed_zero3.yaml", 2, 0),
    "2gpu-zero2": (2, "examples/accelerate/deepspeed_zero2.yaml", 1, 0),
    "2gpu-zero3": (2, "examples/accelerate/deepspeed_zero3.yaml", 1, 0),
}


def launch(name, gpus, accelerate_config, config, out, overrides, timeout, port=29500):
    """Run one training; returns its record (exit code, seconds, summary, per-step losses, log tail)."""
    run_dir = out / name
    train_args = ["-m", "resnet_bk_hf.cli", "train", config, "--set", f"training.output_dir={run_dir}"]
    for override in overrides:
        train_args += ["--set", override]
    if accelerate_config is None:
        cmd = [sys.executable, *train_args]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", accelerate_config,
               "--num_processes", str(gpus), "--main_process_port", str(port), *train_args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(gpus))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    start = time.time()
    log_path = out / f"{name}.log"
    with open(log_path, "w") as log:
        try:
            code = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    seconds = time.time() - start
    record = {"command": " ".join(cmd), "exit_code": code, "wall_seconds": round(seconds, 1),
              "log_tail": log_path.read_text()[-2500:]}
    summary = run_dir / "train_summary.json"
    if summary.is_file():
        record["summary"] = json.loads(summary.read_text())
    losses = {}
    log_file = run_dir / "train_log.jsonl"
    if log_file.is_file():
        for line in log_file.read_text().splitlines():
            entry = json.loads(line)
            if "loss" in entry:
                losses[entry["step"]] = entry["loss"]
    record["losses"] = losses
    print(f"   exit {code} after {seconds:.0f}s; {len(losses)} logged steps", flush=True)
    return record


def smoothed(values, width=10):
    return [statistics.fmean(values[max(0, i - width + 1):i + 1]) for i in range(len(values))]


def zero_compare(out: Path, steps: int, timeout: int, only=None):
    import torch
    runs = {k: v for k, v in ZERO_RUNS.items() if not only or k in only}
    n_gpus = torch.cuda.device_count()
    results = {"device": torch.cuda.get_device_name(0) if n_gpus else None, "gpus_visible": n_gpus,
               "config": ZERO_CONFIG, "max_steps": steps, "runs": {}}
    for index, (name, (gpus, accel, accumulation, seed)) in enumerate(runs.items()):
        if gpus > n_gpus:
            results["runs"][name] = {"skipped": f"needs {gpus} GPUs, {n_gpus} visible"}
            continue
        overrides = [f"training.max_steps={steps}", f"training.gradient_accumulation_steps={accumulation}",
                     f"training.seed={seed}", f"training.data_seed={seed}"]
        results["runs"][name] = launch(name, gpus, accel, ZERO_CONFIG, out, overrides, timeout, 29500 + index)
        (out / "zero_compare.json").write_text(json.dumps(results, indent=1))
    summarize(results, out)


def zero_merge(out: Path, paths):
    """One zero_compare.json from several calls' files (e.g. a run added in a later device call); the runs of
    later files replace those of the same name."""
    merged = None
    for path in paths:
        results = json.loads(Path(path).read_text())
        if merged is None:
            merged = results
        elif (results["device"], results["config"], results["max_steps"]) != \
                (merged["device"], merged["config"], merged["max_steps"]):
            raise SystemExit(f"{path}: another device, config or step count than {paths[0]}: not comparable")
        else:
            merged["runs"].update(results["runs"])
    merged["merged_from"] = [str(p) for p in paths]
    summarize(merged, out)


def summarize(results, out: Path):
    """Compare every curve with the 1-GPU one (the second seed says how large a difference is noise);
    writes zero_compare.json and the figure, prints the table."""
    reference = results["runs"].get("1gpu", {}).get("losses", {})
    reference = {int(s): v for s, v in reference.items()}          # JSON keys are strings after a reload
    tail = max(1, results["max_steps"] // 3)
    for name, record in results["runs"].items():
        losses = record["losses"] = {int(s): v for s, v in record.get("losses", {}).items()}
        common = sorted(set(losses) & set(reference))
        if not common:
            continue
        a = smoothed([reference[s] for s in common])
        b = smoothed([losses[s] for s in common])
        record["vs_1gpu"] = {
            "steps_compared": len(common),
            "mean_abs_diff_smoothed_last_third": statistics.fmean(abs(x - y) for x, y in zip(a[-tail:], b[-tail:])),
            "max_abs_diff_raw": max(abs(reference[s] - losses[s]) for s in common),
            "final_loss_mean_last_10": statistics.fmean(losses[s] for s in common[-10:]),
        }
        summary = record.get("summary", {})
        record["peak_memory_gib_per_gpu"] = [round(b / 2**30, 3) if b else None
                                             for b in summary.get("peak_memory_bytes_per_device", [])]
        record["median_step_seconds"] = summary.get("median_step_seconds")
        record["tokens_per_second"] = summary.get("tokens_per_second")
    out.mkdir(parents=True, exist_ok=True)
    (out / "zero_compare.json").write_text(json.dumps(results, indent=1))
    plot(results, out / "zero_compare.png")
    table = [(n, r.get("exit_code"), r.get("vs_1gpu", {}).get("mean_abs_diff_smoothed_last_third"),
              r.get("vs_1gpu", {}).get("final_loss_mean_last_10"), r.get("peak_memory_gib_per_gpu"),
              r.get("tokens_per_second")) for n, r in results["runs"].items()]
    print("run, exit, |smoothed diff| last third vs 1gpu, final loss, peak GiB per GPU, tokens/s")
    for row in table:
        print(*row, sep=" | ")


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, record in results["runs"].items():
        losses = record.get("losses", {})
        if losses:
            steps = sorted(losses)
            ax.plot(steps, smoothed([losses[s] for s in steps]), label=name, lw=1.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("train loss (10-step mean, nats/token)")
    ax.set_title("ResNet-BK 28M, effective batch 16 x 512: launch settings compared")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def train_1b(out: Path, steps: int, timeout: int):
    """ZeRO-3 + CPU offload first; then, as a yardstick, the same model on the GPU alone (bf16, AdamW states
    on the GPU: about 17 GB for 1.05B parameters), with what is left of the time."""
    import torch
    results = {"device": torch.cuda.get_device_name(0), "config": BIG_CONFIG, "steps": steps, "runs": {}}
    deadline = time.time() + timeout
    settings = [("zero3-offload", "examples/accelerate/deepspeed_zero3_offload.yaml"), ("gpu-only", None)]
    for name, accelerate_config in settings:
        left = int(deadline - time.time())
        if left < 90:
            results["runs"][name] = {"skipped": f"only {left}s left"}
            continue
        record = launch(name, 1, accelerate_config, BIG_CONFIG, out, [f"training.max_steps={steps}"],
                        left if name == "gpu-only" else int(timeout * 0.65))
        summary = record.get("summary", {})
        record.update(parameters=summary.get("parameters"),
                      peak_gpu_memory_gib=[round(b / 2**30, 3) if b else None
                                           for b in summary.get("peak_memory_bytes_per_device", [])],
                      median_step_seconds=summary.get("median_step_seconds"),
                      tokens_per_second=summary.get("tokens_per_second"),
                      host_peak_rss_gib_all_children_so_far=round(
                          resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2))
        results["runs"][name] = record
        (out / "train_1b.json").write_text(json.dumps(results, indent=1))
        print({k: record.get(k) for k in ("exit_code", "parameters", "peak_gpu_memory_gib", "median_step_seconds",
                                          "tokens_per_second", "host_peak_rss_gib_all_children_so_far")}, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", choices=["zero-compare", "zero-merge", "train-1b"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--timeout", type=int, default=None,
                        help="seconds: per run (zero-compare, default 110) or the whole job (train-1b, default 540)")
    parser.add_argument("--only", default=None, help=f"comma-separated runs of zero-compare, from {list(ZERO_RUNS)} "
                        "(default: 1gpu,1gpu-seed1,2gpu-zero2,2gpu-zero3)")
    parser.add_argument("--merge", action="append", default=[],
                        help="zero-merge: a zero_compare.json to merge (repeat; later files win on equal run names)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.job == "zero-compare":
        only = args.only.split(",") if args.only else ["1gpu", "1gpu-seed1", "2gpu-zero2", "2gpu-zero3"]
        zero_compare(out, args.steps or 100, args.timeout or 110, only)
    elif args.job == "zero-merge":
        if not args.merge:
            parser.error("zero-merge needs --merge FILE (twice or more)")
        zero_merge(out, args.merge)
    else:
        train_1b(out, args.steps or 10, args.timeout or 540)


if __name__ == "__main__":
    main()
