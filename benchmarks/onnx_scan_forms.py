"""Which form of the BK scan should the ONNX graph hold? Times two exported forms in ONNX Runtime.

    python benchmarks/onnx_scan_forms.py [--lengths 16 128 512 2048] [--repeats 5]

Forms, both exported with torch.onnx.export (the TorchScript exporter that Optimum uses) with a
dynamic sequence axis, both real arithmetic (ONNX has no complex dtype):
    sequential   an ONNX Loop of N iterations, one position per iteration (the recurrence as written)
    parallel     resnet_bk_hf.ops.bk.parallel: an ONNX Loop of ceil(log2 N) doubling steps over all positions
Shapes are the demo model's mixer (batch 1, 4 heads, 4 shifts, 32 channels per head). Prints the median
and the fastest time per call (the machine may be shared: the minimum is the least disturbed), the load
average, and the largest difference from the float64 reference.
"""
import argparse
import os
import statistics
import tempfile
import time
import warnings
from typing import List

import numpy as np
import onnxruntime as ort
import torch

from resnet_bk_hf.ops.bk.naive import causal_resolvent_scan_naive
from resnet_bk_hf.ops.bk.parallel import causal_resolvent_scan_parallel


@torch.jit.script
def sequential_scan_core(a: torch.Tensor, hop: torch.Tensor, u: torch.Tensor, c_re: torch.Tensor,
                         c_im: torch.Tensor, z_re: torch.Tensor, z_im: torch.Tensor) -> List[torch.Tensor]:
    B, N, H, P = u.shape
    K = z_re.shape[-1]
    g_re = torch.zeros([B, H, K], dtype=u.dtype)
    g_im = torch.zeros([B, H, K], dtype=u.dtype)
    y_re = torch.zeros([B, H, K, P], dtype=u.dtype)
    y_im = torch.zeros([B, H, K, P], dtype=u.dtype)
    outs: List[torch.Tensor] = []
    for t in range(N):
        b = hop[:, t].unsqueeze(-1)
        d_re = a[:, t].unsqueeze(-1) - z_re - b * b * g_re
        d_im = -z_im - b * b * g_im
        d2 = d_re * d_re + d_im * d_im
        g_re, g_im = d_re / d2, -d_im / d2
        r_re = u[:, t].unsqueeze(2) - b.unsqueeze(-1) * y_re
        r_im = -b.unsqueeze(-1) * y_im
        y_re = g_re.unsqueeze(-1) * r_re - g_im.unsqueeze(-1) * r_im
        y_im = g_re.unsqueeze(-1) * r_im + g_im.unsqueeze(-1) * r_re
        outs.append((c_re[:, t].unsqueeze(-1) * y_re + c_im[:, t].unsqueeze(-1) * y_im).sum(dim=2))
    return [torch.stack(outs, dim=1)]


class Sequential(torch.nn.Module):
    def forward(self, a, hop, u, c_re, c_im, z_re, z_im):
        return sequential_scan_core(a, hop, u, c_re, c_im, z_re, z_im)[0]


class Parallel(torch.nn.Module):
    def forward(self, a, hop, u, c_re, c_im, z_re, z_im):
        return causal_resolvent_scan_parallel(a, hop, u, c_re, c_im, z_re, z_im)[0]


def inputs(n, heads=4, shifts=4, channels=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = -2.0 + torch.randn(1, n, heads, generator=g)
    hop = torch.rand(1, n, heads, generator=g)
    u = torch.randn(1, n, heads, channels, generator=g)
    c_re, c_im = torch.randn(2, 1, n, heads, shifts, generator=g)
    z_re = torch.linspace(-3.5, -0.5, shifts).expand(heads, shifts).contiguous()
    z_im = torch.linspace(0.25, 2.0, shifts).expand(heads, shifts).contiguous()
    return a, hop, u, c_re, c_im, z_re, z_im


def export(module, path):
    names = ["a", "hop", "u", "c_re", "c_im", "z_re", "z_im"]
    dyn = {name: {1: "n"} for name in names[:5]}
    dyn["o"] = {1: "n"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs(8), path, input_names=names, output_names=["o"], dynamic_axes=dyn,
                          opset_version=17, dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(os.environ.get("ORT_THREADS", "2"))
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 128, 512, 2048])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {name: export(module, os.path.join(tmp, f"{name}.onnx"))
                    for name, module in (("sequential", Sequential()), ("parallel", Parallel()))}
        print(f"onnxruntime {ort.__version__}, torch {torch.__version__}, ORT intra-op threads "
              f"{os.environ.get('ORT_THREADS', '2')}, load average {os.getloadavg()[0]:.1f}")
        print("| N | form | ORT median ms | ORT min ms | max abs err vs float64 |")
        print("| --- | --- | --- | --- | --- |")
        for n in args.lengths:
            x = inputs(n)
            ref = causal_resolvent_scan_naive(*[t.double() for t in x])[0]
            feed = {name: t.numpy() for name, t in zip(["a", "hop", "u", "c_re", "c_im", "z_re", "z_im"], x)}
            times = {name: [] for name in sessions}
            for _ in range(args.repeats):   # interleaved, so that load changes hit both forms alike
                for name, sess in sessions.items():
                    start = time.perf_counter()
                    sess.run(None, feed)
                    times[name].append(time.perf_counter() - start)
            for name, sess in sessions.items():
                err = float(np.abs(sess.run(None, feed)[0] - ref.numpy()).max())
                print(f"| {n} | {name} | {1e3 * statistics.median(times[name]):.2f} | "
                      f"{1e3 * min(times[name]):.2f} | {err:.1e} |")


if __name__ == "__main__":
    main()
