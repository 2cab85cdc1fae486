"""Long-context runs: train each architecture at every N with equal tokens per step, then stream moby-dick.

For each N in long_context.seq_lens: batch = tokens_per_step // N sequences of N tokens (gradient
accumulation when max_micro_batch_tokens is set), the same token budget, optimizer and schedule as
the main runs. Recorded per run: status (ok / diverged on a non-finite loss or grad norm / oom),
loss spikes, largest gradient norm, final loss, throughput, peak memory. A finished model then
reads moby-dick.txt as one stream (evaluation.streaming_nll): ResNet-BK and Mamba in chunks of N
tokens carrying their state; the Transformer with a sliding window of N tokens advanced N/2 at a
time. Perplexity by position goes into the result and the long-context figure.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ..data import tokenize_and_chunk
from .config import RunSelection, use_bf16
from .data import eval_token_stream, load_bench_train, load_long_context_text
from .evaluation import _summary, position_profile, streaming_nll
from .single_run import train_and_evaluate

STREAMING_ARCHS = ("resnet_bk", "mamba", "transformer")


def stream_moby_dick(model, arch: str, seq_len: int, ids, byte_lengths, device, lc, bf16: bool) -> dict:
    """Stream `ids` ([EOS] + the novel's tokens) through the model; perplexity overall and by position."""
    if arch not in STREAMING_ARCHS:
        return {"status": f"not implemented for {arch}"}
    if arch == "transformer":
        window = seq_len                      # never longer than what it was trained on
        chunk = min(lc.stream_chunk or max(1, seq_len // 2), window - 1)
    else:
        window, chunk = None, lc.stream_chunk or seq_len
    try:
        nll = streaming_nll(model, arch, ids, chunk, device, window=window,
                            autocast_dtype=torch.bfloat16 if bf16 else None, desc=f"stream {arch} N={seq_len}")
    except torch.cuda.OutOfMemoryError as e:
        return {"status": "oom", "error": str(e).splitlines()[0]}
    total_bytes = sum(byte_lengths[i] for i in ids[1:])
    return {"status": "ok", "chunk": chunk, "window": window, "tokens": len(ids) - 1,
            **_summary(float(nll.double().sum()), len(ids) - 1, total_bytes),
            "profile": position_profile(nll, byte_lengths, ids[1:], bins=lc.position_bins)}


def run_long_context(cfg, specs, device, tokenizer, data_dir, byte_lengths, fairness, selection=None):
    selection = selection or RunSelection()
    lc = cfg.long_context
    size = lc.size or cfg.sizes[0].name
    seed = cfg.seeds[0] if lc.seed is None else lc.seed
    out = Path(cfg.output_dir) / "long_context"
    bf16 = use_bf16(cfg, device)
    texts = None
    novel = eval_token_stream(tokenizer, [load_long_context_text(data_dir)], lc.stream_max_tokens)
    if lc.stream_max_tokens is None:
        novel = novel[:-1]  # the closing EOS is no part of the novel
    lengths = sorted(lc.seq_lens, reverse=True)  # longest first: the runs the question is about, and OOM shows early
    runs = [(n, arch) for n in lengths for arch in cfg.architectures]
    if selection.seed is not None and selection.seed != seed:
        runs = []
    mine = {(n, arch) for n, arch in selection.pick(runs) if not (out / arch / f"N{n}" / "result.json").is_file()}
    for n in lengths:
        batch = lc.tokens_per_step // n
        micro = batch
        if lc.max_micro_batch_tokens:
            micro = max(1, min(batch, lc.max_micro_batch_tokens // n))
            while batch % micro:
                micro -= 1
        train = dataclasses.replace(cfg.train, tokens=lc.tokens, seq_len=n, batch_size=batch, micro_batch_size=micro)
        blocks = None
        for arch in cfg.architectures:
            run_dir = out / arch / f"N{n}"
            if (n, arch) not in mine:
                continue
            if blocks is None:
                texts = texts if texts is not None else load_bench_train(data_dir, cfg.max_train_docs)
                blocks = tokenize_and_chunk(texts, tokenizer, n)
            spec = dataclasses.replace(specs[size][arch], max_position_embeddings=n)
            print(f"[long-context] arch={arch} N={n} batch={batch} (micro {micro}) spec={spec}")

            def stream(model, result, arch=arch, n=n):
                result["streaming"] = stream_moby_dick(model, arch, n, novel, byte_lengths, device, lc, bf16)

            train_and_evaluate(
                run_dir=run_dir, arch=arch, spec=spec, seed=seed, train_blocks=blocks, valid_streams={},
                byte_lengths=byte_lengths, tokenizer=tokenizer, train=train, eval_cfg=cfg.eval, device=device,
                bf16=bf16, fairness=fairness | {"recipe": train.recipe(), "train_tokens_budget": lc.tokens},
                extra={"size": size, "seq_len": n, "batch_size": batch, "micro_batch_size": micro},
                save_model=False, target_params=None, after_training=stream,
                gradient_checkpointing=lc.gradient_checkpointing, gpu_shared_by=selection.gpu_shared_by,
                fault_tolerance=cfg.fault_tolerance)
