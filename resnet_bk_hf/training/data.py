"""The tokenizer and the packed datasets of a `resnet-bk train` run (data/pipeline.py does the work), saying
what it does meanwhile: a first run tokenizes the whole corpus before the first step."""
from __future__ import annotations

from .progress import quiet_library_bars, say, stdout_is_terminal
from .schema import TrainConfig


def load_training_tokenizer(cfg: TrainConfig):
    from ..tokenization import load_tokenizer
    if cfg.data.tokenizer is None:
        return load_tokenizer()
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(cfg.data.tokenizer)


def _packed(name: str, sources, cfg: TrainConfig, tokenizer):
    from datasets import Dataset

    from ..data.pipeline import load_text_corpus, pack_documents
    d = cfg.data
    shown = ", ".join(f"hub:{source['hub']}" if isinstance(source, dict) else str(source) for source in sources)
    say(f"data: loading the {name} corpus from {shown}")
    texts = load_text_corpus(sources, streaming=d.streaming, text_field=d.text_field, txt_sample_by=d.txt_sample_by)
    if isinstance(texts, Dataset):
        workers = f" with {d.num_proc} processes" if d.num_proc else ""
        say(f"data: tokenizing {len(texts):,} {name} documents into blocks of {d.block_size} tokens{workers} "
            "(cached by `datasets` for later runs)")
    else:
        say(f"data: streaming the {name} corpus: documents are tokenized as training reads them")
    packed = pack_documents(texts, tokenizer, d.block_size, num_proc=d.num_proc)
    if isinstance(packed, Dataset):
        say(f"data: {name}: {len(packed):,} blocks of {d.block_size} tokens ({len(packed) * d.block_size:,} tokens)")
    return packed


def build_datasets(cfg: TrainConfig, tokenizer, seed: int):
    """(train, validation or None): packed blocks of `data.block_size` tokens (data/pipeline.py)."""
    from accelerate import PartialState
    d = cfg.data
    if not stdout_is_terminal():
        quiet_library_bars()
    with PartialState().main_process_first():   # rank 0 tokenizes, the rest read its cache
        train = _packed("train", d.train, cfg, tokenizer)
        valid = _packed("validation", d.validation, cfg, tokenizer) if d.validation else None
    if d.streaming:
        train = train.shuffle(seed=seed, buffer_size=d.shuffle_buffer)
    return train, valid
