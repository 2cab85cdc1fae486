"""One BK scan forward + backward for Nsight Compute to profile (GPU only).

Warms up (compiles) first, then runs one forward + backward between cudaProfilerStart / Stop, so that

    ncu --clock-control none --profile-from-start off --set full -o $OUT/step python3 benchmarks/ncu_step.py

profiles exactly the kernels of one step with the default config (`default_config(64, K)`).
Inputs as in kernel_bench.py (batch 1, d_model 1024, K = 8, random potentials and hoppings).
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchmarks.kernel_bench import P_HEAD, bk_inputs  # noqa: E402
from resnet_bk_hf.ops.bk.scan_config import default_config  # noqa: E402
from resnet_bk_hf.ops.bk.triton import causal_resolvent_scan_triton  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--n", type=int, default=262144)
    p.add_argument("--d-model", type=int, default=1024)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    args = p.parse_args()
    cfg = default_config(P_HEAD, args.k)
    xs = bk_inputs(1, args.n, args.d_model, args.k, getattr(torch, args.dtype), grad=True)
    do = torch.randn(1, args.n, args.d_model // P_HEAD, P_HEAD, device="cuda", dtype=xs[2].dtype)

    def step():
        return torch.autograd.grad(causal_resolvent_scan_triton(*xs, config=cfg)[0], xs, do)

    for _ in range(2):
        step()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    grads = step()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()
    if not all(torch.isfinite(g).all().item() for g in grads):
        raise SystemExit("non-finite gradient")
    print(f"profiled one forward + backward: N={args.n} d_model={args.d_model} K={args.k} {args.dtype} {cfg}")


if __name__ == "__main__":
    main()
