"""One GPU session of the comparison (issue 5), inside a fixed time limit, packed into one archive.

    python benchmarks/compare_gpu.py --out DIR --deadline-s 540 --main examples/compare/gpu_10m.yaml \
        [--long-context examples/compare/gpu_long_context.yaml] [--lm-eval] [--quant-eval int8,int4] [--train-1b-s 150]
    python benchmarks/compare_gpu.py --out DIR --deadline-s 540 --long-context CONFIG   # long context alone

Phases (each `resnet-bk compare` is its own process, killed if it would outrun the deadline):
  0. optionally the 1.05B-parameter training measurement of issue 4 (benchmarks/train_gpu.py train-1b), alone;
  1. the first seed of the main config, every architecture one after the other with the GPU to itself:
     these runs give the throughput and memory figures;
  2. the other seeds (two shards) and the long-context runs (two shards) side by side on the GPU, with
     lm-eval on the first seed's saved models: losses do not depend on what else runs, throughput does,
     so these runs record how many processes shared the GPU and their tokens/s is not used;
  3. `--aggregate-only` for each config (statistics, fairness checks, figures);
  4. DIR/<name>.tar.gz: every result.json, summary, figure and log (no model weights, no checkpoints).
A run cut off by the deadline leaves no result.json and is absent from the archive; the log says so.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "resnet_bk_hf.cli"]


class Deadline:
    def __init__(self, seconds: float):
        self.end = time.time() + seconds

    def left(self, reserve: float = 0.0) -> float:
        return self.end - time.time() - reserve


def start(cmd, log_path: Path):
    print(f"[session] start: {' '.join(map(str, cmd))} > {log_path.name}", flush=True)
    log = open(log_path, "w")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    proc.log, proc.t0 = log, time.time()
    return proc


def wait_all(procs, deadline: Deadline, reserve: float):
    """Wait for every process; kill (process group) those still running `reserve` s before the deadline."""
    for proc in procs:
        try:
            proc.wait(timeout=max(1.0, deadline.left(reserve)))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            print(f"[session] killed at the deadline: {proc.args[3:]}", flush=True)
        proc.log.close()
        print(f"[session] exit {proc.returncode} after {time.time() - proc.t0:.0f}s: {proc.args[3:]}", flush=True)


def compare_cmd(config, out_dir, *extra):
    return [*CLI, "compare", config, "--output-dir", out_dir, "--no-aggregate", *extra]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for the archive (e.g. $OUT on the GPU machine)")
    parser.add_argument("--work", default="/tmp/compare_session", help="where runs, models and logs are written")
    parser.add_argument("--deadline-s", type=float, default=540)
    parser.add_argument("--main", default=None, help="compare config of the main runs")
    parser.add_argument("--long-context", default=None, help="compare config of the long-context runs")
    parser.add_argument("--lm-eval", action="store_true", help="lm-eval on the first seed's saved models")
    parser.add_argument("--quant-eval", default=None, metavar="WIDTHS",
                        help="weight-only quantization of the first seed's saved models, e.g. int8,int4 (quant-eval)")
    parser.add_argument("--train-1b-s", type=int, default=0, help="seconds for benchmarks/train_gpu.py train-1b")
    parser.add_argument("--shards", type=int, default=2, help="processes for the later seeds (and for long context)")
    parser.add_argument("--lm-eval-device", default="cuda")
    parser.add_argument("--name", default=None, help="archive name (default: the main config's file name)")
    args = parser.parse_args()
    if not (args.main or args.long_context):
        parser.error("give --main, --long-context or both")
    if (args.lm_eval or args.quant_eval) and not args.main:
        parser.error("--lm-eval and --quant-eval score the main runs' first-seed models: they need --main")

    import yaml
    deadline = Deadline(args.deadline_s)
    work, out = Path(args.work), Path(args.out)
    logs = work / "logs"
    for d in (work, logs, out):
        d.mkdir(parents=True, exist_ok=True)
    name = args.name or Path(args.main or args.long_context).stem
    main_cfg = yaml.safe_load(Path(args.main).read_text()) if args.main else {"seeds": []}
    seeds = main_cfg["seeds"]
    main_dir, lc_dir = work / name, work / (Path(args.long_context).stem if args.long_context else "none")
    pack_reserve = 45  # aggregation and packing

    if args.train_1b_s:
        proc = start([sys.executable, "benchmarks/train_gpu.py", "train-1b", "--out", work / "train_1b", "--timeout",
                      str(args.train_1b_s - 15)], logs / "train_1b.log")
        wait_all([proc], Deadline(min(args.train_1b_s, deadline.left(pack_reserve))), 0)

    if args.main:
        proc = start(compare_cmd(args.main, main_dir, "--seed", str(seeds[0])), logs / f"{name}_seed{seeds[0]}.log")
        wait_all([proc], deadline, pack_reserve)

    procs = []
    rest = [s for s in seeds[1:]]
    lc_shards = args.shards if args.long_context else 0
    n_train = (args.shards if rest else 0) + lc_shards
    shared = str(max(1, n_train + int(args.lm_eval) + int(bool(args.quant_eval))))
    if rest:
        for i in range(args.shards):
            procs.append(start(compare_cmd(args.main, main_dir, "--shard", f"{i}/{args.shards}", "--gpu-shared-by",
                                           shared), logs / f"{name}_shard{i}.log"))
    for i in range(lc_shards):
        procs.append(start(compare_cmd(args.long_context, lc_dir, "--shard", f"{i}/{lc_shards}", "--gpu-shared-by",
                                       shared), logs / f"long_context_shard{i}.log"))
    if args.lm_eval or args.quant_eval:
        size = next(iter(main_cfg["sizes"]))
        models = [main_dir / "runs" / size / arch / f"seed{seeds[0]}" / "model" for arch in main_cfg["architectures"]]
        model_args = [a for m in models if m.is_dir() for a in ("--model", m)]
        if model_args and args.lm_eval:
            cmd = [*CLI, "lm-eval", "--device", args.lm_eval_device, "--output-dir", work / f"lm_eval_{name}"]
            procs.append(start(cmd + model_args, logs / f"lm_eval_{name}.log"))
        if model_args and args.quant_eval:
            cmd = [*CLI, "quant-eval", "--weights", args.quant_eval, "--output-dir", work / f"quant_eval_{name}"]
            for key in ("device", "data_dir"):           # as the runs had them (default: CUDA when present)
                if main_cfg.get(key):
                    cmd += [f"--{key.replace('_', '-')}", main_cfg[key]]
            procs.append(start(cmd + model_args, logs / f"quant_eval_{name}.log"))
    wait_all(procs, deadline, pack_reserve)

    aggregations = [start([*CLI, "compare", args.main, "--output-dir", main_dir, "--aggregate-only"],
                          logs / f"aggregate_{name}.log")] if args.main else []
    if args.long_context:
        aggregations.append(start([*CLI, "compare", args.long_context, "--output-dir", lc_dir, "--aggregate-only"],
                                  logs / "aggregate_long_context.log"))
    wait_all(aggregations, deadline, 8)

    archive = out / f"{name}.tar.gz"
    skip = ("model", "checkpoints", "tmp")
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(work.rglob("*")):
            rel = path.relative_to(work)
            if path.is_file() and not any(part in skip or part.startswith("checkpoint-") for part in rel.parts):
                tar.add(path, arcname=str(rel))
    print(f"[session] wrote {archive} ({archive.stat().st_size / 1e6:.1f} MB), {deadline.left():.0f}s before the "
          f"deadline", flush=True)


if __name__ == "__main__":
    main()
