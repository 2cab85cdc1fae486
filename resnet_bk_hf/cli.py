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


def _generate(args):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    import resnet_bk_hf  # noqa: F401  (registers the model with the Auto classes)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    inputs = tok(args.prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=args.sample,
                             pad_token_id=tok.pad_token_id)
    print(tok.decode(out[0]))


def _train(args):
    from .train import ConfigError, main_train
    try:
        return main_train(args.config, resume=args.resume, overrides=args.set)
    except ConfigError as e:
        print(f"resnet-bk train: error: {e}", file=sys.stderr)
        return 2


def main(argv=None):
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
    p = sub.add_parser("train", help="train with transformers.Trainer from a YAML config (examples/*.yaml)")
    p.add_argument("config", help="YAML file with model:, data:, training: (TrainingArguments), fault_tolerance:")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                   help="continue from CHECKPOINT, or (no value) from the newest intact one in output_dir")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value (parsed as YAML), e.g. --set training.max_steps=20")
    p.set_defaults(func=_train)
    args = parser.parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
