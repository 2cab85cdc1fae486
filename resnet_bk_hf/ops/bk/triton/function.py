"""`causal_resolvent_scan_triton`: the Triton BK scan as a differentiable function, and its autograd Function.

Forward: `forward.scan_forward` (o and the chunk-boundary states it saves); backward: `backward.scan_backward`
(every input gradient, exact). Inputs float32, bf16 or float16 (the state is float32 in registers whatever the
IO dtype; o comes back in u's dtype, the final state in float32). float64 is refused: the dispatcher
`resnet_bk_hf.ops.bk.causal_resolvent_scan` routes it to the exact recurrent path.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..scan_config import ScanConfig, default_config
from ..state import BKState
from .backward import scan_backward
from .forward import scan_forward
from .launches import contiguous, interpreting

IO_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


class TritonScanFn(torch.autograd.Function):
    """apply(a, hop, u, c_re, c_im, z_re, z_im, g0_pair, y0_pair, cfg) -> (o, g_N, y_N); g0_pair, y0_pair may be
    None (zero initial state, and no gradient for it)."""

    @staticmethod
    def forward(ctx, a, hop, u, c_re, c_im, z_re, z_im, g0_pair, y0_pair, cfg):
        B, N, H, P = u.shape
        K = z_re.shape[-1]
        a, hop, u, c_re, c_im, z_re, z_im = (contiguous(x) for x in (a, hop, u, c_re, c_im, z_re, z_im))
        f32 = torch.float32
        if g0_pair is None:
            g0 = torch.zeros(B, H, K, 2, dtype=f32, device=u.device)
            y0 = torch.zeros(B, H, K, P, 2, dtype=f32, device=u.device)
        else:
            g0, y0 = contiguous(g0_pair.to(f32)), contiguous(y0_pair.to(f32))
        o, Gs, Ys = scan_forward(a, hop, u, c_re, c_im, z_re, z_im, g0, y0, cfg)
        nC = Gs.shape[1] - 1
        gN = Gs[:, nC].reshape(B, H, K, 2).clone()
        yN = Ys[:, nC].reshape(B, H, K, P, 2).clone()
        ctx.save_for_backward(a, hop, u, c_re, c_im, z_re, z_im, Gs, Ys)
        ctx.has_state = g0_pair is not None
        ctx.state_dtypes = (None, None) if g0_pair is None else (g0_pair.dtype, y0_pair.dtype)
        ctx.cfg = cfg
        return o, gN, yN

    @staticmethod
    def backward(ctx, d_o, d_gN, d_yN):
        a, hop, u, c_re, c_im, z_re, z_im, Gs, Ys = ctx.saved_tensors
        B, N, H, P = u.shape
        K = z_re.shape[-1]
        f32 = torch.float32
        d_o = torch.zeros_like(u) if d_o is None else contiguous(d_o.to(u.dtype))
        d_gN = torch.zeros(B, H, K, 2, dtype=f32, device=u.device) if d_gN is None else contiguous(d_gN.to(f32))
        d_yN = torch.zeros(B, H, K, P, 2, dtype=f32, device=u.device) if d_yN is None else contiguous(d_yN.to(f32))
        (a_bar, hop_bar, u_bar, cr_bar, ci_bar, zr_bar, zi_bar, d_g0, d_y0) = scan_backward(
            a, hop, u, c_re, c_im, z_re, z_im, Gs, Ys, d_o, d_gN, d_yN, ctx.cfg, state_grads=ctx.has_state)
        grads = [a_bar, hop_bar, u_bar, cr_bar.to(c_re.dtype), ci_bar.to(c_im.dtype),
                 zr_bar.to(z_re.dtype), zi_bar.to(z_im.dtype)]
        if ctx.has_state:
            grads += [d_g0.to(ctx.state_dtypes[0]), d_y0.to(ctx.state_dtypes[1])]
        else:
            grads += [None, None]
        return tuple(grads) + (None,)


def _check_inputs(tensors) -> None:
    if all(t.dtype in IO_DTYPES for t in tensors):
        return
    bad = sorted({str(t.dtype).replace("torch.", "") for t in tensors if t.dtype not in IO_DTYPES})
    raise TypeError(f"the Triton scan takes float32, bfloat16 or float16 tensors, got {', '.join(bad)}; "
                    "resnet_bk_hf.ops.bk.causal_resolvent_scan (the dispatcher) routes float64 to the exact "
                    "recurrent path")


def causal_resolvent_scan_triton(a, hop, u, c_re, c_im, z_re, z_im, state: Optional[BKState] = None,
                                 config: Optional[ScanConfig] = None) -> Tuple[torch.Tensor, BKState]:
    """Fused Triton BK scan. Same contract as `causal_resolvent_scan_naive` (shapes and recurrence there).

    Inputs (and state) float32, bf16 or float16; anything else, float64 included, raises TypeError (the
    dispatcher `resnet_bk_hf.ops.bk.causal_resolvent_scan` sends float64 to the recurrent path). CUDA tensors,
    or CPU tensors under TRITON_INTERPRET=1 (RuntimeError otherwise). Returns o in u's dtype and the final
    state (g_N, y_N) in float32. N = 0 returns an empty o and the state unchanged (zeros when None), as float32.
    `config`: block sizes (default `default_config(P, K)`).
    """
    _check_inputs((a, hop, u, c_re, c_im, z_re, z_im) + (tuple(state) if state is not None else ()))
    if u.device.type != "cuda" and not interpreting():
        raise RuntimeError("the Triton scan needs CUDA tensors (or TRITON_INTERPRET=1 on CPU)")
    B, N, H, P = u.shape
    K = z_re.shape[-1]
    if N == 0:
        if state is None:
            state = (torch.zeros(B, H, K, 2, device=u.device), torch.zeros(B, H, K, P, 2, device=u.device))
        return u.new_empty(B, 0, H, P), BKState(state[0].float(), state[1].float())
    cfg = config or default_config(P, K)
    g0, y0 = (None, None) if state is None else state
    o, gN, yN = TritonScanFn.apply(a, hop, u, c_re, c_im, z_re, z_im, g0, y0, cfg)
    return o, BKState(gN, yN)


__all__ = ["IO_DTYPES", "TritonScanFn", "causal_resolvent_scan_triton"]
