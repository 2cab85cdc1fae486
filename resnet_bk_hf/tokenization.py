"""The shipped tokenizer: byte-level BPE trained with `tokenizers` on the bench corpora.

`load_tokenizer()` returns a `PreTrainedTokenizerFast` built from the
`tokenizer.json` inside the package; `save_pretrained` on it writes files that
`AutoTokenizer.from_pretrained` reads back. `train_tokenizer` rebuilds it
(`resnet-bk train-tokenizer`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator, List

import transformers

TOKENIZER_DIR = Path(__file__).parent / "tokenizer"
PAD_TOKEN = "<pad>"
EOS_TOKEN = "<|endoftext|>"
SPECIAL_TOKENS = [PAD_TOKEN, EOS_TOKEN]  # ids 0 and 1, matching ResNetBKConfig's defaults


class PreTrainedTokenizerFast(transformers.PreTrainedTokenizerFast):
    """transformers' fast tokenizer, under a class name that every transformers version can load.

    `save_pretrained` records the class name in tokenizer_config.json; transformers 5 names its fast
    tokenizer `TokenizersBackend`, which transformers 4.x cannot load, so a directory saved with 5.x
    would not load its tokenizer on 4.57. `PreTrainedTokenizerFast` loads on both.
    """


def load_tokenizer(path: str | Path = TOKENIZER_DIR) -> PreTrainedTokenizerFast:
    file = Path(path) / "tokenizer.json"
    if not file.is_file():
        raise FileNotFoundError(f"no tokenizer.json in {path}; rebuild it with `resnet-bk train-tokenizer`")
    return PreTrainedTokenizerFast(tokenizer_file=str(file), pad_token=PAD_TOKEN, eos_token=EOS_TOKEN,
                                   bos_token=EOS_TOKEN, unk_token=None, model_max_length=1_000_000_000,
                                   clean_up_tokenization_spaces=False,
                                   model_input_names=["input_ids", "attention_mask"])  # no token_type_ids


def iter_jsonl_text(paths: Iterable[str | Path]) -> Iterator[str]:
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line)["text"]
                    except (json.JSONDecodeError, KeyError) as e:
                        raise ValueError(f"{path}:{line_no}: not a JSON object with a 'text' field ({e})") from e


def train_tokenizer(texts: Iterable[str], vocab_size: int = 8192, out_dir: str | Path = TOKENIZER_DIR) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=True)
    tok.train_from_iterator(texts, trainer=trainer)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    return out / "tokenizer.json"


def default_training_files(shared_data: str | Path) -> List[Path]:
    """bench-train = sotu/train.jsonl + brown/brown.jsonl (shared/data/README.md)."""
    root = Path(shared_data)
    files = [root / "sotu" / "train.jsonl", root / "brown" / "brown.jsonl"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"bench corpora not found: {missing}")
    return files
