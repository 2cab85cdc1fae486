"""The BK scan as a sequential loop with a hand-written exact backward (docs/design.md 2.4).

Same functions as `naive.causal_resolvent_scan_naive` and `naive.causal_green_naive`, but the loop runs
without building an autograd graph and the gradient is the reverse linear scans of docs/design.md 2.4. This is
the CPU fast path, the exact path for float64 everywhere, and the blueprint the Triton kernel follows; it
stores g_t and y_t for the backward (fine on CPU, where lengths are small), whereas the Triton kernel
recomputes them per chunk.

Complex gradients use PyTorch's convention: the gradient of a real loss with
respect to complex w is dL/dRe(w) + i dL/dIm(w); through a holomorphic map
w = f(x) it pulls back as conj(f'(x)) * grad_w.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .state import BKState, scan_dtypes, state_to_complex


class CausalResolventScanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, hop, u, c_re, c_im, z_re, z_im, g0_pair, y0_pair):
        rtype, ctype = scan_dtypes(a, hop, u, c_re, c_im, z_re, z_im)
        B, N, H, P = u.shape
        K = z_re.shape[-1]
        state = None if g0_pair is None else (g0_pair, y0_pair)
        g, y = state_to_complex(state, B, H, K, P, ctype, u.device)
        z = torch.complex(z_re.to(rtype), z_im.to(rtype))
        a_, hop_, u_ = a.to(rtype), hop.to(rtype), u.to(rtype)
        c = torch.complex(c_re.to(rtype), c_im.to(rtype))            # (B, N, H, K)
        gs = torch.empty(B, N + 1, H, K, dtype=ctype, device=u.device)
        ys = torch.empty(B, N + 1, H, K, P, dtype=ctype, device=u.device)
        gs[:, 0], ys[:, 0] = g, y
        for t in range(N):
            b = hop_[:, t, :, None]
            g = 1.0 / (a_[:, t, :, None] - z - b * b * g)
            y = g[..., None] * (u_[:, t, :, None, :] - b[..., None] * y)
            gs[:, t + 1], ys[:, t + 1] = g, y
        # o_t = sum_k Re(conj(C) y) for all t at once
        o = (c.conj()[..., None] * ys[:, 1:]).real.sum(dim=3)
        ctx.save_for_backward(hop_, u_, c, gs, ys)
        ctx.has_state = g0_pair is not None
        ctx.dtypes = (a.dtype, hop.dtype, u.dtype, c_re.dtype, z_re.dtype)
        return o.to(u.dtype), torch.view_as_real(g).clone(), torch.view_as_real(y).clone()

    @staticmethod
    def backward(ctx, d_o, d_gN, d_yN):
        hop, u, c, gs, ys = ctx.saved_tensors
        B, N, H, P = u.shape
        rtype = hop.dtype
        # Carries: gradient w.r.t. g_t and y_t flowing back from later positions.
        g_bar = torch.view_as_complex(d_gN.to(rtype).contiguous()).clone() if d_gN is not None \
            else torch.zeros_like(gs[:, 0])
        y_bar = torch.view_as_complex(d_yN.to(rtype).contiguous()).clone() if d_yN is not None \
            else torch.zeros_like(ys[:, 0])
        d_o = torch.zeros_like(u) if d_o is None else d_o.to(rtype)
        # Direct readout terms for all t at once: dL/dy_t = dL/do_t * C_t, dL/dC_t = sum_p dL/do_t y_t
        y_direct = d_o[:, :, :, None, :] * c[..., None]                  # (B, N, H, K, P)
        c_bar = (d_o[:, :, :, None, :] * ys[:, 1:]).sum(dim=-1)          # (B, N, H, K)
        a_bar = torch.zeros(B, N, H, dtype=rtype, device=u.device)
        hop_bar = torch.zeros_like(a_bar)
        u_bar = torch.zeros_like(u)
        z_bar = torch.zeros_like(gs[0, 0])                              # (H, K)
        for t in range(N - 1, -1, -1):
            b = hop[:, t, :, None]                                       # (B, H, 1)
            g, g_prev, y_prev = gs[:, t + 1], gs[:, t], ys[:, t]
            y_bar = y_bar + y_direct[:, t]
            r = u[:, t, :, None, :] - b[..., None] * y_prev              # (B, H, K, P)
            r_bar = g.conj()[..., None] * y_bar
            g_bar = g_bar + (r.conj() * y_bar).sum(dim=-1)
            u_bar[:, t] = r_bar.real.sum(dim=2)
            w_bar = -(g * g).conj() * g_bar                              # g = 1/w
            a_bar[:, t] = w_bar.real.sum(dim=-1)
            z_bar = z_bar - w_bar.sum(dim=0)
            hop_bar[:, t] = (-(y_prev.conj() * r_bar).sum(dim=-1) - 2.0 * b * g_prev.conj() * w_bar).real.sum(dim=-1)
            y_bar = -b[..., None] * r_bar
            g_bar = -(b * b) * w_bar
        a_t, hop_t, u_t, c_t, z_t = ctx.dtypes
        grads = [a_bar.to(a_t), hop_bar.to(hop_t), u_bar.to(u_t), c_bar.real.to(c_t), c_bar.imag.to(c_t),
                 z_bar.real.to(z_t), z_bar.imag.to(z_t)]
        if ctx.has_state:
            grads += [torch.view_as_real(g_bar).clone(), torch.view_as_real(y_bar).clone()]
        else:
            grads += [None, None]
        return tuple(grads)


def causal_resolvent_scan_recurrent(a, hop, u, c_re, c_im, z_re, z_im,
                                    state: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
                                    ) -> Tuple[torch.Tensor, BKState]:
    g0, y0 = (None, None) if state is None else state
    o, gN, yN = CausalResolventScanFn.apply(a, hop, u, c_re, c_im, z_re, z_im, g0, y0)
    return o, BKState(gN, yN)


class CausalGreenFn(torch.autograd.Function):
    """g_t alone (diag mode): the g half of the scan above, forward and backward."""

    @staticmethod
    def forward(ctx, a, hop, z_re, z_im, g0_pair):
        rtype, ctype = scan_dtypes(a, hop, z_re, z_im)
        B, N, H = a.shape
        K = z_re.shape[-1]
        z = torch.complex(z_re.to(rtype), z_im.to(rtype))
        a_, hop_ = a.to(rtype), hop.to(rtype)
        gs = torch.empty(B, N + 1, H, K, dtype=ctype, device=a.device)
        gs[:, 0] = 0 if g0_pair is None else torch.view_as_complex(g0_pair.to(rtype).contiguous())
        for t in range(N):
            b = hop_[:, t, :, None]
            gs[:, t + 1] = 1.0 / (a_[:, t, :, None] - z - b * b * gs[:, t])
        ctx.save_for_backward(hop_, gs)
        ctx.has_state = g0_pair is not None
        ctx.dtypes = (a.dtype, hop.dtype, z_re.dtype, None if g0_pair is None else g0_pair.dtype)
        return torch.view_as_real(gs[:, 1:]).clone()

    @staticmethod
    def backward(ctx, d_g):
        hop, gs = ctx.saved_tensors
        B, N, H = hop.shape
        d_g = torch.view_as_complex(d_g.to(hop.dtype).contiguous())
        g_bar = torch.zeros_like(gs[:, 0])                               # carry: dL/dg_t from later positions
        a_bar, hop_bar = torch.zeros_like(hop), torch.zeros_like(hop)
        z_bar = torch.zeros_like(gs[0, 0])
        for t in range(N - 1, -1, -1):
            b = hop[:, t, :, None]
            g, g_prev = gs[:, t + 1], gs[:, t]
            w_bar = -(g * g).conj() * (g_bar + d_g[:, t])                # g = 1/w, w = a - z - b^2 g_prev
            a_bar[:, t] = w_bar.real.sum(dim=-1)
            z_bar = z_bar - w_bar.sum(dim=0)
            hop_bar[:, t] = (-2.0 * b * g_prev.conj() * w_bar).real.sum(dim=-1)
            g_bar = -(b * b) * w_bar
        a_t, hop_t, z_t, g0_t = ctx.dtypes
        g0_bar = torch.view_as_real(g_bar).to(g0_t) if ctx.has_state else None
        return a_bar.to(a_t), hop_bar.to(hop_t), z_bar.real.to(z_t), z_bar.imag.to(z_t), g0_bar


def causal_green_recurrent(a: torch.Tensor, hop: torch.Tensor, z_re: torch.Tensor, z_im: torch.Tensor,
                           g0: Optional[torch.Tensor] = None) -> torch.Tensor:
    """g_t as real pairs (B, N, H, K, 2); same contract as `naive.causal_green_naive`."""
    return CausalGreenFn.apply(a, hop, z_re, z_im, g0)
