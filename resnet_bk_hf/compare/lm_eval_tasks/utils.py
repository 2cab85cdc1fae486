"""Datasets and scoring for the bench-corpus lm-eval tasks (loglikelihood_rolling, offline).

The data is read from the bench corpora where they lie: `data_dir` from the task metadata
(`--metadata '{"data_dir": "..."}'`, or TaskManager(metadata=...)), else $RESNET_BK_SHARED_DATA,
else ../shared/data from the working directory. `max_docs` and `max_chars` (metadata) trim the
documents for quick checks. Texts are scored as they are in the files (WikiText-2 keeps its
tokenized form with " @-@ " and <unk>, as in `resnet-bk compare`).
"""
import json
import os
import re
from pathlib import Path

from datasets import Dataset, DatasetDict


def _data_dir(data_dir=None):
    path = Path(data_dir or os.environ.get("RESNET_BK_SHARED_DATA") or Path.cwd().parent / "shared" / "data")
    if not (path / "sotu" / "valid.jsonl").is_file():
        raise FileNotFoundError(f"bench corpora not found in {path}: pass --metadata '{{\"data_dir\": ...}}' or set "
                                "RESNET_BK_SHARED_DATA")
    return path


def _as_dataset(texts, max_docs=None, max_chars=None):
    texts = [t for t in texts if t.strip()]
    if max_docs is not None:
        texts = texts[:int(max_docs)]
    if max_chars is not None:
        texts = [t[:int(max_chars)] for t in texts]
    return DatasetDict(validation=Dataset.from_dict({"text": texts}))


def sotu_valid(data_dir=None, max_docs=None, max_chars=None, **metadata):
    """SOTU addresses 1991-2004 (bench-valid, in-domain): one document per address."""
    with open(_data_dir(data_dir) / "sotu" / "valid.jsonl", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    return _as_dataset(texts, max_docs, max_chars)


WIKITEXT_ARTICLE = re.compile(r"^ = [^=].* = \n", flags=re.MULTILINE)


def wikitext2_valid(data_dir=None, max_docs=None, max_chars=None, **metadata):
    """WikiText-2 validation (bench-valid, out-of-domain): one document per article (' = Title = ' lines)."""
    text = (_data_dir(data_dir) / "wikitext-2" / "valid.txt").read_text(encoding="utf-8")
    starts = [m.start() for m in WIKITEXT_ARTICLE.finditer(text)] or [0]
    if starts[0] != 0:
        starts.insert(0, 0)
    docs = [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]
    return _as_dataset(docs, max_docs, max_chars)


def moby_dick(data_dir=None, max_docs=None, max_chars=None, **metadata):
    """Moby-Dick as one long document (long-context corpus)."""
    return _as_dataset([(_data_dir(data_dir) / "moby-dick.txt").read_text(encoding="utf-8")], max_docs, max_chars)


def process_results(doc, results):
    (loglikelihood,) = results
    words = len(re.split(r"\s+", doc["text"].strip()))
    n_bytes = len(doc["text"].encode("utf-8"))
    return {"word_perplexity": (loglikelihood, words), "byte_perplexity": (loglikelihood, n_bytes),
            "bits_per_byte": (loglikelihood, n_bytes)}
