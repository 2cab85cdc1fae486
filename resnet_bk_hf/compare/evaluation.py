"""Perplexity and bits-per-byte on token streams; streaming evaluation that carries recurrent state.

Block evaluation (bench-valid): the stream is cut into windows of block_size + 1 tokens that overlap
by one, so every token after the first is predicted exactly once, each window starting with no
context. Streaming evaluation (long context): the stream is fed in chunks and the state is carried:
ResNet-BK through its `ResNetBKCache`, Mamba through `MambaStreamer` (below), a Transformer through
a sliding window (each chunk sees the previous `window - chunk` tokens as context).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm   # bars only on a terminal (disable=None): a log file gets none

LN2 = math.log(2.0)


def _summary(nll_sum: float, tokens: int, n_bytes: int) -> Dict:
    loss = nll_sum / max(tokens, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "bits_per_byte": nll_sum / LN2 / max(n_bytes, 1),
            "tokens": tokens, "bytes": n_bytes, "nll_sum": nll_sum}


@torch.no_grad()
def evaluate_blocks(model, stream: Sequence[int], byte_lengths: Sequence[int], block_size: int, batch_size: int,
                    device, max_tokens: Optional[int] = None, autocast_dtype=None, desc: str = "eval") -> Dict:
    """Token-level perplexity and bits-per-byte of `stream` (see the module docstring)."""
    if block_size < 1 or batch_size < 1:
        raise ValueError(f"block_size and batch_size must be >= 1, got {block_size}, {batch_size}")
    ids = torch.as_tensor(list(stream[: (max_tokens + 1) if max_tokens else None]), dtype=torch.long)
    if ids.numel() < 2:
        raise ValueError("the evaluation stream needs at least 2 tokens")
    nbytes = torch.as_tensor(list(byte_lengths), dtype=torch.long)
    starts = list(range(0, ids.numel() - 1, block_size))
    was_training = model.training
    model.eval()
    nll_sum, tokens, n_bytes = 0.0, 0, 0
    for i in tqdm(range(0, len(starts), batch_size), desc=desc, leave=False, disable=None):
        group = starts[i:i + batch_size]
        length = max(min(block_size, ids.numel() - 1 - s) for s in group)
        inputs = torch.zeros(len(group), length, dtype=torch.long)
        targets = torch.full((len(group), length), -100, dtype=torch.long)
        for row, s in enumerate(group):
            n = min(block_size, ids.numel() - 1 - s)
            inputs[row, :n] = ids[s:s + n]
            targets[row, :n] = ids[s + 1:s + 1 + n]
        inputs, targets = inputs.to(device), targets.to(device)
        with torch.autocast(device_type=torch.device(device).type, dtype=autocast_dtype,
                            enabled=autocast_dtype is not None):
            logits = model(input_ids=inputs, use_cache=False).logits
        nll = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                              reduction="sum")
        valid = targets != -100
        nll_sum += float(nll)
        tokens += int(valid.sum())
        n_bytes += int(nbytes[targets[valid].cpu()].sum())
    model.train(was_training)
    return _summary(nll_sum, tokens, n_bytes)


class MambaStreamer:
    """Chunked forward of a transformers MambaForCausalLM that carries conv and SSM state exactly.

    Why not the model's own cache: transformers' Mamba (5.x) restarts the SSM state from zero for
    every multi-token forward (its scan takes no initial state), so chunked prefill through its
    cache drops the carried state. This class recomputes the same layers from the model's weights
    and adds the carried state's contribution, which is linear: h_t = h_t(0) + (prod_{s<=t} dA_s) h_0.
    tests/compare/test_compare.py checks chunked == unchunked against the model's own forward.
    """

    def __init__(self, model):
        self.model = model
        self.backbone = model.backbone
        self.states: List[Optional[tuple]] = [None] * len(self.backbone.layers)

    @staticmethod
    def _scan(dA, dBu, C, h0):
        """dA, dBu: (B, L, E, N); C: (B, L, N); h0: (B, E, N) or None -> y (B, L, E), h_L (B, E, N)."""
        try:
            from mambapy.pscan import pscan
            hs = pscan(dA, dBu)
        except ImportError:
            h = torch.zeros_like(dBu[:, 0])
            out = []
            for t in range(dA.shape[1]):
                h = dA[:, t] * h + dBu[:, t]
                out.append(h)
            hs = torch.stack(out, dim=1)
        if h0 is not None:  # the carried state's contribution; cumprod of values in (0, 1] cannot overflow
            hs = hs + torch.cumprod(dA, dim=1) * h0[:, None]
        y = (hs @ C.unsqueeze(-1)).squeeze(-1)
        return y, hs[:, -1]

    def _mixer(self, mixer, x, state):
        B, L, _ = x.shape
        conv_state, ssm_state = state if state is not None else (None, None)
        xz = mixer.in_proj(x).transpose(1, 2)                            # (B, 2E, L)
        u, gate = xz.chunk(2, dim=1)
        k = mixer.conv1d.weight.shape[-1]
        if conv_state is None:
            conv_state = torch.zeros(B, u.shape[1], k - 1, dtype=u.dtype, device=u.device)
        u_ext = torch.cat([conv_state, u], dim=-1)
        new_conv_state = u_ext[:, :, -(k - 1):]
        u = F.conv1d(u_ext, mixer.conv1d.weight, mixer.conv1d.bias, groups=u.shape[1])   # (B, E, L)
        u = F.silu(u) if mixer.activation == "silu" else mixer.act(u)
        ssm_params = mixer.x_proj(u.transpose(1, 2))
        R, N = mixer.time_step_rank, mixer.ssm_state_size
        dt, Bm, Cm = torch.split(ssm_params, [R, N, N], dim=-1)
        dt = F.softplus(mixer.dt_proj(dt)).float()                     # (B, L, E)
        A = -torch.exp(mixer.A_log.float())                              # (E, N)
        dA = torch.exp(dt[..., None] * A)                                # (B, L, E, N)
        dBu = dt[..., None] * Bm.float()[:, :, None, :] * u.transpose(1, 2).float()[..., None]
        y, new_ssm = self._scan(dA, dBu, Cm.float(), ssm_state)
        y = y + u.transpose(1, 2).float() * mixer.D.float()
        y = y * F.silu(gate.transpose(1, 2).float())
        return mixer.out_proj(y.to(x.dtype)), (new_conv_state, new_ssm)

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        h = self.backbone.embeddings(input_ids)
        for i, block in enumerate(self.backbone.layers):
            residual = h.float() if getattr(block, "residual_in_fp32", False) else h
            out, self.states[i] = self._mixer(block.mixer, block.norm(h.to(block.norm.weight.dtype)), self.states[i])
            h = (residual + out).to(h.dtype)
        return self.model.lm_head(self.backbone.norm_f(h)).float()


@torch.no_grad()
def streaming_nll(model, arch: str, ids: Sequence[int], chunk: int, device, window: Optional[int] = None,
                  autocast_dtype=None, desc: str = "stream") -> torch.Tensor:
    """Per-token NLL (nats) of ids[1:] given everything before, fed `chunk` tokens at a time.

    resnet_bk: its recurrent cache carries the state; mamba: MambaStreamer; transformer: a sliding
    window of `window` tokens (default 2 * chunk): each chunk's tokens see the preceding
    window - chunk tokens. Returns a float32 CPU tensor of len(ids) - 1 values.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    ids = torch.as_tensor(list(ids), dtype=torch.long)
    T = ids.numel() - 1
    if T < 1:
        raise ValueError("need at least 2 tokens")
    model.eval()
    out = torch.empty(T, dtype=torch.float32)
    window = window or 2 * chunk
    if arch == "transformer" and window <= chunk:
        raise ValueError(f"window must exceed chunk for the sliding-window Transformer, got {window} <= {chunk}")
    cache = None
    streamer = MambaStreamer(model) if arch == "mamba" else None
    ctx = torch.autocast(device_type=torch.device(device).type, dtype=autocast_dtype,
                         enabled=autocast_dtype is not None)
    for s in tqdm(range(0, T, chunk), desc=desc, leave=False, disable=None):
        e = min(s + chunk, T)
        targets = ids[s + 1:e + 1].to(device)
        with ctx:
            if arch == "resnet_bk":
                res = model(input_ids=ids[s:e][None].to(device), cache=cache, use_cache=True)
                cache, logits = res.cache, res.logits[0]
            elif arch == "mamba":
                logits = streamer(ids[s:e][None].to(device))[0]
            elif arch == "transformer":
                lo = max(0, e - window)
                logits = model(input_ids=ids[lo:e][None].to(device), use_cache=False).logits[0, s - lo:]
            else:
                raise ValueError(f"streaming evaluation supports resnet_bk, mamba and transformer, got {arch!r}")
        out[s:e] = F.cross_entropy(logits.float(), targets, reduction="none").cpu()
    return out


def position_profile(nll: torch.Tensor, byte_lengths: Sequence[int], target_ids: Sequence[int],
                     bins: int = 24) -> Dict[str, List[float]]:
    """Perplexity and bits-per-byte in log-spaced bins of token position (1-based), for the figure."""
    T = nll.numel()
    edges = sorted({int(round(x)) for x in torch.logspace(0, math.log10(T + 1), bins + 1).tolist()})
    nb = torch.as_tensor([byte_lengths[i] for i in target_ids], dtype=torch.float64)
    prof = {"start": [], "end": [], "perplexity": [], "bits_per_byte": [], "tokens": []}
    for lo, hi in zip(edges[:-1], edges[1:]):
        sl = slice(lo - 1, min(hi - 1, T))
        if sl.stop <= sl.start:
            continue
        part = nll[sl].double()
        prof["start"].append(lo)
        prof["end"].append(sl.stop)
        prof["perplexity"].append(math.exp(float(part.mean())))
        prof["bits_per_byte"].append(float(part.sum()) / LN2 / max(float(nb[sl].sum()), 1.0))
        prof["tokens"].append(int(part.numel()))
    return prof
