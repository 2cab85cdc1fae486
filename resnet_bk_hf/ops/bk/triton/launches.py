"""Host-side plumbing of the Triton BK scan: the buffers its kernels write, and every kernel launch.

Every kernel is launched through `launch(pass_name, kernel, grid, *args, **meta)`, which is exactly
`kernel[grid](*args, **meta)` unless a test is recording. Every buffer a kernel writes is allocated by `empty` /
`empty_like` (uninitialised, as `torch.empty`) or `torch.zeros` where kernels accumulate into it.

Public hooks for tests and benchmarks (no effect unless used):

* `poison_buffers()`: a context manager; inside it, `empty` fills every buffer with NaN, so that an element a
  kernel fails to write shows up as NaN in the outputs (the checks of tests/ops/test_triton_scan.py run inside it).
* `record_launches(skip=None)`: a context manager yielding a list that receives one `Launch` per kernel launch
  made inside it (pass name, kernel, grid, arguments); `skip(launch)` returning True records that launch without
  running it (to check that a skipped pass shows up, or to hand the launches to torch's Triton analysis without
  a GPU: tests/ops/triton_mutation_probe.py).

Pass names, in launch order (`PASSES`): forward "g_maps", "g_scan", "y_maps", "y_scan", "output" and, when W is
factored (`ScanConfig.w_factor_range > 0`), "output_fallback" (the chunks whose factors would leave float32's
range, again entry by entry); backward "ybar_maps", "ybar_scan", "bwd_main", "gbar_maps", "gbar_scan", "g_final".
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch

FORWARD_PASSES = ("g_maps", "g_scan", "y_maps", "y_scan", "output", "output_fallback")
BACKWARD_PASSES = ("ybar_maps", "ybar_scan", "bwd_main", "gbar_maps", "gbar_scan", "g_final")
PASSES = FORWARD_PASSES + BACKWARD_PASSES


@dataclass
class Launch:
    """One kernel launch as `record_launches` saw it: `kernel[grid](*args, **meta)` for the pass `pass_name`."""
    pass_name: str
    kernel: Any               # the @triton.jit function (a JITFunction, or the interpreter's InterpretedFunction)
    grid: Tuple[int, ...]
    args: Tuple[Any, ...]
    meta: Dict[str, Any]      # constexprs and launch options (num_warps)
    ran: bool                 # False when `skip` held it back

    @property
    def kernel_name(self) -> str:
        return getattr(getattr(self.kernel, "fn", None), "__name__", repr(self.kernel))


_poison = False
_recorder: Optional[Tuple[List[Launch], Optional[Callable[[Launch], bool]]]] = None


@contextlib.contextmanager
def poison_buffers(enabled: bool = True) -> Iterator[None]:
    """Fill every buffer the scan's kernels write with NaN when it is allocated (inside the `with` block)."""
    global _poison
    old, _poison = _poison, enabled
    try:
        yield
    finally:
        _poison = old


@contextlib.contextmanager
def record_launches(skip: Optional[Callable[[Launch], bool]] = None) -> Iterator[List[Launch]]:
    """Record every kernel launch made inside the `with` block into the yielded list; launches for which
    `skip(launch)` is True are recorded with `ran=False` and not made."""
    global _recorder
    old, records = _recorder, []
    _recorder = (records, skip)
    try:
        yield records
    finally:
        _recorder = old


def launch(pass_name: str, kernel, grid, *args, **meta) -> None:
    if _recorder is None:
        kernel[grid](*args, **meta)
        return
    records, skip = _recorder
    rec = Launch(pass_name, kernel, tuple(grid), args, dict(meta), ran=True)
    if skip is not None and skip(rec):
        rec.ran = False
    else:
        kernel[grid](*args, **meta)
    records.append(rec)


def empty(*shape, dtype, device) -> torch.Tensor:
    x = torch.empty(*shape, dtype=dtype, device=device)
    return x.fill_(float("nan")) if _poison else x


def empty_like(x: torch.Tensor) -> torch.Tensor:
    return empty(*x.shape, dtype=x.dtype, device=x.device)


def contiguous(x: torch.Tensor) -> torch.Tensor:
    return x if x.is_contiguous() else x.contiguous()


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1): CPU tensors are then allowed."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


__all__ = ["BACKWARD_PASSES", "FORWARD_PASSES", "Launch", "PASSES", "contiguous", "empty", "empty_like",
           "interpreting", "launch", "poison_buffers", "record_launches"]
