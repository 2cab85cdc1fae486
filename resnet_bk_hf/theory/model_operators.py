"""The model's own operators: each BK layer's Hamiltonian per head, read from a forward pass through hooks.

For every BK layer a forward pre-hook records its input (the normalised hidden state and the masks, positions)
and asks the layer itself for the Hamiltonian of that input: `layer.hamiltonian(x, ...)`, the very step its
forward hands to the scan. Nothing here copies the layer's code or imports the model: any module with the
`BKLayerLike` face (a `hamiltonian` method, `layer_idx`, `h0_diag`) is read. Nothing is added to the forward.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Optional, Protocol, runtime_checkable

import torch
from torch import nn

from .operators import CTYPE, RTYPE


@runtime_checkable
class BKLayerLike(Protocol):
    """What these tools need of a BK layer (`resnet_bk_hf.layers.BKLayer` has it).

    `hamiltonian(x, *, attention_mask, prev_mask, doc_start, positions)` returns an object with fields
    v, hop (B, N, H) and z_re, z_im (H, K).
    """
    layer_idx: Optional[int]
    h0_diag: float

    def hamiltonian(self, x: torch.Tensor, **masks): ...


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


def bk_layers(model: nn.Module) -> list:
    """The model's BK layers, by layer index."""
    layers = [m for m in model.modules() if isinstance(m, BKLayerLike) and isinstance(m, nn.Module)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no BK layer (a module with a `hamiltonian` method)")
    return sorted(layers, key=lambda m: m.layer_idx if m.layer_idx is not None else -1)


def layer_hamiltonian(layer: BKLayerLike, x: torch.Tensor, layer_index: int, **masks) -> LayerHamiltonian:
    """The layer's Hamiltonian for its input x (B, N, D), in the float64 layout of `LayerHamiltonian`."""
    ham = layer.hamiltonian(x, **masks)
    z = torch.complex(ham.z_re.to(RTYPE), ham.z_im.to(RTYPE))
    return LayerHamiltonian(layer=layer_index, v=ham.v.to(RTYPE).transpose(1, 2).contiguous(),
                            hop=ham.hop.to(RTYPE).transpose(1, 2).contiguous(), z=z.to(CTYPE),
                            h0_diag=float(layer.h0_diag))


def _hamiltonian_arguments(layer, args, kwargs) -> tuple[torch.Tensor, dict]:
    """(x, masks) from the arguments of one forward call, wherever they were passed; the state is dropped."""
    bound = inspect.signature(layer.forward).bind(*args, **kwargs).arguments
    x = bound.pop("x")
    bound.pop("state", None)
    return x, bound


@torch.no_grad()
def model_hamiltonians(model: nn.Module, input_ids: torch.Tensor, attention_mask=None) -> list[LayerHamiltonian]:
    """Every layer's Hamiltonian for this input (one forward pass, eval mode kept as the caller set it)."""
    captured = {}
    layers = bk_layers(model)

    def hook_for(position):
        def hook(module, args, kwargs):
            x, masks = _hamiltonian_arguments(module, args, kwargs)
            index = module.layer_idx if module.layer_idx is not None else position
            captured[index] = layer_hamiltonian(module, x, index, **masks)
        return hook

    handles = [m.register_forward_pre_hook(hook_for(i), with_kwargs=True) for i, m in enumerate(layers)]
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return [captured[idx] for idx in sorted(captured)]
