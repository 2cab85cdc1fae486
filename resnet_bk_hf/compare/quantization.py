"""`resnet-bk quant-eval`: how much validation quality saved models lose under weight-only post-training
quantization (the seeds' "quantization robustness" claim), side by side.

Quantization is optimum-quanto's (`quantize(model, weights=qint8 | qint4 | qint2)` then `freeze`), weights
only: every `nn.Linear` except the output head gets per-output-channel symmetric integer weights (int4 and int2
in groups of quanto's default size), activations stay in floating point. (quanto's int8 activations were tried
and left out: on transformers' Mamba they reach its depthwise conv1d with the wrong shape.) The head is kept in
floating point because it is tied to the input embedding in every compared model (a common choice in
post-training quantization studies; recorded in the result). ResNet-BK's scan parameters (potential, hopping,
shifts, readout projections that are not Linear) are not Linear modules and stay in floating point; its Linear
projections are quantized like everyone else's.

Each model is evaluated unquantized and at each width with the same blocks and data as `resnet-bk compare`
(`evaluate_blocks`: token-level loss and bits per byte on the bench validation sets); the table gives the
increase in bits per byte. The checkpoint on disk is never modified (every width loads it afresh).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

WEIGHT_WIDTHS = ("int8", "int4", "int2")
KEPT_IN_FLOAT = ("lm_head",)


def _quanto_dtype(width: str):
    try:
        from optimum import quanto
    except ImportError as e:  # pragma: no cover - the compare extra installs it
        raise ImportError("quant-eval needs optimum-quanto: pip install 'resnet_bk_hf[compare]'") from e
    if width not in WEIGHT_WIDTHS:
        raise ValueError(f"weight width must be one of {WEIGHT_WIDTHS}, got {width!r}")
    return {"int8": quanto.qint8, "int4": quanto.qint4, "int2": quanto.qint2}[width]


def quantize_weights(model: torch.nn.Module, width: str) -> List[str]:
    """Quantize `model`'s Linear weights in place (all but the output head); returns the quantized module names."""
    from optimum.quanto import freeze, quantize
    quantize(model, weights=_quanto_dtype(width), exclude=list(KEPT_IN_FLOAT))
    freeze(model)
    return [name for name, module in model.named_modules() if type(module).__name__ == "QLinear"]


def _load(model_dir: str, device: str):
    import resnet_bk_hf  # noqa: F401  (registers ResNet-BK with the Auto classes)
    from transformers import AutoModelForCausalLM
    from .architectures import init_only_overrides
    return AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32,
                                                **init_only_overrides(model_dir)).to(device).eval()


def evaluate_quantized(models: Sequence[str], widths: Sequence[str] = WEIGHT_WIDTHS, data_dir: Optional[str] = None,
                       device: Optional[str] = None, block_size: int = 512, batch_size: int = 8,
                       max_tokens: Optional[int] = None, on_model: Optional[Callable[[Dict], None]] = None) -> Dict:
    """Unquantized and quantized validation metrics of each saved model; see the module docstring.
    `on_model(result_so_far)` is called after each model, so a run cut short keeps the models it finished."""
    from ..tokenization import load_tokenizer
    from .data import VALID_FILES, eval_token_stream, load_valid_texts, resolve_data_dir, token_byte_lengths
    from .evaluation import evaluate_blocks
    for width in widths:
        _quanto_dtype(width)                      # a bad width fails before any model is loaded
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = load_tokenizer()
    byte_lengths = token_byte_lengths(tokenizer)
    data = resolve_data_dir(data_dir)
    streams = {name: eval_token_stream(tokenizer, load_valid_texts(data, name), max_tokens) for name in VALID_FILES}
    out = {"device": device, "widths": list(widths), "kept_in_float": list(KEPT_IN_FLOAT), "block_size": block_size,
           "max_tokens": max_tokens, "models": {}}
    for model_dir in models:
        entry = {}
        for width in ("none", *widths):
            model = _load(model_dir, device)
            if width == "none" and model.config.vocab_size != len(tokenizer):
                raise ValueError(f"{model_dir}: vocabulary {model.config.vocab_size} is not the bench tokenizer's "
                                 f"{len(tokenizer)}")
            try:
                quantized = [] if width == "none" else quantize_weights(model, width)
                if width != "none" and not quantized:
                    raise RuntimeError(f"{model_dir}: no Linear layer was quantized at {width}")
                entry[width] = {"quantized_linear_layers": len(quantized),
                                "valid": {name: evaluate_blocks(model, stream, byte_lengths, block_size, batch_size,
                                                                device, desc=f"{Path(model_dir).name} {width} {name}")
                                          for name, stream in streams.items()}}
            except Exception as e:  # noqa: BLE001  (a width the backend cannot run here is recorded, not fatal)
                if width == "none":
                    raise
                entry[width] = {"error": f"{type(e).__name__}: {e}"[:500]}
                print(f"[quant-eval] {model_dir} {width}: {entry[width]['error']}")
            del model
        entry["model_type"] = json.loads((Path(model_dir) / "config.json").read_text()).get("model_type")
        for width in (w for w in widths if "error" not in entry[w]):
            entry[width]["bits_per_byte_increase"] = {
                name: entry[width]["valid"][name]["bits_per_byte"] - entry["none"]["valid"][name]["bits_per_byte"]
                for name in streams}
        out["models"][str(model_dir)] = entry
        if on_model is not None:
            on_model(out)
    return out


def table(result: Dict) -> str:
    names = sorted({n for e in result["models"].values() for n in e["none"]["valid"]})
    head = "| model | type | " + " | ".join(f"{n} bpb float" for n in names) + " | " + " | ".join(
        f"{n} +bpb {w}" for w in result["widths"] for n in names) + " |"
    lines = [head, "|" + " --- |" * (2 + len(names) * (1 + len(result["widths"])))]
    for model_dir, e in result["models"].items():
        cells = [f"{e['none']['valid'][n]['bits_per_byte']:.4f}" for n in names]
        cells += [f"{e[w]['bits_per_byte_increase'][n]:+.4f}" if "error" not in e[w] else "error"
                  for w in result["widths"] for n in names]
        lines.append(f"| {model_dir} | {e['model_type']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_quant_eval(models: Sequence[str], output_dir: str, **kwargs) -> Dict:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)

    def write(result: Dict) -> None:            # after every model: a deadline keeps what was finished
        (out / "quant_eval.json").write_text(json.dumps(result, indent=1))
        (out / "quant_eval.md").write_text(table(result) + "\n")

    result = evaluate_quantized(models, on_model=write, **kwargs)
    print(table(result))
    return result
