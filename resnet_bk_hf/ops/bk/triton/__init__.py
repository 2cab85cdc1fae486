"""Fused Triton kernels of the causal BK scan: forward and exact backward (docs/design.md 2.3, 2.4, 2.6).

Imports Triton: the dispatcher (`resnet_bk_hf.ops.bk`) imports this package lazily. Same function as
`naive.causal_resolvent_scan_naive` (shapes and recurrence there):

    g_t = 1 / (a_t - z - hop_t^2 g_{t-1})            (K shifts per head, complex)
    y_t = g_t (u_t - hop_t y_{t-1})                  (K x P complex per head)
    o_t = sum_k Re(conj(C_{t,k}) y_t^(k))

Complex numbers are real pairs everywhere; the scan state is float32 in registers whatever the IO dtype
(float32, bf16 or float16). float64 is not taken (TypeError): the dispatcher sends it to the exact recurrent path.

Algorithm: the sequence is cut into chunks of L = `ScanConfig.block_t` positions. Every pass is parallel over
chunks, b * h and channel blocks: per-chunk passes reduce each chunk to a map (Moebius for g, affine for y),
a scan over the chunk maps gives the state at every chunk start (only these boundary states are saved for the
backward: (N / L) x K x P, not N x K x P), and a last pass recomputes the inside of each chunk from its start
state and writes the outputs. The backward does the same in reverse for the cotangents.

One algorithm each way, the fastest measured (docs/benchmarks.md):
    forward version 4   sub-chunks of `block_sub` positions as matrices (tl.dot), W factored where the decays
                        allow (forward.py)
    backward version 3  sequential walks in registers, persistent main pass with scratch slots (backward.py)

Files:
    complex_math.py   @triton.jit helpers: complex products, Moebius and affine maps and their combines
    chunk_scans.py    the scans over chunk maps and their host launchers
    forward.py        the forward kernels and `scan_forward`
    backward.py       the backward kernels and `scan_backward`
    launches.py       buffers and kernel launches; the test hooks `poison_buffers` and `record_launches`
    function.py       the autograd Function `TritonScanFn` and `causal_resolvent_scan_triton`
Block sizes: `ScanConfig` and `default_config(P, K)` in ops/bk/scan_config.py (importable without Triton).

Earlier versions: see docs/benchmarks.md and commit 0faf570 (resnet_bk_hf/kernels/triton_scan.py there):
forward versions 1 (tl.associative_scan inside a chunk) and 2 (a sequential t loop inside a chunk, the default
before version 4), backward versions 1 (associative scans inside a chunk) and 5 (sub-chunks as matrices, like
version 4; correct on the GPU but 1.3x version 3's forward + backward time on an H200), and version 4's
experiments g_stored (g written once per position) and w3d (W in one (L, L, K) tile).
"""
from ..scan_config import ScanConfig, default_config
from .backward import _bwd_main_seq_kernel, _g_final_kernel, _gbar_maps_kernel, _ybar_maps_seq_kernel
from .chunk_scans import _affine_scan_kernel, _g_scan_kernel
from .forward import _g_maps_chunked_kernel, _y_chunk_mm_kernel
from .function import TritonScanFn, causal_resolvent_scan_triton

# The kernels by role, for benchmarks that read their compiled register counts or compile them alone
# (benchmarks/kernel_bench.py --ptxas). "y_chunk" is both the forward's "y_maps" (MODE 0) and "output" (MODE 1)
# pass; "affine_scan" runs as "y_scan", "ybar_scan" and "gbar_scan" (pass names: launches.py).
KERNELS = {
    "g_maps": _g_maps_chunked_kernel,
    "g_scan": _g_scan_kernel,
    "y_chunk": _y_chunk_mm_kernel,
    "affine_scan": _affine_scan_kernel,
    "ybar_maps": _ybar_maps_seq_kernel,
    "bwd_main": _bwd_main_seq_kernel,
    "gbar_maps": _gbar_maps_kernel,
    "g_final": _g_final_kernel,
}

__all__ = ["KERNELS", "ScanConfig", "TritonScanFn", "causal_resolvent_scan_triton", "default_config"]
