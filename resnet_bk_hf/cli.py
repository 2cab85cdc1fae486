"""`resnet-bk` console script: subcommands for the package's jobs."""
from __future__ import annotations

import argparse
import sys


def _demo(args):
    from .demo import run_demo
    run_demo(output_dir=args.output_dir, results_dir=args.results_dir, max_steps=args.max_steps, seed=args.seed,
             device=args.device)


def _train_tokenizer(args):
    from .tokenization import TOKENIZER_DIR, default_training_files, iter_jsonl_text, train_tokenizer
    path = train_tokenizer(iter_jsonl_text(default_training_files(args.data)), args.vocab_size,
                           args.out or TOKENIZER_DIR)
    print(f"wrote {path}")


def check_model_dir(model: str) -> None:
    """Refuse at once a --model that names no saved model: a missing local folder is "no such directory", not a
    failed download. Only a name shaped like a Hub id (owner/name) whose first part is no local folder is left
    to from_pretrained to fetch."""
    import difflib
    import re
    from pathlib import Path
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise SystemExit(f"resnet-bk generate: error: {model} is a directory without config.json: not a saved "
                             "model (save one with save_pretrained, e.g. `resnet-bk demo` writes outputs/demo-model)")
        return
    if path.exists():
        raise SystemExit(f"resnet-bk generate: error: {model} is a file, not a model directory")
    parent = path.parent
    hub_id = (re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", model) and not model.startswith((".", "~"))
              and not (str(parent) != "." and parent.is_dir()))
    if not hub_id:
        siblings = [p.name for p in parent.iterdir() if p.is_dir()] if parent.is_dir() else []
        close = difflib.get_close_matches(path.name, siblings, n=3)
        hint = f" (in {parent}: {', '.join(close)})" if close else ""
        raise SystemExit(f"resnet-bk generate: error: no such directory: {model}{hint}")


def _generate(args):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    import resnet_bk_hf  # noqa: F401  (registers the model with the Auto classes)
    check_model_dir(args.model)
    try:
        tok = AutoTokenizer.from_pretrained(args.model)
        model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    except OSError as e:   # neither a local folder nor a Hub model that could be reached
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SystemExit(f"resnet-bk generate: error: no such directory: {args.model}; as a Hub model id it did "
                         f"not load either ({first})") from None
    inputs = tok(args.prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=args.sample,
                             pad_token_id=tok.pad_token_id)
    print(tok.decode(out[0]))


def _compare(args):
    from .compare.config import load_config
    from .compare.runner import RunSelection, run_compare
    from .training import ConfigError
    try:
        cfg = load_config(args.config, {"output_dir": args.output_dir, "device": args.device})
    except (ConfigError, FileNotFoundError) as e:
        print(f"resnet-bk compare: error: {e}", file=sys.stderr)
        return 2
    try:
        shard = tuple(int(x) for x in args.shard.split("/")) if args.shard else (0, 1)
        if len(shard) != 2:
            raise ValueError
    except ValueError:
        raise SystemExit(f"--shard must be I/N (e.g. 0/2), got {args.shard!r}")
    selection = RunSelection(seed=args.seed, shard=shard, gpu_shared_by=args.gpu_shared_by,
                             aggregate=not args.no_aggregate)
    summary = run_compare(cfg, aggregate_only=args.aggregate_only, extra_run_dirs=args.include_runs,
                          selection=selection)
    print(f"wrote {cfg.output_dir}/summary.json ({summary['status']})")


def _lm_eval(args):
    from .compare.lm_eval_run import run_lm_eval
    run_lm_eval(args.model, tasks=args.tasks, output_dir=args.output_dir, data_dir=args.data_dir,
                device=args.device, batch_size=args.batch_size, max_length=args.max_length, limit=args.limit,
                dtype=args.dtype)


def _quant_eval(args):
    from .compare.quantization import run_quant_eval
    run_quant_eval(args.model, args.output_dir, widths=args.weights.split(","), data_dir=args.data_dir,
                   device=args.device, block_size=args.block_size, batch_size=args.batch_size,
                   max_tokens=args.max_tokens)


def _export_onnx(args):
    exporter = args.exporter
    if exporter == "auto":
        try:
            import optimum.exporters.onnx  # noqa: F401  (optimum-onnx; it needs transformers < 4.58)
            exporter = "optimum"
        except ImportError:
            exporter = "torch"
    if exporter == "optimum":
        from .optimum_onnx import export_with_optimum
        out = export_with_optimum(args.model_dir, args.out_dir, opset=args.opset)
    else:
        from .onnx_export import DEFAULT_OPSET, export_onnx
        out = export_onnx(args.model_dir, args.out_dir, opset=args.opset or DEFAULT_OPSET)
    print(f"wrote {out}/model.onnx and {out}/model_with_state.onnx ({exporter} exporter)")


def _model_card(args):
    from .model_card import write_model_card
    out = write_model_card(args.results, args.out, model_dir=args.model_dir, repo_id=args.repo_id,
                           model_name=args.model_name)
    print(f"wrote {out}")


def _train(args):
    from .training import ConfigError, TrainingFailedError, main_train
    try:
        return main_train(args.config, resume=args.resume, overrides=args.set)
    except ConfigError as e:
        print(f"resnet-bk train: error: {e}", file=sys.stderr)
        return 2
    except TrainingFailedError as e:
        print(f"resnet-bk train: failed: {e}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resnet-bk", description="ResNet-BK language models")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="train a small model on the built-in corpus and report on it")
    p.add_argument("--output-dir", default="outputs/demo-model")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    p.set_defaults(func=_demo)
    p = sub.add_parser("train-tokenizer", help="rebuild the shipped byte-level BPE tokenizer")
    p.add_argument("--data", default="../shared/data", help="folder holding sotu/ and brown/")
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--out", default=None)
    p.set_defaults(func=_train_tokenizer)
    p = sub.add_parser("generate", help="continue a prompt with a saved model")
    p.add_argument("--model", required=True)
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int, default=50)
    p.add_argument("--sample", action="store_true")
    p.set_defaults(func=_generate)
    p = sub.add_parser("compare", help="train and compare ResNet-BK, Mamba and a Transformer (docs/results.md)")
    p.add_argument("config", help="YAML file, e.g. examples/compare/gpu_10m.yaml")
    p.add_argument("--output-dir", default=None, help="overrides the config's output_dir")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    p.add_argument("--aggregate-only", action="store_true", help="rebuild summary.json and figures, train nothing")
    p.add_argument("--include-runs", nargs="*", default=None, help="more runs/ folders to compare with")
    p.add_argument("--seed", type=int, default=None, help="train only this seed's runs (one of the config's seeds)")
    p.add_argument("--shard", default=None, help="I/N: train every N-th pending run from the I-th (parallel processes)")
    p.add_argument("--gpu-shared-by", type=int, default=1,
                   help="training processes sharing the GPU meanwhile (recorded; throughput taken only from 1)")
    p.add_argument("--no-aggregate", action="store_true", help="train only; summary.json by a later --aggregate-only")
    p.set_defaults(func=_compare)
    p = sub.add_parser("lm-eval", help="lm-eval-harness (--model hf) on the bench corpora, offline; tabulates")
    p.add_argument("--model", action="append", required=True, help="saved model folder (repeat for several)")
    p.add_argument("--tasks", default="bench_sotu_valid,bench_wikitext2_valid")
    p.add_argument("--output-dir", default="results/lm_eval")
    p.add_argument("--data-dir", default=None, help="folder of the bench corpora (default ../shared/data)")
    p.add_argument("--device", default=None)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=2048, help="rolling-window length in tokens")
    p.add_argument("--limit", type=int, default=None, help="documents per task (for quick checks)")
    p.add_argument("--dtype", default="float32")
    p.set_defaults(func=_lm_eval)
    p = sub.add_parser("quant-eval", help="validation bits per byte of saved models before and after weight-only "
                       "int8 / int4 / int2 quantization (optimum-quanto); tabulates")
    p.add_argument("--model", action="append", required=True, help="saved model folder (repeat for several)")
    p.add_argument("--weights", default="int8,int4", help="comma-separated widths from int8, int4, int2")
    p.add_argument("--output-dir", default="results/quant_eval")
    p.add_argument("--data-dir", default=None, help="folder of the bench corpora (default ../shared/data)")
    p.add_argument("--device", default=None)
    p.add_argument("--block-size", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=None, help="tokens per validation set (for quick checks)")
    p.set_defaults(func=_quant_eval)
    p = sub.add_parser("export-onnx", help="export a saved model to ONNX (full-sequence and with-state graphs)")
    p.add_argument("model_dir")
    p.add_argument("out_dir")
    p.add_argument("--exporter", choices=["auto", "optimum", "torch"], default="auto",
                   help="auto: Optimum when importable (transformers < 4.58), else torch.onnx")
    p.add_argument("--opset", type=int, default=None)
    p.set_defaults(func=_export_onnx)
    p = sub.add_parser("model-card", help="write a Hub model card (README.md) from result JSON files")
    p.add_argument("results", nargs="+", help="result JSON files, e.g. results/demo.json")
    p.add_argument("--out", required=True, help="e.g. outputs/demo-model/README.md")
    p.add_argument("--model-dir", default=None, help="saved model directory (its config.json is read)")
    p.add_argument("--repo-id", default=None)
    p.add_argument("--model-name", default=None)
    p.set_defaults(func=_model_card)
    p = sub.add_parser("train", help="train with transformers.Trainer from a YAML config (examples/*.yaml)")
    p.add_argument("config", help="YAML file with model:, data:, training: (TrainingArguments), fault_tolerance:")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                   help="continue from CHECKPOINT, or (no value) from the newest intact one in output_dir")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value (parsed as YAML), e.g. --set training.max_steps=20")
    p.set_defaults(func=_train)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
