"""Which tensors torch.compile's Triton mutation analysis says each scan kernel writes (run as a script).

torch.compile treats a user Triton kernel as writing every tensor argument that its TTIR analysis traces from a
store back to; a graph input it thinks is written makes `mode="reduce-overhead"` skip CUDA graphs ("skipping
cudagraphs due to mutated inputs"). This script launches nothing: it records the kernel launches of one forward
and one backward with the default config (CPU tensors; `record_launches` of ops/bk/triton/launches.py, every
launch held back), then runs torch's analysis on each, for sm_90 when no GPU is present (TTIR needs a target,
not a device). Must run with TRITON_INTERPRET=0 (the interpreter's kernels have no TTIR). Prints one JSON object:
{"calls": [{"pass", "kernel", "writes", "inputs_written"}], "analysis": name of torch's function}.

    TRITON_INTERPRET=0 python tests/ops/triton_mutation_probe.py
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

from resnet_bk_hf.ops.bk.scan_config import default_config  # noqa: E402
from resnet_bk_hf.ops.bk.triton.backward import scan_backward  # noqa: E402
from resnet_bk_hf.ops.bk.triton.forward import scan_forward  # noqa: E402
from resnet_bk_hf.ops.bk.triton.launches import record_launches  # noqa: E402


def written_args(kernel, kwargs):
    """Names of the arguments torch's analysis says the kernel writes (both spellings of its API)."""
    if hasattr(tkw, "identify_accessed_tensors"):
        return "identify_accessed_tensors", sorted(
            d.name for d in tkw.identify_accessed_tensors(kernel, kwargs, {}).read_writes.writes)
    return "identify_mutated_tensors", sorted(tkw.identify_mutated_tensors(kernel, kwargs, {}))


def launch_kwargs(kernel, args, meta):
    """The kernel's arguments by name, constexpr defaults included, launch options (num_warps) left out."""
    kwargs = dict(zip(kernel.arg_names, args))
    kwargs.update({k: v for k, v in meta.items() if k in kernel.arg_names})
    for p in kernel.params:
        if p.name not in kwargs and p.default is not inspect.Parameter.empty:
            kwargs[p.name] = p.default
    return kwargs


def main():
    B, N, H, P, K = 1, 256, 2, 64, 8
    inputs = {"a": torch.randn(B, N, H), "hop": torch.rand(B, N, H), "u": torch.randn(B, N, H, P),
              "c_re": torch.randn(B, N, H, K), "c_im": torch.randn(B, N, H, K), "z_re": -torch.rand(H, K),
              "z_im": torch.rand(H, K)}
    cfg = default_config(P, K)
    g0, y0 = torch.zeros(B, H, K, 2), torch.zeros(B, H, K, P, 2)
    grads = {"d_o": torch.randn_like(inputs["u"]), "d_gN": torch.zeros(B, H, K, 2), "d_yN": torch.zeros_like(y0)}
    with record_launches(skip=lambda launch: True) as fwd_calls:
        o, Gs, Ys = scan_forward(*inputs.values(), g0, y0, cfg)
    with record_launches(skip=lambda launch: True) as bwd_calls:
        scan_backward(*inputs.values(), Gs, Ys, *grads.values(), cfg, state_grads=False)
    # graph inputs: of the forward graph, the inputs; of the backward graph, also the saved tensors and grads
    fwd_in = {id(t): n for n, t in inputs.items()}
    bwd_in = {**fwd_in, id(Gs): "Gs", id(Ys): "Ys", **{id(t): n for n, t in grads.items()}}
    out, api = [], None
    for pass_, calls, graph_in in (("fwd", fwd_calls, fwd_in), ("bwd", bwd_calls, bwd_in)):
        for rec in calls:
            kwargs = launch_kwargs(rec.kernel, rec.args, rec.meta)
            api, writes = written_args(rec.kernel, kwargs)
            out.append({"pass": pass_, "kernel": rec.kernel_name, "launch": rec.pass_name, "writes": writes,
                        "inputs_written": [graph_in[id(kwargs[n])] for n in writes if id(kwargs[n]) in graph_in]})
    print(json.dumps({"analysis": api, "calls": out}))


if __name__ == "__main__":
    main()
