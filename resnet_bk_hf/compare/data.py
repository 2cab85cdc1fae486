"""Bench corpora for the comparison (shared/data/README.md): loading through `datasets`, hashes, eval streams.

bench-train = sotu/train.jsonl + brown/brown.jsonl; bench-valid = sotu/valid.jsonl and
wikitext-2/valid.txt; long-context = moby-dick.txt. Files are read where they lie (never copied).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Dict, List, Optional

from datasets import Dataset, concatenate_datasets, load_dataset

from ..training.checkpoints import sha256_file

TRAIN_FILES = ("sotu/train.jsonl", "brown/brown.jsonl")
VALID_FILES = {"sotu_valid": "sotu/valid.jsonl", "wikitext2_valid": "wikitext-2/valid.txt"}
LONG_CONTEXT_FILE = "moby-dick.txt"


def resolve_data_dir(data_dir: Optional[str | Path] = None) -> Path:
    """`data_dir`, else $RESNET_BK_SHARED_DATA, else ../shared/data from the working directory."""
    path = Path(data_dir or os.environ.get("RESNET_BK_SHARED_DATA") or Path.cwd().parent / "shared" / "data")
    if not (path / TRAIN_FILES[0]).is_file():
        raise FileNotFoundError(f"bench corpora not found in {path} (expected {TRAIN_FILES[0]}); pass data_dir or set "
                                "RESNET_BK_SHARED_DATA")
    return path


def data_fingerprint(data_dir: Path, max_train_docs: Optional[int]) -> Dict:
    """sha256 of every bench file plus one combined hash (the runs' 'data hash' the fairness check compares)."""
    files = {name: sha256_file(data_dir / name) for name in (*TRAIN_FILES, *VALID_FILES.values())}
    combined = hashlib.sha256(repr((sorted(files.items()), max_train_docs)).encode()).hexdigest()
    return {"files": files, "max_train_docs": max_train_docs, "sha256": combined}


def _jsonl_texts(path: Path, max_docs: Optional[int]) -> Dataset:
    rows = load_dataset("json", data_files=str(path), split="train")
    if "text" not in rows.column_names:
        raise ValueError(f"{path}: rows have no 'text' field (columns {rows.column_names})")
    rows = rows.select_columns(["text"])
    return rows.select(range(min(max_docs, len(rows)))) if max_docs is not None else rows


def load_bench_train(data_dir: Path, max_docs: Optional[int] = None) -> Dataset:
    """bench-train as one Dataset of {'text'} rows; `max_docs` (per file) trims it for tests."""
    return concatenate_datasets([_jsonl_texts(data_dir / name, max_docs) for name in TRAIN_FILES])


def load_valid_texts(data_dir: Path, name: str) -> List[str]:
    """The documents of one bench-valid set: SOTU addresses, or the WikiText-2 file as one document."""
    if name not in VALID_FILES:
        raise ValueError(f"validation set must be one of {list(VALID_FILES)}, got {name!r}")
    path = data_dir / VALID_FILES[name]
    if path.suffix == ".jsonl":
        return list(_jsonl_texts(path, None)["text"])
    return list(load_dataset("text", data_files=str(path), sample_by="document", split="train")["text"])


def load_long_context_text(data_dir: Path) -> str:
    return (data_dir / LONG_CONTEXT_FILE).read_text(encoding="utf-8")


MAX_CHARS_PER_TOKEN = 64  # no token of the shipped BPE is longer; bounds the text needed for max_tokens tokens


def eval_token_stream(tokenizer, texts: List[str], max_tokens: Optional[int] = None) -> List[int]:
    """[EOS] doc1 [EOS] doc2 [EOS] ...: every token after the first is a prediction target.

    With `max_tokens`, only as much text is tokenized as the first max_tokens + 1 tokens need (a
    document cut there loses only tokens past the limit, which are dropped anyway).
    """
    eos = tokenizer.eos_token_id
    stream = [eos]
    for text in texts:
        if max_tokens is not None:
            if len(stream) > max_tokens:
                break
            text = text[:(max_tokens + 2) * MAX_CHARS_PER_TOKEN]
        stream.extend(tokenizer(text).input_ids)
        stream.append(eos)
    return stream[:max_tokens + 1] if max_tokens is not None else stream


def token_byte_lengths(tokenizer) -> List[int]:
    """UTF-8 bytes each token stands for (special tokens: 0), for bits-per-byte.

    Exact for byte-level BPE, where every character of a token string is one byte under GPT-2's
    bytes_to_unicode map; any other tokenizer is refused with a ValueError.
    """
    from tokenizers.pre_tokenizers import ByteLevel
    byte_chars = set(ByteLevel.alphabet())  # the 256 characters that stand for the 256 byte values
    special = set(tokenizer.all_special_ids)
    lengths = [0] * len(tokenizer)
    for token, idx in tokenizer.get_vocab().items():
        if idx in special:
            continue
        if not set(token) <= byte_chars:
            raise ValueError(f"token {token!r} (id {idx}) is not byte-level BPE: bits-per-byte needs a byte-level "
                             "tokenizer")
        lengths[idx] = len(token)
    return lengths


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of the tokenizer's full serialisation (vocabulary, merges, normaliser, specials)."""
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()
