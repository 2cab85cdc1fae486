"""The one place that chooses a BK scan backend and owns every fallback (shapes: `ops/bk/__init__.py`).

Which backend runs, first rule that applies:

1. `forced_backend(name)` is active (a context manager; the ONNX export forces "parallel"): that one.
2. The call's `backend` argument, when it is not "auto" (a BKLayer passes its `scan_backend`, which a model
   fills from `ResNetBKConfig.scan_backend`).
3. `backend="auto"` and the environment variable RESNET_BK_SCAN_BACKEND is set to a backend name: that one.
   (An explicit argument wins over the variable; the variable is read on every call.)
4. "auto": "triton" for CUDA tensors when Triton imports, else "recurrent".

Then the fallbacks, the same for every caller:

* "triton" with any float64 input or state -> "recurrent" (the exact path: the kernels keep their state in
  float32, and float64 is what references and gradchecks ask for).
* `causal_green` (diag mode) has no kernel of its own: "triton" runs the vectorised "parallel" form (log-depth
  Mobius doubling), which is also what "auto" picks on CUDA; the CPU default is "recurrent".

Backends (each function in its own file; `naive.py` is the readable definition):

    naive      autograd through a Python loop: the reference, slow on purpose
    recurrent  loop without a graph + hand-written exact backward (CPU default; exact in float64)
    triton     fused Triton kernels (CUDA default), tuned by a `ScanConfig` (`scan_config.py`)
    parallel   log-depth doubling in real arithmetic (the ONNX export's form; diag mode on CUDA)
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional, Tuple, Union

import torch

from .naive import causal_green_naive, causal_resolvent_scan_naive
from .parallel import causal_green_parallel, causal_resolvent_scan_parallel
from .recurrent import causal_green_recurrent, causal_resolvent_scan_recurrent
from .scan_config import ScanConfig
from .state import BKState

BACKENDS = ("auto", "naive", "recurrent", "triton", "parallel")
BACKEND_ENV_VAR = "RESNET_BK_SCAN_BACKEND"

# Set only by `forced_backend`. A module global, not a context variable: torch.compile reads it without a
# graph break (it guards on the value). Process-wide while the `with` block runs.
_forced: Optional[str] = None


def _check_name(backend: str, source: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"scan backend must be one of {BACKENDS}, got {backend!r} (from {source})")


@contextlib.contextmanager
def forced_backend(backend: str) -> Iterator[str]:
    """Every BK scan inside the block runs `backend`, whatever a layer or the environment asks for.

    For the ONNX export (`forced_backend("parallel")`) and for comparisons; nothing in a model or its config
    changes. Blocks nest; the outer choice comes back on exit.
    """
    global _forced
    _check_name(backend, "forced_backend")
    previous, _forced = _forced, backend
    try:
        yield backend
    finally:
        _forced = previous


def triton_available() -> bool:
    try:
        from . import triton  # noqa: F401
    except Exception:  # ImportError, or Triton present but broken
        return False
    return True


def resolve_backend(backend: Optional[str], device_type: str) -> str:
    """The backend a call with this `backend` argument ("auto" or None alike) runs for tensors on
    `device_type`, by the rules of the module docstring (before the float64 fallback, which needs the data)."""
    if _forced is not None:
        backend = _forced
    elif backend is None or backend == "auto":
        backend = os.environ.get(BACKEND_ENV_VAR) or "auto"
        _check_name(backend, f"the environment variable {BACKEND_ENV_VAR}")
    else:
        _check_name(backend, "the backend argument")
    if backend == "auto":
        return "triton" if device_type == "cuda" and triton_available() else "recurrent"
    if backend == "triton" and not triton_available():
        raise RuntimeError("scan backend 'triton' was asked for but Triton cannot be imported")
    return backend


def _any_float64(*tensors: Optional[torch.Tensor]) -> bool:
    return any(t is not None and t.dtype == torch.float64 for t in tensors)


def as_scan_config(scan_config: Union[ScanConfig, dict, None]) -> Optional[ScanConfig]:
    """None (= the tuned `default_config(P, K)`), a ScanConfig, or a dict of its fields (checked here)."""
    if scan_config is None or isinstance(scan_config, ScanConfig):
        return scan_config
    if isinstance(scan_config, dict):
        return ScanConfig(**scan_config)
    raise TypeError(f"scan_config must be a ScanConfig, a dict of its fields or None, got {type(scan_config).__name__}")


def causal_resolvent_scan(a: torch.Tensor, hop: torch.Tensor, u: torch.Tensor, c_re: torch.Tensor,
                          c_im: torch.Tensor, z_re: torch.Tensor, z_im: torch.Tensor, *,
                          state: Optional[BKState] = None, backend: Optional[str] = "auto",
                          scan_config: Union[ScanConfig, dict, None] = None) -> Tuple[torch.Tensor, BKState]:
    """The causal BK scan: (o (B, N, H, P) in u's dtype, the BKState after the last position).

    `state` carries on from an earlier chunk (None = zeros). `scan_config` tunes the Triton kernels only.
    """
    name = resolve_backend(backend, u.device.type)
    if name == "triton" and _any_float64(a, hop, u, c_re, c_im, z_re, z_im, *(state or ())):
        name = "recurrent"
    if name == "triton":
        from .triton import causal_resolvent_scan_triton
        o, (g, y) = causal_resolvent_scan_triton(a, hop, u, c_re, c_im, z_re, z_im, state,
                                                 config=as_scan_config(scan_config))
        return o, BKState(g, y)
    scan = {"naive": causal_resolvent_scan_naive, "parallel": causal_resolvent_scan_parallel,
            "recurrent": causal_resolvent_scan_recurrent}[name]
    return scan(a, hop, u, c_re, c_im, z_re, z_im, state)


def causal_green(a: torch.Tensor, hop: torch.Tensor, z_re: torch.Tensor, z_im: torch.Tensor, *,
                 state: Optional[BKState] = None, backend: Optional[str] = "auto") -> Tuple[torch.Tensor, BKState]:
    """The causal diagonal alone (diag mode): (g (B, N, H, K, 2) real pairs, BKState with y of P = 0 channels).

    Only `state.g` is read; the returned state's y is empty, (B, H, K, 0, 2).
    """
    name = resolve_backend(backend, a.device.type)
    green = {"naive": causal_green_naive, "recurrent": causal_green_recurrent,
             "parallel": causal_green_parallel, "triton": causal_green_parallel}[name]
    g = green(a, hop, z_re, z_im, None if state is None else state.g)
    B, N, H = a.shape
    K = z_re.shape[-1]
    g_last = g[:, -1] if N > 0 else (state.g if state is not None else g.new_zeros(B, H, K, 2))
    return g, BKState(g_last, g.new_zeros(B, H, K, 0, 2))


__all__ = ["BACKENDS", "BACKEND_ENV_VAR", "as_scan_config", "causal_green", "causal_resolvent_scan",
           "forced_backend", "resolve_backend", "triton_available"]
