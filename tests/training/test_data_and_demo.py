"""Built-in corpus, chunking, the Trainer guard against NaN, and the demo end to end (few steps)."""
import json
import math

import pytest
import torch
from transformers import Trainer, TrainingArguments, default_data_collator

from resnet_bk_hf import ResNetBKForCausalLM
from resnet_bk_hf.data import load_demo_corpus, tokenize_and_chunk
from resnet_bk_hf.tokenization import load_tokenizer
from resnet_bk_hf.training import NonFiniteLossCallback, NonFiniteLossError

from conftest import tiny_config


def test_demo_corpus_splits_by_year():
    corpus = load_demo_corpus()
    assert len(corpus["train"]) == 27 and len(corpus["validation"]) == 3
    assert max(corpus["train"]["year"]) < 1988 <= min(corpus["validation"]["year"])
    assert all(len(t) > 1000 for t in corpus["validation"]["text"])


def test_missing_corpus_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="demo corpus missing"):
        load_demo_corpus(tmp_path / "nope.jsonl")


def test_chunks_are_full_blocks_with_eos_between_documents():
    tok = load_tokenizer()
    corpus = load_demo_corpus()["validation"]
    blocks = tokenize_and_chunk(corpus, tok, 64)
    assert all(len(b) == 64 for b in blocks["input_ids"])
    assert blocks[0]["input_ids"] == blocks[0]["labels"]
    flat = [t for b in blocks["input_ids"] for t in b]
    assert flat.count(tok.eos_token_id) >= 2  # documents are separated
    with pytest.raises(ValueError, match="block_size must be >= 2"):
        tokenize_and_chunk(corpus, tok, 1)



def test_nan_loss_stops_training_with_a_clear_error(tmp_path):
    from transformers import TrainerCallback
    model = ResNetBKForCausalLM(tiny_config())
    data = [{"input_ids": torch.randint(0, 97, (16,)), "labels": torch.randint(0, 97, (16,))} for _ in range(64)]

    class Poison(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 4:
                with torch.no_grad():
                    model.lm_head.weight.fill_(float("nan"))

    args = TrainingArguments(output_dir=str(tmp_path), max_steps=12, per_device_train_batch_size=4, logging_steps=2,
                             save_strategy="steps", save_steps=2, report_to="none", use_cpu=True,
                             logging_nan_inf_filter=False, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=default_data_collator,
                      callbacks=[NonFiniteLossCallback(), Poison()])
    with pytest.raises(NonFiniteLossError, match=r"became nan at step 6.*resume from .*checkpoint-4"):
        trainer.train()


def test_demo_end_to_end(tmp_path, monkeypatch):
    from resnet_bk_hf.demo import DEMO_CONFIG, run_demo
    from training_helpers import spy_on_build_trainer
    calls = spy_on_build_trainer(monkeypatch)
    result = run_demo(output_dir=tmp_path / "model", results_dir=tmp_path / "results", max_steps=4)
    # the demo is demo_config.yaml run through the one Trainer builder, as `resnet-bk train` runs a config
    assert len(calls) == 1 and calls[0][0].path == DEMO_CONFIG and calls[0][1].args.max_steps == 4
    # the model folder is the one to upload: model and tokenizer, no checkpoint (optimizer state) inside;
    # the checkpoints went to demo-checkpoints beside it and were removed once the model was saved
    assert not [p.name for p in (tmp_path / "model").iterdir() if p.is_dir()]
    saved = {p.name for p in (tmp_path / "model").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= saved and "training_args.bin" not in saved
    run_dir = tmp_path / "demo-checkpoints"
    assert (run_dir / "train_summary.json").is_file() and not list(run_dir.glob("checkpoint-*"))
    saved = json.loads((tmp_path / "results" / "demo.json").read_text())
    assert saved["max_steps"] == 4 and math.isfinite(saved["validation_perplexity"])
    assert saved["validation_perplexity"] == pytest.approx(math.exp(saved["validation_loss"]))
    assert (tmp_path / "results" / "demo_loss.png").stat().st_size > 1000
    assert result["greedy_continuation"] and result["sampled_continuation"]
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    tok = AutoTokenizer.from_pretrained(tmp_path / "model")
    assert model.config.vocab_size == len(tok)


def test_trainer_predict_returns_logits_not_the_cache(tmp_path):
    model = ResNetBKForCausalLM(tiny_config())
    data = [{"input_ids": torch.randint(0, 97, (8,)), "labels": torch.randint(0, 97, (8,))} for _ in range(6)]
    args = TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=4, report_to="none",
                             use_cpu=True, disable_tqdm=True)
    out = Trainer(model=model, args=args, data_collator=default_data_collator).predict(data)
    assert out.predictions.shape == (6, 8, 97) and math.isfinite(out.metrics["test_loss"])
