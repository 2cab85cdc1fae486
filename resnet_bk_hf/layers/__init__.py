"""Layers with explicit constructor arguments, usable without a model config: the BK mixer, RMSNorm, the FFN.

They import `ops` (the scan), `theory.primes` (the positional potential's table) and the `validation` helpers
only; `modeling.py` builds them from a `ResNetBKConfig` (`bk_layer_arguments`).
"""
from .bk import BKHamiltonian, BKLayer, scan_precision
from .ffn import FeedForward
from .norm import RMSNorm

__all__ = ["BKHamiltonian", "BKLayer", "FeedForward", "RMSNorm", "scan_precision"]
