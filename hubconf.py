"""PyTorch Hub entry points: `torch.hub.load(REPO_DIR, "resnet_bk", source="local")`.

    import torch
    model = torch.hub.load(".", "resnet_bk", source="local")                         # fresh, "small" sizes
    model = torch.hub.load(".", "resnet_bk", source="local", config="tiny")          # a named size
    model = torch.hub.load(".", "resnet_bk", source="local", pretrained="outputs/demo-model")   # saved weights
    tok = torch.hub.load(".", "tokenizer", source="local")

Every entry returns a `transformers` ResNetBKForCausalLM (or the shipped tokenizer); keyword
arguments other than `config` / `pretrained` override configuration fields.
"""
dependencies = ["torch", "transformers", "tokenizers", "safetensors"]

# Named sizes. "small" and "base" are the demo's CPU and GPU presets (the model: section of
# resnet_bk_hf/demo_config.yaml, and demo.CUDA_OVERRIDES).
CONFIGS = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_heads=2, num_shifts=2),
    "small": dict(hidden_size=128, num_hidden_layers=4, num_heads=4, num_shifts=4),
    "base": dict(hidden_size=512, num_hidden_layers=8, num_heads=8, num_shifts=8),
}


def resnet_bk(config: str = "small", pretrained=None, **overrides):
    """A ResNet-BK causal LM: from a saved directory (`pretrained`), or fresh with the named sizes."""
    from resnet_bk_hf import ResNetBKConfig, ResNetBKForCausalLM
    from resnet_bk_hf.tokenization import load_tokenizer

    if pretrained is not None:
        return ResNetBKForCausalLM.from_pretrained(pretrained, **overrides)
    if config not in CONFIGS:
        raise ValueError(f"config must be one of {sorted(CONFIGS)}, got {config!r}")
    tok = load_tokenizer()
    fields = dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.eos_token_id,
                  eos_token_id=tok.eos_token_id, **CONFIGS[config])
    fields.update(overrides)
    return ResNetBKForCausalLM(ResNetBKConfig(**fields))


def resnet_bk_tiny(**overrides):
    return resnet_bk("tiny", **overrides)


def resnet_bk_small(**overrides):
    return resnet_bk("small", **overrides)


def resnet_bk_base(**overrides):
    return resnet_bk("base", **overrides)


def tokenizer():
    """The shipped byte-level BPE tokenizer (8192 tokens)."""
    from resnet_bk_hf.tokenization import load_tokenizer
    return load_tokenizer()
