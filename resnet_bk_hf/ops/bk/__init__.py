"""The BK scan: one contract, one dispatcher (`dispatch.py`), several backends.

Contract (every backend; B batch, N length, H heads, K shifts, P channels per head; complex numbers are
(re, im) pairs in a trailing axis of 2, because neither Triton nor ONNX has a complex dtype):

    a            (B, N, H)        real  diagonal of H: a_t = h0_diag + v_t
    hop          (B, N, H)        real  hop[:, t] couples positions t-1 and t (hop[:, 0] couples to the
                                        state carried in; 0 = start afresh, as after padding)
    u            (B, N, H, P)     real  values
    c_re, c_im   (B, N, H, K)     real  readout C_t
    z_re, z_im   (H, K)           real  shifts z = lambda + i eta, eta > 0
    state        BKState(g (B, H, K, 2), y (B, H, K, P, 2)) or None (= zeros)   (`state.py`)

    g_t = 1 / (a_t - z - hop_t^2 g_{t-1})                 (the causal diagonal [(H_{1:t} - z)^-1]_{t,t})
    y_t = g_t (u_t - hop_t y_{t-1})                       (the last entry of the prefix solve)
    o_t = sum_k Re(conj(C_{t,k}) y_t^(k))

    causal_resolvent_scan(a, hop, u, c_re, c_im, z_re, z_im, *, state=None, backend="auto", scan_config=None)
        -> (o (B, N, H, P) in u's dtype, BKState after position N)
    causal_green(a, hop, z_re, z_im, *, state=None, backend="auto")
        -> (g (B, N, H, K, 2), BKState(g_N, y of shape (B, H, K, 0, 2)))          (diag mode: no values)

The scan runs in float32 whatever the IO dtype (bf16 included), and in float64 when any input is float64.
Backend choice, the environment variable RESNET_BK_SCAN_BACKEND, `forced_backend` and the fallbacks:
`dispatch.py`. The per-backend functions (`naive.py`, `recurrent.py`, `parallel.py`, `triton/`) take the state
positionally and are for tests and benchmarks; everything else calls the dispatcher.
"""
from .dispatch import (BACKEND_ENV_VAR, BACKENDS, as_scan_config, causal_green, causal_resolvent_scan,
                       forced_backend, resolve_backend, triton_available)
from .naive import causal_green_naive, causal_resolvent_scan_naive
from .parallel import causal_green_parallel, causal_resolvent_scan_parallel
from .recurrent import causal_green_recurrent, causal_resolvent_scan_recurrent
from .scan_config import ScanConfig, default_config
from .state import BKState, scan_dtypes, state_to_complex, state_to_real, zero_state

__all__ = ["BACKENDS", "BACKEND_ENV_VAR", "BKState", "ScanConfig", "as_scan_config", "causal_green",
           "causal_green_naive", "causal_green_parallel", "causal_green_recurrent", "causal_resolvent_scan",
           "causal_resolvent_scan_naive", "causal_resolvent_scan_parallel", "causal_resolvent_scan_recurrent",
           "default_config", "forced_backend", "resolve_backend", "scan_dtypes", "state_to_complex",
           "state_to_real", "triton_available", "zero_state"]
