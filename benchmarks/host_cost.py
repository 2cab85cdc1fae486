"""The host's share of one call of the Triton BK scan: forward and forward + backward with every kernel launch
replaced by a no-op, on CPU tensors, so that only Python, argument handling and buffer allocation are timed.
Below N = 16k the eager GPU time of the scan is mostly this (docs/benchmarks.md). Compares code trees, e.g. the
commit before a refactor (`git archive REV resnet_bk_hf | tar -x -C .before`) and the working tree; run the
trees alternately a few times: the CPU's timings move by tens of percent between runs.

    python3 benchmarks/host_cost.py OUT.json TREE [TREE ...] [--rounds 3] [--n 4096]

Prints a table (median microseconds per call over 200 calls, per tree and round) and writes it as JSON.
A tree that has resnet_bk_hf/kernels/triton_scan.py is the layout before the architecture split.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r'''
import importlib, json, os, sys, time
os.environ["TRITON_INTERPRET"] = "1"        # CPU tensors are allowed; the kernels themselves never run
root, n = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, root)
import torch
torch.set_num_threads(1)

class NoLaunch:
    def __getitem__(self, grid):
        return lambda *args, **meta: None

if os.path.isdir(os.path.join(root, "resnet_bk_hf", "kernels")):
    modules = [importlib.import_module("resnet_bk_hf.kernels.triton_scan")]
else:
    modules = [importlib.import_module(f"resnet_bk_hf.ops.bk.triton.{m}") for m in ("forward", "backward", "chunk_scans")]
for m in modules:
    for name in dir(m):
        if name.endswith("_kernel"):
            setattr(m, name, NoLaunch())
fn = (modules[0] if len(modules) == 1 else importlib.import_module("resnet_bk_hf.ops.bk.triton")).causal_resolvent_scan_triton
B, H, P, K = 1, 16, 64, 8
xs = [torch.randn(B, n, H), torch.rand(B, n, H), torch.randn(B, n, H, P), torch.randn(B, n, H, K),
      torch.randn(B, n, H, K), -torch.rand(H, K), 0.5 + torch.rand(H, K)]
xs = [x.requires_grad_() for x in xs]
do = torch.randn(B, n, H, P)

def median_us(f, reps=200):
    for _ in range(20):
        f()
    times = []
    for _ in range(reps):
        t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
    return sorted(times)[reps // 2] * 1e6

with torch.no_grad():
    fwd = median_us(lambda: fn(*[x.detach() for x in xs]))
fwdbwd = median_us(lambda: torch.autograd.grad(fn(*xs)[0], xs, do))
print(json.dumps({"fwd_us": fwd, "fwdbwd_us": fwdbwd}))
'''


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("trees", nargs="+")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=4096)
    args = parser.parse_args(argv)
    rows = []
    for round_ in range(1, args.rounds + 1):
        for tree in args.trees:
            run = subprocess.run([sys.executable, "-c", CHILD, str(Path(tree).resolve()), str(args.n)],
                                 capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": ""})
            rows.append({"tree": tree, "round": round_, "N": args.n, **json.loads(run.stdout.splitlines()[-1])})
            r = rows[-1]
            print(f"{tree:>24} round {round_}: fwd {r['fwd_us']:7.0f} us   fwd+bwd {r['fwdbwd_us']:7.0f} us", flush=True)
    Path(args.out).write_text(json.dumps({"cpu": os.uname().machine, "python": sys.version.split()[0],
                                          "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
