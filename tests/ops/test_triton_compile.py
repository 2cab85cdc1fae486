"""The Triton scan under torch.compile.

On any machine (no GPU needed): torch's Triton mutation analysis must not see a graph input written by any
scan kernel, else torch.compile(mode="reduce-overhead") skips CUDA graphs for every graph that holds a BK layer
(tests/ops/triton_mutation_probe.py says how it is checked). On a GPU: the compiled scan (fullgraph, both modes)
matches eager, and reduce-overhead records no CUDA-graph skip.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

triton = pytest.importorskip("triton")
tkw = pytest.importorskip("torch._higher_order_ops.triton_kernel_wrap")
if not (hasattr(tkw, "identify_accessed_tensors") or hasattr(tkw, "identify_mutated_tensors")):
    pytest.skip("this torch has no Triton mutation analysis", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
# what each pass must be found to write (so an analysis that finds nothing fails too)
MUST_WRITE = {"fwd": {"o_ptr", "x_ptr"}, "bwd": {"ubar_ptr", "abar_ptr", "hbar_ptr", "zb_ptr"}}


def test_no_scan_kernel_is_seen_writing_a_graph_input():
    env = {**os.environ, "TRITON_INTERPRET": "0", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "ops" / "triton_mutation_probe.py")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "assuming every input is mutated" not in run.stderr, run.stderr[-3000:]
    calls = json.loads(run.stdout.strip().splitlines()[-1])["calls"]
    assert len(calls) >= 10
    for c in calls:
        assert c["writes"], f"the analysis found no store in {c['kernel']}"
        assert not c["inputs_written"], f"{c['pass']} {c['kernel']} is seen writing {c['inputs_written']}"
    for pass_, names in MUST_WRITE.items():
        found = set().union(*(c["writes"] for c in calls if c["pass"] == pass_))
        assert names <= found, f"{pass_}: expected writes {names - found} not found"


def gpu_inputs(B=2, N=1000, H=4, P=64, K=8):
    """Fresh random scan inputs on the GPU (requires_grad) and a random dL/do."""
    gen = torch.Generator(device="cuda").manual_seed(int.from_bytes(os.urandom(4), "little"))
    rnd = lambda *s: torch.randn(*s, device="cuda", generator=gen)
    xs = [rnd(B, N, H) - 2.0, 0.2 + 0.4 * torch.rand(B, N, H, device="cuda", generator=gen), rnd(B, N, H, P),
          rnd(B, N, H, K), rnd(B, N, H, K), -torch.rand(H, K, device="cuda", generator=gen),
          0.8 + torch.rand(H, K, device="cuda", generator=gen)]
    return [x.requires_grad_() for x in xs], rnd(B, N, H, P)


def assert_close(got, want, tol=1e-5):
    for g, w in zip(got, want):
        assert torch.isfinite(g).all()
        assert ((g - w).abs().max() / w.abs().max()).item() < tol


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.compile of Triton kernels needs a GPU")
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_scan_matches_eager_and_keeps_cuda_graphs(mode):
    from torch._dynamo.utils import counters

    from resnet_bk_hf.ops.bk.triton import causal_resolvent_scan_triton as scan
    torch._dynamo.reset()
    counters.clear()
    xs, d_o = gpu_inputs()
    want = torch.autograd.grad(scan(*xs)[0], xs, d_o)
    f = torch.compile(lambda *x: scan(*x)[0], fullgraph=True, mode=mode)
    for _ in range(3):   # reduce-overhead records its graphs on a later call than the first
        got = torch.autograd.grad(f(*xs), xs, d_o)
    assert_close(got, want)
    assert counters["inductor"]["cudagraph_skips"] == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graphed_scan_matches_eager_on_new_inputs():
    # torch.cuda.make_graphed_callables records forward and backward once; later calls copy their inputs in
    # and replay (how benchmarks/kernel_bench.py --small-n times the GPU without the host's launch cost)
    from resnet_bk_hf.ops.bk.triton import causal_resolvent_scan_triton as scan
    xs, _ = gpu_inputs()
    graphed = torch.cuda.make_graphed_callables(lambda *x: scan(*x)[0], tuple(xs))
    for _ in range(2):
        xs, d_o = gpu_inputs()
        want = torch.autograd.grad(scan(*xs)[0], xs, d_o)
        assert_close(torch.autograd.grad(graphed(*xs), xs, d_o), want)
