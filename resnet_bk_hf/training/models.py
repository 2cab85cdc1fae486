"""One function builds every model a run trains: `build_model(spec, vocab_size, pad_token_id, eos_token_id)`.

A spec is either
    - the `model:` section of a training config (schema.py): ResNetBKConfig fields, or {pretrained: DIR}
      (`resnet-bk train`, the demo), or
    - an `ArchSpec`: ResNet-BK or a baseline (Mamba, Mamba-2, Llama, GPT-2) at given sizes (`resnet-bk compare`,
      whose compare/architectures.py sizes them to a parameter target).
Every model comes from `AutoModelForCausalLM.from_config` (under DeepSpeed ZeRO-3 it is built partitioned) or,
for a pretrained folder, `from_pretrained`; all have tied input/output embeddings.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Union

import torch

ARCHITECTURES = ("resnet_bk", "mamba", "mamba2", "transformer")
TRANSFORMER_FAMILIES = ("llama", "gpt2")


@dataclass
class ArchSpec:
    """An architecture at given sizes: width, depth and the per-family knobs."""

    arch: str
    hidden_size: int
    num_layers: int
    head_dim: int = 64                 # attention / BK heads: hidden_size // head_dim of them
    intermediate_size: Optional[int] = None   # FFN width (resnet_bk, transformer); None = family default
    num_shifts: int = 8                # ResNet-BK spectral shifts per head (state size per channel)
    state_size: int = 16               # Mamba N (Mamba-2: see mamba2_state_size)
    mamba2_state_size: int = 64
    mamba2_head_dim: int = 64
    mamba2_chunk_size: int = 256
    transformer_family: str = "llama"
    max_position_embeddings: int = 2048
    use_mambapy: bool = False
    extra: Dict = field(default_factory=dict)


ModelSpec = Union[ArchSpec, Mapping]


def model_config(spec: ModelSpec, vocab_size: int, pad_token_id: int, eos_token_id: int):
    """The transformers config of `spec`; raises ValueError / TypeError naming a bad field."""
    if isinstance(spec, ArchSpec):
        return arch_config(spec, vocab_size, pad_token_id, eos_token_id)
    kwargs = {k: v for k, v in spec.items() if k != "pretrained"}
    if "pretrained" in spec:
        from transformers import AutoConfig
        return AutoConfig.from_pretrained(spec["pretrained"], **kwargs)
    from ..configuration import ResNetBKConfig
    kwargs.setdefault("vocab_size", vocab_size)
    kwargs.setdefault("pad_token_id", pad_token_id)
    kwargs.setdefault("bos_token_id", eos_token_id)
    kwargs.setdefault("eos_token_id", eos_token_id)
    return ResNetBKConfig(**kwargs)


def build_model(spec: ModelSpec, vocab_size: int, pad_token_id: int, eos_token_id: int, meta: bool = False,
                config=None):
    """The causal LM of `spec` (see the module docstring); `meta=True` builds it on the meta device (sizes
    only); `config` skips building the config again."""
    from transformers import AutoModelForCausalLM
    config = config if config is not None else model_config(spec, vocab_size, pad_token_id, eos_token_id)
    if isinstance(spec, Mapping) and "pretrained" in spec:
        return AutoModelForCausalLM.from_pretrained(spec["pretrained"], config=config)
    with torch.device("meta") if meta else contextlib.nullcontext():
        return AutoModelForCausalLM.from_config(config)


def arch_config(spec: ArchSpec, vocab_size: int, pad_token_id: int, eos_token_id: int):
    """A transformers config for an ArchSpec; raises ValueError naming a bad field."""
    d, L = spec.hidden_size, spec.num_layers
    if spec.arch not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {spec.arch!r}")
    if d < 1 or L < 1:
        raise ValueError(f"hidden_size and num_layers must be >= 1, got {d} and {L}")
    common = dict(vocab_size=vocab_size, pad_token_id=pad_token_id, bos_token_id=eos_token_id,
                  eos_token_id=eos_token_id, tie_word_embeddings=True)
    if spec.arch == "resnet_bk":
        from ..configuration import ResNetBKConfig
        if d % spec.head_dim:
            raise ValueError(f"resnet_bk hidden_size={d} must be a multiple of head_dim={spec.head_dim}")
        return ResNetBKConfig(hidden_size=d, num_hidden_layers=L, num_heads=d // spec.head_dim,
                              num_shifts=spec.num_shifts, intermediate_size=spec.intermediate_size,
                              **spec.extra, **common)
    if spec.arch == "mamba":
        from transformers import MambaConfig
        return MambaConfig(hidden_size=d, num_hidden_layers=L, state_size=spec.state_size, expand=2,
                           conv_kernel=4, use_mambapy=spec.use_mambapy, **spec.extra, **common)
    if spec.arch == "mamba2":
        from transformers import Mamba2Config
        expand_d = 2 * d
        if expand_d % spec.mamba2_head_dim:
            raise ValueError(f"mamba2: 2 * hidden_size={expand_d} must be a multiple of "
                             f"mamba2_head_dim={spec.mamba2_head_dim}")
        return Mamba2Config(hidden_size=d, num_hidden_layers=L, state_size=spec.mamba2_state_size, expand=2,
                            head_dim=spec.mamba2_head_dim, num_heads=expand_d // spec.mamba2_head_dim, n_groups=1,
                            chunk_size=spec.mamba2_chunk_size, conv_kernel=4, **spec.extra, **common)
    if spec.transformer_family not in TRANSFORMER_FAMILIES:
        raise ValueError(f"transformer_family must be one of {TRANSFORMER_FAMILIES}, got {spec.transformer_family!r}")
    if d % spec.head_dim:
        raise ValueError(f"transformer hidden_size={d} must be a multiple of head_dim={spec.head_dim}")
    heads = d // spec.head_dim
    if spec.transformer_family == "llama":
        from transformers import LlamaConfig
        ffn = spec.intermediate_size or 32 * -(-8 * d // 3 // 32)
        return LlamaConfig(hidden_size=d, num_hidden_layers=L, num_attention_heads=heads, num_key_value_heads=heads,
                           intermediate_size=ffn, max_position_embeddings=spec.max_position_embeddings,
                           attn_implementation="sdpa", **spec.extra, **common)
    from transformers import GPT2Config
    return GPT2Config(n_embd=d, n_layer=L, n_head=heads, n_inner=spec.intermediate_size or 4 * d,
                      n_positions=spec.max_position_embeddings, attn_implementation="sdpa", **spec.extra, **common)
