"""The block's feed-forward network: GELU MLP or SwiGLU."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FFN_TYPES = ("mlp", "swiglu")


class FeedForward(nn.Module):
    """down_proj(gelu(up_proj(x))), or down_proj(silu(gate) * up) with [gate, up] = up_proj(x) for SwiGLU."""

    def __init__(self, hidden_size: int, intermediate_size: int, ffn_type: str = "swiglu"):
        super().__init__()
        if ffn_type not in FFN_TYPES:
            raise ValueError(f"ffn_type must be one of {FFN_TYPES}, got {ffn_type!r}")
        self.swiglu = ffn_type == "swiglu"
        self.up_proj = nn.Linear(hidden_size, 2 * intermediate_size if self.swiglu else intermediate_size, bias=False)
        # Plain init (not depth-scaled like the mixer's out_proj): what the measured comparison runs used; the
        # depth-scaled variant learned more slowly where both were tried (docs/training.md, "init fix").
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up_proj(x)
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h)
        return self.down_proj(h)
