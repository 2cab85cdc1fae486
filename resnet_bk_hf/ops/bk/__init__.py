"""BK scan backends behind one function.

`causal_resolvent_scan(a, hop, u, c_re, c_im, z_re, z_im, state=None, backend=None)`
returns (o, final_state); see `naive.py` for shapes and the recurrence.

Backends:
    naive      autograd through a Python loop: the readable definition (slow)
    recurrent  loop without a graph + hand-written exact backward (CPU default)
    triton     fused Triton kernels (CUDA default when Triton is importable)
    parallel   log-depth doubling in real arithmetic (the ONNX export's form, `parallel.py`)
`backend=None` reads the environment variable RESNET_BK_SCAN_BACKEND
(auto | naive | recurrent | triton | parallel), default auto.
"""
from __future__ import annotations

import os
from typing import Optional

from .naive import (State, causal_green_naive, causal_resolvent_scan_naive, full_green_diagonal,
                    tridiagonal_hamiltonian)
from .parallel import causal_resolvent_scan_parallel
from .recurrent import causal_resolvent_scan_recurrent

BACKENDS = ("auto", "naive", "recurrent", "triton", "parallel")


def triton_available() -> bool:
    try:
        from . import triton  # noqa: F401
    except Exception:  # ImportError, or Triton present but broken
        return False
    return True


def resolve_backend(backend: Optional[str], device_type: str) -> str:
    backend = backend or os.environ.get("RESNET_BK_SCAN_BACKEND", "auto")
    if backend not in BACKENDS:
        raise ValueError(f"scan backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        if device_type == "cuda" and triton_available():
            return "triton"
        return "recurrent"
    if backend == "triton" and not triton_available():
        raise RuntimeError("scan backend 'triton' was asked for but Triton cannot be imported")
    return backend


def causal_resolvent_scan(a, hop, u, c_re, c_im, z_re, z_im, state: Optional[State] = None,
                          backend: Optional[str] = None):
    name = resolve_backend(backend, u.device.type)
    if name == "naive":
        return causal_resolvent_scan_naive(a, hop, u, c_re, c_im, z_re, z_im, state)
    if name == "parallel":
        return causal_resolvent_scan_parallel(a, hop, u, c_re, c_im, z_re, z_im, state)
    if name == "triton":
        from .triton import causal_resolvent_scan_triton
        return causal_resolvent_scan_triton(a, hop, u, c_re, c_im, z_re, z_im, state)
    return causal_resolvent_scan_recurrent(a, hop, u, c_re, c_im, z_re, z_im, state)


__all__ = ["BACKENDS", "State", "causal_green_naive", "causal_resolvent_scan", "causal_resolvent_scan_naive",
           "causal_resolvent_scan_parallel", "causal_resolvent_scan_recurrent", "full_green_diagonal",
           "resolve_backend", "triton_available", "tridiagonal_hamiltonian"]
