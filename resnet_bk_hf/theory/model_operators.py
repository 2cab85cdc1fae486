"""The model's own operators: each BK layer's Hamiltonian per head, read from a forward pass through hooks.

For every mixer, a forward pre-hook records its input (the normalised hidden state, mask, positions); the
Hamiltonian is then rebuilt from the mixer's own modules exactly as its forward does:
v = clamp(in_proj(x)[potential] + positional bias), a = h0_diag + v, hopping b_t, shifts z_{h,k}.
Nothing is added to the mixer's forward. `tests/test_theory_model.py` checks the rebuilt operators reproduce
the mixer's output, so a change to the mixer that this file does not follow fails a test.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..modeling import ResNetBKMixer
from .operators import CTYPE, RTYPE


@dataclass
class LayerHamiltonian:
    """One layer: potentials v and hopping (B, H, N) float64, shifts z (H, K) complex128, h0_diag.

    H_{b,h} = tridiagonal(h0_diag + v[b, h], hop[b, h]) (hop[..., t] couples t-1 and t) and the layer takes
    resolvents at z[h, k]. Padded positions are kept; their outgoing hopping is 0 as in the forward.
    """
    layer: int
    v: torch.Tensor
    hop: torch.Tensor
    z: torch.Tensor
    h0_diag: float

    @property
    def a(self) -> torch.Tensor:
        return self.h0_diag + self.v


def mixer_hamiltonian(mixer: ResNetBKMixer, x: torch.Tensor, attention_mask=None, prev_mask=None,
                      doc_start=None, positions=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(v, a, hop) as (B, N, H) in float32/64 and z (H, K) complex, for the mixer's input x (B, N, D)."""
    cfg = mixer.config
    B, N, _ = x.shape
    H = mixer.num_heads
    parts = dict(zip(mixer.split_sizes, mixer.in_proj(x).split(list(mixer.split_sizes.values()), dim=-1)))
    v = parts["potential"].float() if parts["potential"].dtype != torch.float64 else parts["potential"]
    if positions is not None:
        v = v + mixer.positional_bias(positions)
    if cfg.potential_clamp is not None:
        v = cfg.potential_clamp * torch.tanh(v / cfg.potential_clamp)
    hop = mixer.hopping(parts.get("hopping"), (B, N, H), v.dtype)
    if attention_mask is not None:
        m = attention_mask.to(hop.dtype)
        first = prev_mask.to(hop.dtype)[:, None] if prev_mask is not None else torch.ones_like(m[:, :1])
        hop = hop * torch.cat([first, m[:, :-1]], dim=1)[..., None]
    if doc_start is not None:   # packed documents (position_ids restart): no hopping across the boundary
        hop = hop * (~doc_start).to(device=hop.device, dtype=hop.dtype)[..., None]
    z_re, z_im = mixer.shifts()
    return v, cfg.h0_diag + v, hop, torch.complex(z_re.to(RTYPE), z_im.to(RTYPE))


def bk_mixers(model) -> list[ResNetBKMixer]:
    mixers = [m for m in model.modules() if isinstance(m, ResNetBKMixer)]
    if not mixers:
        raise ValueError(f"{type(model).__name__} has no ResNetBKMixer")
    return sorted(mixers, key=lambda m: m.layer_idx)


@torch.no_grad()
def model_hamiltonians(model, input_ids: torch.Tensor, attention_mask=None) -> list[LayerHamiltonian]:
    """Every layer's Hamiltonian for this input (one forward pass, eval mode kept as the caller set it)."""
    captured = {}

    def hook(module, args):
        # the mixer's positional arguments: x, attention_mask, prev_mask, state, doc_start, positions
        x, mask, prev_mask, _state, doc_start, positions = (list(args) + [None] * 6)[:6]
        captured[module.layer_idx] = mixer_hamiltonian(module, x, mask, prev_mask, doc_start, positions)

    handles = [m.register_forward_pre_hook(hook) for m in bk_mixers(model)]
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    layers = []
    for idx in sorted(captured):
        v, _a, hop, z = captured[idx]
        layers.append(LayerHamiltonian(layer=idx, v=v.to(RTYPE).transpose(1, 2).contiguous(),
                                       hop=hop.to(RTYPE).transpose(1, 2).contiguous(), z=z.to(CTYPE),
                                       h0_diag=float(model.config.h0_diag)))
    return layers
