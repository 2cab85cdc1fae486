"""Which tensors torch.compile's Triton mutation analysis says each scan kernel writes (run as a script).

torch.compile treats a user Triton kernel as writing every tensor argument that its TTIR analysis traces from a
store back to; a graph input it thinks is written makes `mode="reduce-overhead"` skip CUDA graphs ("skipping
cudagraphs due to mutated inputs"). This script launches nothing: it records the kernel calls of one forward
and one backward (CPU tensors, `JITFunction.__getitem__` replaced by a recorder), then runs torch's analysis on
each call, for sm_90 when no GPU is present (TTIR needs a target, not a device). Must run with
TRITON_INTERPRET=0 (the interpreter's kernels have no TTIR). Prints one JSON object:
{"calls": [{"pass", "kernel", "writes", "inputs_written"}], "analysis": name of torch's function}.

    TRITON_INTERPRET=0 python tests/triton_mutation_probe.py TIME_LOOP BWD_LOOP
"""
import inspect
import json
import os
import sys

import torch
import triton

if os.environ.get("TRITON_INTERPRET", "0") == "1":
    sys.exit("run with TRITON_INTERPRET=0")

if not torch.cuda.is_available():
    from triton.backends.compiler import GPUTarget

    class _Hopper:   # the part of a Triton driver that TTIR generation asks for
        def get_current_target(self):
            return GPUTarget("cuda", 90, 32)

        def get_current_device(self):
            return 0

        def get_current_stream(self, device=None):
            return 0

    triton.runtime.driver.set_active(_Hopper())

from torch._higher_order_ops import triton_kernel_wrap as tkw  # noqa: E402

from resnet_bk_hf.ops.bk.triton import scan as ts  # noqa: E402


def written_args(kernel, kwargs):
    """Names of the arguments torch's analysis says the kernel writes (both spellings of its API)."""
    if hasattr(tkw, "identify_accessed_tensors"):
        return "identify_accessed_tensors", sorted(
            d.name for d in tkw.identify_accessed_tensors(kernel, kwargs, {}).read_writes.writes)
    return "identify_mutated_tensors", sorted(tkw.identify_mutated_tensors(kernel, kwargs, {}))


def main(time_loop, bwd_loop):
    calls = []

    def record(self, grid):
        def launch(*args, **kw):
            kwargs = dict(zip(self.arg_names, args))
            kwargs.update({k: v for k, v in kw.items() if k in self.arg_names})   # drop num_warps etc.
            for p in self.params:
                if p.name not in kwargs and p.default is not inspect.Parameter.empty:
                    kwargs[p.name] = p.default
            calls.append((self, kwargs))
        return launch

    triton.runtime.jit.JITFunction.__getitem__ = record
    B, N, H, P, K = 1, 256, 2, 64, 8
    inputs = {"a": torch.randn(B, N, H), "hop": torch.rand(B, N, H), "u": torch.randn(B, N, H, P),
              "c_re": torch.randn(B, N, H, K), "c_im": torch.randn(B, N, H, K), "z_re": -torch.rand(H, K),
              "z_im": torch.rand(H, K)}
    cfg = ts.default_config(P, K, time_loop, bwd_loop)
    g0, y0 = torch.zeros(B, H, K, 2), torch.zeros(B, H, K, P, 2)
    o, Gs, Ys = ts._forward(*inputs.values(), g0, y0, cfg)
    n_fwd = len(calls)
    grads = {"d_o": torch.randn_like(inputs["u"]), "d_gN": torch.zeros(B, H, K, 2), "d_yN": torch.zeros_like(y0)}
    ts._backward(*inputs.values(), Gs, Ys, *grads.values(), cfg, state_grads=False)
    # graph inputs: of the forward graph, the inputs; of the backward graph, also the saved tensors and grads
    fwd_in = {id(t): n for n, t in inputs.items()}
    bwd_in = {**fwd_in, id(Gs): "Gs", id(Ys): "Ys", **{id(t): n for n, t in grads.items()}}
    out, api = [], None
    for i, (kernel, kwargs) in enumerate(calls):
        api, writes = written_args(kernel, kwargs)
        graph_in = fwd_in if i < n_fwd else bwd_in
        out.append({"pass": "fwd" if i < n_fwd else "bwd", "kernel": kernel.fn.__name__, "writes": writes,
                    "inputs_written": [graph_in[id(kwargs[n])] for n in writes if id(kwargs[n]) in graph_in]})
    print(json.dumps({"analysis": api, "calls": out}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
