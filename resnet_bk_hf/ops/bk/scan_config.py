"""Block sizes and options of the Triton BK scan (`ops/bk/triton/`), and the tuning table behind them.

`ScanConfig` is a plain dataclass checked in `__post_init__`: every bad value raises a ValueError that names
the field ("ScanConfig.block_t must be a power of two >= 1, got 48"). `default_config(P, K)` gives the blocks
measured fastest for P channels per head and K shifts (docs/benchmarks.md).

This module imports nothing from Triton (nor torch), so a model config can validate a user's scan settings on
a machine without a GPU. The kernels use one algorithm each way (forward version 4, backward version 3; see
`ops/bk/triton/__init__.py`); the options of earlier versions are gone with them (commit 0faf570).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

DOT_PRECISIONS = ("auto", "ieee", "tf32x3", "tf32")

# fields that must be powers of two; those in _OPTIONAL may also be None (= inherit another field)
_POW2_FIELDS = ("block_t", "block_p", "chunk_block", "num_warps", "block_sub", "scan_tile",
                "bwd_block_p", "bwd_num_warps", "scan_num_warps")
_OPTIONAL = ("bwd_block_p", "bwd_num_warps", "scan_num_warps")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass
class ScanConfig:
    block_t: int = 32        # chunk length L (forward and backward: the backward restarts from its boundary states)
    block_p: int = 16        # channels per program of the forward passes
    chunk_block: int = 32    # chunk maps per step of the chunk-level scans
    # Elements (shifts x channels x chunk_block) per tile of the chunk-level scans: larger tiles put more
    # loads in flight per step of their sequential walk over chunks, and fewer programs share the work.
    scan_tile: int = 512
    num_warps: int = 4
    # Forward (version 4): positions per sub-chunk (a power of two >= 16, at most block_t; block_t // block_sub
    # sub-chunks per chunk) and the precision of its tl.dot ("ieee": float32 FMA; "tf32x3": tensor cores with
    # float32-level error; "tf32": tensor cores, ~5e-4 relative error per product; "auto": "tf32" for bf16 /
    # float16 IO, whose own rounding (~4e-3) is the larger, "tf32x3" for float32 IO). Sub-chunks of 16 with
    # "tf32x3" and the factored W below: forward 13% faster than sub-chunks of 32 with "ieee" and W entry by
    # entry on an H200 (docs/benchmarks.md).
    block_sub: int = 16
    dot_precision: str = "auto"
    # Forward output pass: W is formed as one tl.dot of per-row factors (the form of Mamba-2's SSD) in every
    # sub-chunk where the running log2-decay spans at most this many octaves for each shift, so that neither
    # factor leaves float32's range; elsewhere (|a| ~ 1e3, hop near 0) entry by entry. 0 = always entry by entry.
    w_factor_range: float = 120.0
    # The backward's tiles hold ~3x more live values than the forward's: its own channel block and warps
    # (None = the forward's).
    bwd_block_p: Optional[int] = None
    bwd_num_warps: Optional[int] = None
    # The backward's main pass is persistent: this many programs per SM (None = as many as its warps allow,
    # min(32, 64 // warps)) take work items from a counter; each owns a scratch slot of L x K x channel-block
    # complex.
    bwd_programs_per_sm: Optional[int] = None
    # warps of the chunk-level scans (None: the warps of the pass they belong to)
    scan_num_warps: Optional[int] = None
    # The backward's t loops: software-pipelining stages for their loads (1 = none; more = loads issued that
    # many steps ahead through shared memory, more registers).
    bwd_stages: int = 1

    def __post_init__(self):
        for name in _POW2_FIELDS:
            v = getattr(self, name)
            if v is None and name in _OPTIONAL:
                continue
            if not _is_int(v) or v < 1 or v & (v - 1):
                allowed = "a power of two >= 1" + (" or None" if name in _OPTIONAL else "")
                raise ValueError(f"ScanConfig.{name} must be {allowed}, got {v!r}")
        v = self.bwd_programs_per_sm
        if v is not None and (not _is_int(v) or v < 1):
            raise ValueError(f"ScanConfig.bwd_programs_per_sm must be an int >= 1 or None, got {v!r}")
        v = self.bwd_stages
        if not _is_int(v) or v < 1:
            raise ValueError(f"ScanConfig.bwd_stages must be an int >= 1, got {v!r}")
        v = self.w_factor_range
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 200:
            raise ValueError(f"ScanConfig.w_factor_range must be a number in [0, 200] (octaves; 0 = off), got {v!r}")
        if self.dot_precision not in DOT_PRECISIONS:
            raise ValueError(f"ScanConfig.dot_precision must be one of {DOT_PRECISIONS}, got {self.dot_precision!r}")
        check_sub_chunks(self)


def check_sub_chunks(cfg: ScanConfig) -> None:
    """ValueError unless 16 <= block_sub <= block_t (tl.dot needs every dimension >= 16; a sub-chunk cannot be
    longer than its chunk). Also run by the forward at each call, in case a config was edited after construction."""
    if cfg.block_sub < 16 or cfg.block_sub > cfg.block_t:
        raise ValueError(f"ScanConfig.block_sub must be a power of two with 16 <= block_sub <= block_t, "
                         f"got block_sub={cfg.block_sub}, block_t={cfg.block_t}")


def next_pow2(x: int) -> int:
    """The smallest power of two >= x (1 for x <= 1)."""
    return 1 << max(0, (int(x) - 1).bit_length())


def default_config(P: int, K: int) -> ScanConfig:
    """Blocks chosen by `kernel_bench.py` sweeps (docs/benchmarks.md) for P channels per head and K shifts.

    Backward (version 3; swept on an H100 at N=262144, d_model=1024, P=64, K=8): chunks of 64, 64 channels
    x 1 warp, 8 programs per SM. Forward (version 4; swept on an H200): sub-chunks of 16 positions with tf32x3
    dots for float32 IO and the factored W (ScanConfig's defaults), up to 64 channels (a whole head: its W
    matrix is per head) per program, 4 warps."""
    BK = next_pow2(K)
    bp = max(1, min(next_pow2(P), max(1, 256 // BK)))
    bp = max(bp, min(next_pow2(P), 64))
    bwd_bp = max(1, min(next_pow2(P), max(1, 512 // BK)))
    return ScanConfig(block_t=64, block_p=bp, chunk_block=16, num_warps=4,
                      bwd_block_p=bwd_bp, bwd_num_warps=1, bwd_programs_per_sm=8)


__all__ = ["DOT_PRECISIONS", "ScanConfig", "check_sub_chunks", "default_config", "next_pow2"]
