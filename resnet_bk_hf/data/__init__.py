"""Corpora through `datasets`: the built-in demo corpus and the bench corpora in shared/data."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from datasets import Dataset, DatasetDict, load_dataset

DEMO_CORPUS = Path(__file__).parent / "sotu_demo.jsonl"
DEMO_VALID_FROM_YEAR = 1988


def load_demo_corpus(path: str | Path = DEMO_CORPUS) -> DatasetDict:
    """The shipped CC0 SOTU subset: addresses before 1988 train, 1988-1990 validate."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"demo corpus missing: {path} (reinstall the package)")
    rows = load_dataset("json", data_files=str(path), split="train")
    if "text" not in rows.column_names or "year" not in rows.column_names:
        raise ValueError(f"{path}: expected rows with 'year' and 'text', got columns {rows.column_names}")
    return DatasetDict(train=rows.filter(lambda r: r["year"] < DEMO_VALID_FROM_YEAR),
                       validation=rows.filter(lambda r: r["year"] >= DEMO_VALID_FROM_YEAR))


def tokenize_and_chunk(texts: Dataset, tokenizer, block_size: int, num_proc: Optional[int] = None) -> Dataset:
    """Tokenize every document, join them with EOS, cut into blocks of `block_size` (labels = input_ids).

    The remainder shorter than one block is dropped, as in the transformers examples.
    """
    if block_size < 2:
        raise ValueError(f"block_size must be >= 2, got {block_size}")
    eos = tokenizer.eos_token_id

    def tokenize(batch):
        return {"ids": [ids + [eos] for ids in tokenizer(batch["text"]).input_ids]}

    def chunk(batch):
        flat = [t for ids in batch["ids"] for t in ids]
        n = len(flat) // block_size * block_size
        blocks = [flat[i:i + block_size] for i in range(0, n, block_size)]
        return {"input_ids": blocks, "labels": [list(b) for b in blocks]}

    tokenized = texts.map(tokenize, batched=True, remove_columns=texts.column_names, num_proc=num_proc,
                          desc="tokenizing")
    chunks = tokenized.map(chunk, batched=True, batch_size=1000, remove_columns=["ids"], desc="chunking")
    if len(chunks) == 0:
        raise ValueError(f"the corpus has fewer than block_size={block_size} tokens")
    return chunks
