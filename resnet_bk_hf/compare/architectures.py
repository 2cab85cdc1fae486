"""The architectures compared with ResNet-BK, built at a matched non-embedding parameter count.

Every model is a transformers `PreTrainedModel` with tied input/output embeddings:

    resnet_bk    ResNetBKForCausalLM (this package)
    mamba        transformers' MambaForCausalLM (Mamba-1)
    mamba2       transformers' Mamba2ForCausalLM (optional)
    transformer  transformers' LlamaForCausalLM (pre-RMSNorm, SwiGLU, RoPE, attention through
                 torch's scaled_dot_product_attention: attn_implementation="sdpa"), or
                 GPT2LMHeadModel (learned positions, GELU MLP, sdpa) with transformer_family="gpt2"

`size_model` picks the width (and then the FFN width) that brings the non-embedding parameter count
closest to a target; counts come from instantiating the model on the meta device, so they are the
real counts, not a formula. `forward_flops_per_token` is the analytic count (docs/results.md states
the formulas); its matmul part is checked against the built models in tests/compare/test_compare.py.
"""
from __future__ import annotations

import importlib.util
from typing import Dict

import torch

# ArchSpec and the one model builder live in training/models.py (`build_model` also builds the model of a
# `resnet-bk train` config); they are re-exported here for the sizing below and for older imports.
from ..training.models import ARCHITECTURES, TRANSFORMER_FAMILIES, ArchSpec, arch_config, build_model  # noqa: F401


def mambapy_available() -> bool:
    return importlib.util.find_spec("mambapy") is not None


def count_parameters(model) -> Dict[str, int]:
    """Total and non-embedding parameters: 'non-embedding' leaves out the token (and GPT-2 position) tables."""
    embeddings = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    wpe = getattr(getattr(model, "transformer", None), "wpe", None)
    if wpe is not None:
        embeddings.add(id(wpe.weight))
    sizes = {id(p): p.numel() for p in model.parameters()}   # tied weights appear once
    total = sum(sizes.values())
    return {"total": total, "non_embedding": total - sum(sizes.get(i, 0) for i in embeddings)}


def _count(spec: ArchSpec, vocab_size: int) -> int:
    return count_parameters(build_model(spec, vocab_size, 0, 1, meta=True))["non_embedding"]


def size_model(arch: str, target_non_embedding: int, num_layers: int, vocab_size: int, width_multiple: int = 64,
               ffn_multiple: int = 32, **spec_kwargs) -> ArchSpec:
    """The ArchSpec of `arch` with `num_layers` layers whose non-embedding count is closest to the target.

    Width runs over multiples of `width_multiple` (which must suit the heads); then, for the
    architectures with an FFN (resnet_bk, transformer), the FFN width over multiples of
    `ffn_multiple` to close the remaining gap. Mamba's width is its only knob.
    """
    if target_non_embedding < 1:
        raise ValueError(f"target_non_embedding must be >= 1, got {target_non_embedding}")
    if width_multiple < 1 or ffn_multiple < 1:
        raise ValueError(f"width_multiple and ffn_multiple must be >= 1, got {width_multiple}, {ffn_multiple}")

    def spec_at(d, ffn=None):
        return ArchSpec(arch=arch, hidden_size=d, num_layers=num_layers, intermediate_size=ffn, **spec_kwargs)

    # counts grow monotonically with the width: walk up until past the target
    best, best_err, d = None, None, width_multiple
    while True:
        n = _count(spec_at(d), vocab_size)
        err = abs(n - target_non_embedding)
        if best_err is None or err < best_err:
            best, best_err = d, err
        if n >= target_non_embedding or d > 64 * width_multiple * 64:
            break
        d += width_multiple
    spec = spec_at(best)
    if arch in ("resnet_bk", "transformer"):
        base = arch_config(spec, vocab_size, 0, 1)
        ffn0 = getattr(base, "intermediate_size", None) or getattr(base, "n_inner", None)
        lo, hi = ffn_multiple, 4 * ffn0 + ffn_multiple
        # count is affine in the FFN width: two probes give the slope, then round to the multiple
        n_lo, n_hi = _count(spec_at(best, lo), vocab_size), _count(spec_at(best, hi), vocab_size)
        slope = (n_hi - n_lo) / (hi - lo)
        ffn = lo + (target_non_embedding - n_lo) / slope
        candidates = {max(ffn_multiple, ffn_multiple * int(ffn // ffn_multiple) + k * ffn_multiple) for k in (0, 1)}
        spec = min((spec_at(best, f) for f in candidates),
                   key=lambda s: abs(_count(s, vocab_size) - target_non_embedding))
    return spec


def mamba_scan_path(model) -> str:
    """Which selective-scan implementation a transformers Mamba model runs (recorded in every result).

    The fast path needs the compiled mamba-ssm package; without it transformers uses mambapy's
    parallel scan when config.use_mambapy is set and mambapy is installed, else a sequential
    PyTorch loop over the sequence. `probe_mamba_scan_path` confirms it by running the model.
    """
    if importlib.util.find_spec("mamba_ssm") is not None:
        return "mamba_ssm-cuda-kernels"
    if getattr(model.config, "use_mambapy", False) and mambapy_available():
        return "mambapy-pscan"
    return "torch-sequential-loop"


def probe_mamba_scan_path(model, device) -> str:
    """Run one short training-mode forward and see whether mambapy's pscan was called."""
    expected = mamba_scan_path(model)
    if expected != "mambapy-pscan":
        return expected
    import mambapy.pscan as mp
    calls = []
    original = mp.pscan

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    mp.pscan = counting
    try:
        was_training = model.training
        model.train()
        with torch.no_grad():
            model(input_ids=torch.zeros(1, 8, dtype=torch.long, device=device), use_cache=False)
        model.train(was_training)
    finally:
        mp.pscan = original
    return "mambapy-pscan" if calls else "torch-sequential-loop (mambapy installed but not called)"


def forward_flops_per_token(config, arch: str, seq_len: int) -> Dict[str, float]:
    """Analytic forward FLOPs per token (multiply-add = 2 FLOPs), split into parts.

    `matmul` counts every weight matrix (2 FLOPs per weight); `mixer` the sequence mixing that has no
    weights (attention scores, scans, convolutions); `lm_head` the output projection. Norms,
    activations and residual adds are left out (a few per channel). Training ≈ 3 x forward.
    """
    V = config.vocab_size
    if arch == "resnet_bk":
        d, L, H, K, F = (config.hidden_size, config.num_hidden_layers, config.num_heads, config.num_shifts,
                         config.intermediate_size)
        in_width = H + (H if config.hopping_mode == "input" else 0) + d
        if config.mixer_mode == "resolvent":
            in_width += d + 2 * H * K
            # g recurrence per (head, shift); y update + readout per (channel, shift)
            mixer = 12 * H * K + 13 * d * K
            feat = 0
        else:
            mixer = 12 * H * K
            feat = 2 * H * K * d
        ffn = (3 if config.ffn_type == "swiglu" else 2) * d * F
        matmul = 2 * L * (d * in_width + d * d + feat + ffn)
        mixer *= L
    elif arch == "mamba":
        d, L, E, N = config.hidden_size, config.num_hidden_layers, config.intermediate_size, config.state_size
        R, k = int(config.time_step_rank), config.conv_kernel
        matmul = 2 * L * (d * 2 * E + E * (R + 2 * N) + R * E + E * d)
        # causal depthwise conv; scan: exp(dt A), dt*B*x, h = dA h + dBx, y = C.h (7 per state), D skip + gate
        mixer = L * (2 * k * E + 7 * E * N + 4 * E)
    elif arch == "mamba2":
        d, L, N, G = config.hidden_size, config.num_hidden_layers, config.state_size, config.n_groups
        E, Hh, Q, k = int(config.expand * d), config.num_heads, config.chunk_size, config.conv_kernel
        P = config.head_dim
        conv_dim = E + 2 * G * N
        matmul = 2 * L * (d * (E + conv_dim + Hh) + E * d)
        # SSD with chunk Q: intra-chunk quadratic part (causal half of Q per token) + chunk states + readout
        q = min(Q, seq_len)
        mixer = L * (2 * k * conv_dim + Hh * (q + 1) * (N + P) + 4 * E * N + 4 * E)
    elif arch == "transformer":
        if getattr(config, "model_type", "") == "gpt2":
            d, L, F = config.n_embd, config.n_layer, config.n_inner or 4 * config.n_embd
            ffn = 2 * d * F
        else:
            d, L, F = config.hidden_size, config.num_hidden_layers, config.intermediate_size
            ffn = 3 * d * F
        matmul = 2 * L * (4 * d * d + ffn)
        # QK^T and AV over the causal prefix: mean context (seq_len + 1) / 2
        mixer = L * 2 * 2 * d * (seq_len + 1) / 2
    else:
        raise ValueError(f"unknown architecture {arch!r}")
    d_model = getattr(config, "hidden_size", None) or config.n_embd
    lm_head = 2 * d_model * V
    forward = matmul + mixer + lm_head
    return {"matmul": float(matmul), "mixer": float(mixer), "lm_head": float(lm_head), "forward": float(forward),
            "train": float(3 * forward)}


def matmul_weight_count(model) -> int:
    """Weights of every nn.Linear except the lm_head (what the `matmul` FLOP term counts / 2)."""
    from transformers.pytorch_utils import Conv1D   # GPT-2's Linear layers, stored transposed
    head = model.get_output_embeddings()
    return sum(module.weight.numel() for module in model.modules()
               if isinstance(module, Conv1D) or (isinstance(module, torch.nn.Linear) and module is not head))


# transformers' Mamba applies `rescale_prenorm_residual` (part of mamba_ssm's init) in `_init_weights` to weights
# loaded by from_pretrained too, dividing trained output projections by sqrt(layers) once more on every load
# (seen on transformers 5.17 and 5.24). The flag only shapes the init (result.json records it): a trained model
# is saved without it, and a directory saved with it is loaded with it cleared.
INIT_ONLY_FLAGS = {"rescale_prenorm_residual": False}


def save_trained_model(model, path) -> None:
    """save_pretrained with the init-only flags cleared in the saved config (the live model's config is kept)."""
    saved = {k: getattr(model.config, k) for k in INIT_ONLY_FLAGS if hasattr(model.config, k)}
    for key in saved:
        setattr(model.config, key, INIT_ONLY_FLAGS[key])
    try:
        model.save_pretrained(path)
    finally:
        for key, value in saved.items():
            setattr(model.config, key, value)


def init_only_overrides(model_dir) -> Dict:
    """from_pretrained keyword arguments clearing the init-only flags a saved config.json still has set."""
    import json
    from pathlib import Path
    config = json.loads((Path(model_dir) / "config.json").read_text())
    return {k: v for k, v in INIT_ONLY_FLAGS.items() if k in config and config[k] != v}
