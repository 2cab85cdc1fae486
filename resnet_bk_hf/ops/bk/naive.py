"""Readable references for the BK scan (docs/design.md 2.1, 2.2, 2.5): the definition the fast paths are tested
against. Plain PyTorch autograd over a Python loop on t, slow on purpose; the model reaches them only when
`backend="naive"` is asked for. Shapes and conventions: the contract in `ops/bk/__init__.py`.

    g_t = 1 / (a_t - z - hop_t^2 g_{t-1})
    y_t = g_t (u_t - hop_t y_{t-1})
    o_t = sum_k Re(conj(C_{t,k}) y_t^(k))

Only ratio recursions are used: determinants overflow (docs/design.md 2.2).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .state import BKState, scan_dtypes, state_to_complex, state_to_real


def causal_green_naive(a: torch.Tensor, hop: torch.Tensor, z_re: torch.Tensor, z_im: torch.Tensor,
                       g0: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Causal diagonal g_t = [(H_{1:t} - z)^-1]_{t,t} as real pairs (B, N, H, K, 2).

    `g0` (B, H, K, 2) is the value carried in from an earlier chunk (None = 0).
    """
    rtype, ctype = scan_dtypes(a, hop, z_re, z_im)
    B, N, H = a.shape
    z = torch.complex(z_re.to(rtype), z_im.to(rtype))
    if g0 is None:
        g = torch.zeros(B, H, z.shape[-1], dtype=ctype, device=a.device)
    else:
        g = torch.view_as_complex(g0.to(rtype).contiguous())
    out = []
    for t in range(N):
        b2 = (hop[:, t].to(rtype) ** 2)[..., None]
        g = 1.0 / (a[:, t].to(rtype)[..., None] - z - b2 * g)
        out.append(g)
    if not out:
        return torch.zeros(B, 0, H, z.shape[-1], 2, dtype=rtype, device=a.device)
    return torch.view_as_real(torch.stack(out, dim=1))


def causal_resolvent_scan_naive(a, hop, u, c_re, c_im, z_re, z_im,
                                state: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
                                ) -> Tuple[torch.Tensor, BKState]:
    """Reference causal BK scan. Returns (o (B, N, H, P) in u's dtype, the state after the last position)."""
    rtype, ctype = scan_dtypes(a, hop, u, c_re, c_im, z_re, z_im)
    B, N, H, P = u.shape
    K = z_re.shape[-1]
    z = torch.complex(z_re.to(rtype), z_im.to(rtype))              # (H, K)
    g, y = state_to_complex(state, B, H, K, P, ctype, u.device)
    outs = []
    for t in range(N):
        b = hop[:, t].to(rtype)[..., None]                         # (B, H, 1)
        g = 1.0 / (a[:, t].to(rtype)[..., None] - z - b * b * g)   # (B, H, K)
        y = g[..., None] * (u[:, t].to(rtype)[:, :, None, :] - b[..., None] * y)  # (B, H, K, P)
        c = torch.complex(c_re[:, t].to(rtype), c_im[:, t].to(rtype))            # (B, H, K)
        outs.append((c.conj()[..., None] * y).real.sum(dim=2))     # (B, H, P)
    o = torch.stack(outs, dim=1).to(u.dtype) if outs else u.new_zeros(B, 0, H, P)
    return o, state_to_real(g, y)


__all__ = ["causal_green_naive", "causal_resolvent_scan_naive"]
