"""`resnet-bk compare CONFIG.yaml`: train every (size, seed, architecture) run, evaluate, aggregate.

Each run lives in OUTPUT_DIR/runs/SIZE/ARCH/seedS/: Trainer checkpoints while it trains (a killed
run resumes from the newest), then result.json (the run is finished: later invocations skip it)
and, with save_models, the final model in model/ (safetensors + tokenizer, for lm-eval).
OUTPUT_DIR/summary.json and the figures are rebuilt from every result.json at the end.
One run is single_run.train_and_evaluate; the long-context runs are long_context.run_long_context.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Dict, List, Optional

import torch

from ..data import tokenize_and_chunk
from ..tokenization import load_tokenizer
from .architectures import ArchSpec, mambapy_available, size_model
from .config import DEFAULT_WIDTH_MULTIPLE, CompareConfig, RunSelection, use_bf16
from .data import (VALID_FILES, data_fingerprint, eval_token_stream, load_bench_train, load_valid_texts,
                   resolve_data_dir, token_byte_lengths, tokenizer_fingerprint)
from .long_context import run_long_context
from .single_run import train_and_evaluate

__all__ = ["RunSelection", "pick_device", "run_compare", "size_specs", "train_and_evaluate", "use_bf16",
           "use_mambapy"]


def pick_device(cfg: CompareConfig) -> str:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("compare config: device is 'cuda' but torch sees no CUDA device")
    return cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")


def use_mambapy(cfg: CompareConfig, device: str) -> bool:
    choice = str(cfg.mamba_use_mambapy).lower()
    if choice == "true":
        if not mambapy_available():
            raise ValueError("compare config: mamba_use_mambapy is true but the mambapy package is not installed")
        return True
    return choice == "auto" and device == "cuda" and mambapy_available()


def size_specs(cfg: CompareConfig, vocab_size: int, device: str, max_positions: int) -> Dict[str, Dict[str, ArchSpec]]:
    specs = {}
    for size in cfg.sizes:
        specs[size.name] = {}
        for arch in cfg.architectures:
            multiple = (size.width_multiple or {}).get(arch) or DEFAULT_WIDTH_MULTIPLE[arch] or size.head_dim
            try:
                specs[size.name][arch] = size_model(
                    arch, size.target_non_embedding_params, size.layers[arch], vocab_size, width_multiple=multiple,
                    head_dim=size.head_dim, num_shifts=size.num_shifts, state_size=size.mamba_state_size,
                    transformer_family=cfg.transformer_family, max_position_embeddings=max_positions,
                    use_mambapy=use_mambapy(cfg, device), extra=dict(size.model_overrides.get(arch, {})))
            except TypeError as e:   # an override naming a field the sizing sets itself
                raise ValueError(f"compare config: sizes.{size.name}.model_overrides.{arch}: {e}") from e
    return specs


def run_compare(cfg: CompareConfig, aggregate_only: bool = False, extra_run_dirs: Optional[List[str]] = None,
                selection: Optional[RunSelection] = None) -> Dict:
    from .report import aggregate
    selection = selection or RunSelection()
    if selection.seed is not None and selection.seed not in cfg.seeds:
        raise ValueError(f"seed {selection.seed} is not one of the config's seeds {cfg.seeds}")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not aggregate_only:
        device = pick_device(cfg)
        tokenizer = load_tokenizer()
        data_dir = resolve_data_dir(cfg.data_dir)
        byte_lengths = token_byte_lengths(tokenizer)
        fairness = {"tokenizer_sha256": tokenizer_fingerprint(tokenizer),
                    "data_sha256": data_fingerprint(data_dir, cfg.max_train_docs)["sha256"],
                    "train_tokens_budget": cfg.train.tokens, "seeds": sorted(cfg.seeds),
                    "recipe": cfg.train.recipe()}
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
        specs = size_specs(cfg, len(tokenizer), device, max(cfg.train.seq_len, cfg.eval.block_size))
        # shards split the whole list, finished runs included, so the split does not depend on when each starts
        runs = [(s, seed, a) for s in cfg.sizes for seed in cfg.seeds for a in cfg.architectures if cfg.run_main]
        pending = [(s, seed, a) for s, seed, a in selection.pick(runs, seed_of=lambda run: run[1])
                   if not (out / "runs" / s.name / a / f"seed{seed}" / "result.json").is_file()]
        if pending:
            workers = max(1, min(8, (os.cpu_count() or 1) // 2)) if device == "cuda" else None
            train_blocks = tokenize_and_chunk(load_bench_train(data_dir, cfg.max_train_docs), tokenizer,
                                              cfg.train.seq_len, num_proc=workers)
            valid_streams = {name: eval_token_stream(tokenizer, load_valid_texts(data_dir, name), cfg.eval.max_tokens)
                             for name in VALID_FILES}
        # seeds outermost: a run cut short by a time limit still has every architecture of the first seeds
        for size, seed, arch in pending:
            print(f"[compare] size={size.name} arch={arch} seed={seed} spec={specs[size.name][arch]}")
            train_and_evaluate(
                run_dir=out / "runs" / size.name / arch / f"seed{seed}", arch=arch, spec=specs[size.name][arch],
                seed=seed, train_blocks=train_blocks, valid_streams=valid_streams, byte_lengths=byte_lengths,
                tokenizer=tokenizer, train=cfg.train, eval_cfg=cfg.eval, device=device, bf16=use_bf16(cfg, device),
                fairness=fairness, extra={"size": size.name, "data_dir": str(data_dir)},
                save_model=cfg.save_models, target_params=size.target_non_embedding_params,
                gpu_shared_by=selection.gpu_shared_by, fault_tolerance=cfg.fault_tolerance)
        if cfg.long_context is not None:
            run_long_context(cfg, specs, device, tokenizer, data_dir, byte_lengths, fairness, selection)
    if not selection.aggregate:
        return {"status": "runs only (aggregation left to a later --aggregate-only)"}
    run_dirs = [out / "runs"] + [Path(d) for d in (extra_run_dirs or [])]
    return aggregate(cfg, run_dirs, out)
