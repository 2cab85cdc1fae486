"""Training data through `datasets`: load text corpora, tokenize, pack into fixed-length blocks.

Sources (`load_text_corpus`):
    "builtin:demo-train", "builtin:demo-validation"   the shipped CC0 SOTU subset (split by year)
    a local path or glob: *.jsonl / *.json (rows with a text field), *.txt (see `txt_sample_by`)
    {"hub": "owner/name", "config": ..., "split": ...}  a dataset on the Hugging Face Hub (needs network)

Packing (`pack_documents`): every document becomes its tokens + EOS; documents are concatenated and cut
into blocks of `block_size`. Each block carries `position_ids` that count the position inside its
document, so they restart at 0 where a document starts (the convention of transformers'
`DataCollatorWithFlattening`). The model resets its scan state there (no hopping to the previous
document), and `labels` is -100 at a document start, so no token is predicted from another document.
Both map-style and streaming (`IterableDataset`) corpora go through the same `map`.
"""
from __future__ import annotations

import glob
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

from datasets import Dataset, IterableDataset, concatenate_datasets, load_dataset

from . import DEMO_CORPUS, DEMO_VALID_FROM_YEAR

Source = Union[str, dict]
BUILTIN_SOURCES = ("builtin:demo-train", "builtin:demo-validation")
TEXT_SUFFIXES = {".jsonl": "json", ".json": "json", ".txt": "text"}
IGNORE_INDEX = -100


def resolve_local_files(source: str) -> List[str]:
    """The files a local source names (a path or a glob), checked to exist, with one known suffix."""
    files = sorted(glob.glob(source)) if glob.has_magic(source) else [source]
    if not files:
        raise FileNotFoundError(f"data source {source!r}: no file matches this pattern")
    for f in files:
        if not Path(f).is_file():
            raise FileNotFoundError(f"data source {source!r}: file not found: {f}")
    suffixes = {Path(f).suffix for f in files}
    if len(suffixes) != 1 or next(iter(suffixes)) not in TEXT_SUFFIXES:
        raise ValueError(f"data source {source!r}: files must all end in one of {sorted(TEXT_SUFFIXES)}, "
                         f"got suffixes {sorted(suffixes)}")
    return files


def check_source(source: Source) -> None:
    """Fail at once (before any model is built) on a source that cannot load: missing files, bad form."""
    if isinstance(source, dict):
        unknown = set(source) - {"hub", "config", "split", "text_field"}
        if "hub" not in source or not isinstance(source["hub"], str) or unknown:
            raise ValueError(f"data source {source!r}: a hub source is a mapping with key 'hub' (a dataset id) and "
                             f"optional 'config', 'split', 'text_field'" + (f"; unknown keys {sorted(unknown)}"
                                                                              if unknown else ""))
        return
    if not isinstance(source, str) or not source:
        raise ValueError(f"data source must be a path, a glob, one of {BUILTIN_SOURCES} or a mapping "
                         f"{{hub: ...}}, got {source!r}")
    if source.startswith("builtin:"):
        if source not in BUILTIN_SOURCES:
            raise ValueError(f"unknown built-in data source {source!r}; known: {BUILTIN_SOURCES}")
        return
    resolve_local_files(source)


def _load_one(source: Source, streaming: bool, text_field: str, txt_sample_by: str):
    check_source(source)
    if isinstance(source, dict):
        ds = load_dataset(source["hub"], source.get("config"), split=source.get("split", "train"),
                          streaming=streaming)
        field = source.get("text_field", text_field)
    elif source.startswith("builtin:"):
        ds = load_dataset("json", data_files=str(DEMO_CORPUS), split="train", streaming=streaming)
        if source == "builtin:demo-train":
            ds = ds.filter(lambda r: r["year"] < DEMO_VALID_FROM_YEAR)
        else:
            ds = ds.filter(lambda r: r["year"] >= DEMO_VALID_FROM_YEAR)
        field = "text"
    else:
        files = resolve_local_files(source)
        builder = TEXT_SUFFIXES[Path(files[0]).suffix]
        extra = {"sample_by": txt_sample_by} if builder == "text" else {}
        ds = load_dataset(builder, data_files=files, split="train", streaming=streaming, **extra)
        field = "text" if builder == "text" else text_field
    columns = ds.column_names
    if columns is not None and field not in columns:  # streaming datasets may not know their columns
        raise ValueError(f"data source {source!r}: no text field {field!r}; columns are {columns}")
    if field != "text":
        ds = ds.rename_column(field, "text")
    return ds.select_columns(["text"])


def load_text_corpus(sources: Union[Source, Sequence[Source]], streaming: bool = False, text_field: str = "text",
                     txt_sample_by: str = "document") -> Union[Dataset, IterableDataset]:
    """One `datasets` corpus with a single "text" column from one or more sources, in the given order.

    `txt_sample_by` is how a .txt file splits into documents: "document" (the whole file is one), "paragraph"
    (blank-line separated) or "line" (the `datasets` text builder's options).
    """
    if txt_sample_by not in ("document", "paragraph", "line"):
        raise ValueError(f"txt_sample_by must be 'document', 'paragraph' or 'line', got {txt_sample_by!r}")
    if isinstance(sources, (str, dict)):
        sources = [sources]
    if not sources:
        raise ValueError("no data sources given")
    for source in sources:
        check_source(source)
    parts = [_load_one(s, streaming, text_field, txt_sample_by) for s in sources]
    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)


def pack_token_lists(docs: Iterable[List[int]], block_size: int, eos_token_id: Optional[int]):
    """Concatenate documents (+ EOS each) and cut them into full blocks; the remainder is dropped.

    Returns a dict of lists of blocks: input_ids, position_ids (restarting at 0 at each document start)
    and labels (= input_ids, but -100 where a document starts: that token would be predicted from the
    previous document's state).
    """
    ids: List[int] = []
    pos: List[int] = []
    for doc in docs:
        doc = list(doc) + ([eos_token_id] if eos_token_id is not None else [])
        ids.extend(doc)
        pos.extend(range(len(doc)))
    n = len(ids) // block_size * block_size
    blocks = {"input_ids": [], "position_ids": [], "labels": []}
    for i in range(0, n, block_size):
        block_ids, block_pos = ids[i:i + block_size], pos[i:i + block_size]
        blocks["input_ids"].append(block_ids)
        blocks["position_ids"].append(block_pos)
        blocks["labels"].append([IGNORE_INDEX if p == 0 else t for t, p in zip(block_ids, block_pos)])
    return blocks


def pack_documents(texts: Union[Dataset, IterableDataset], tokenizer, block_size: int, num_proc: Optional[int] = None,
                   documents_per_map_batch: int = 1000) -> Union[Dataset, IterableDataset]:
    """Tokenize a "text" corpus and pack it into blocks (see `pack_token_lists`).

    Works on map-style and streaming corpora alike (one batched `map`). Packing is done per map batch of
    `documents_per_map_batch` documents, as in the transformers language-modeling examples: the tail
    shorter than a block at the end of each map batch is dropped.
    """
    if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 2:
        raise ValueError(f"block_size must be an integer >= 2, got {block_size!r}")
    eos = tokenizer.eos_token_id

    def tokenize_and_pack(batch):
        docs = tokenizer(batch["text"], add_special_tokens=False).input_ids
        return pack_token_lists(docs, block_size, eos)

    kwargs = dict(batched=True, batch_size=documents_per_map_batch, remove_columns=["text"])
    if isinstance(texts, Dataset):
        kwargs.update(num_proc=num_proc, desc=f"tokenizing and packing into blocks of {block_size}")
    packed = texts.map(tokenize_and_pack, **kwargs)
    if isinstance(packed, Dataset) and len(packed) == 0:
        raise ValueError(f"the corpus has fewer than block_size={block_size} tokens: no full block to train on")
    return packed
