"""Fused Triton kernels of the BK scan (imports Triton: the dispatcher imports this package lazily)."""
from .scan import BWD_LOOPS, TIME_LOOPS, ScanConfig, TritonScanFn, causal_resolvent_scan_triton, default_config

__all__ = ["BWD_LOOPS", "ScanConfig", "TIME_LOOPS", "TritonScanFn", "causal_resolvent_scan_triton", "default_config"]
