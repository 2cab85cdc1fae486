"""The BK scan's carried state and the dtype rules every backend shares (contract: `ops/bk/__init__.py`)."""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch


class BKState(NamedTuple):
    """The recurrent state of one BK layer after its last position, complex numbers as real pairs.

    g: (B, H, K, 2)     the causal diagonal g_N per head and shift
    y: (B, H, K, P, 2)  the values' state y_N per head, shift and channel; P = 0 in diag mode, which carries
                        no values (one shape for both modes: the cache, reorder and ONNX code need no branch)

    Float32 (float64 in references), whatever the IO dtype. A NamedTuple, so `g, y = state` still works.
    """
    g: torch.Tensor
    y: torch.Tensor

    def detach(self) -> "BKState":
        return BKState(self.g.detach(), self.y.detach())

    def index_select(self, rows: torch.Tensor) -> "BKState":
        """Keep / reorder batch rows (beam search)."""
        return BKState(self.g.index_select(0, rows.to(self.g.device)), self.y.index_select(0, rows.to(self.y.device)))


def zero_state(batch: int, heads: int, shifts: int, channels: int, dtype=torch.float32, device=None) -> BKState:
    """The state before the first token: g = 0, y = 0 (channels = 0 in diag mode)."""
    return BKState(torch.zeros(batch, heads, shifts, 2, dtype=dtype, device=device),
                   torch.zeros(batch, heads, shifts, channels, 2, dtype=dtype, device=device))


def scan_dtypes(*tensors: Optional[torch.Tensor]) -> Tuple[torch.dtype, torch.dtype]:
    """(real, complex) dtype of the scan: float64 if any input is, else float32 (bf16 IO scans in float32)."""
    if any(t is not None and t.dtype == torch.float64 for t in tensors):
        return torch.float64, torch.complex128
    return torch.float32, torch.complex64


def state_to_complex(state: Optional[Tuple[torch.Tensor, torch.Tensor]], batch: int, heads: int, shifts: int,
                     channels: int, ctype: torch.dtype, device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Real-pair state -> complex (g0 (B, H, K), y0 (B, H, K, P)) in `ctype`; zeros when no state is given."""
    if state is None:
        g0 = torch.zeros(batch, heads, shifts, dtype=ctype, device=device)
        y0 = torch.zeros(batch, heads, shifts, channels, dtype=ctype, device=device)
        return g0, y0
    g, y = state
    rtype = torch.float64 if ctype == torch.complex128 else torch.float32
    return (torch.view_as_complex(g.to(rtype).contiguous()),
            torch.view_as_complex(y.to(rtype).contiguous()))


def state_to_real(g: torch.Tensor, y: torch.Tensor) -> BKState:
    """Complex (g, y) -> BKState of real pairs."""
    return BKState(torch.view_as_real(g), torch.view_as_real(y))


__all__ = ["BKState", "scan_dtypes", "state_to_complex", "state_to_real", "zero_state"]
