"""`make demo` / `resnet-bk demo`: train a small ResNet-BK on the built-in corpus and report on it."""
from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments, default_data_collator, set_seed

from . import __version__
from .configuration import ResNetBKConfig
from .data import load_demo_corpus, tokenize_and_chunk
from .modeling import ResNetBKForCausalLM
from .tokenization import load_tokenizer
from .training import NonFiniteLossCallback, plot_loss_curve

# Sized for a few minutes: 2 CPU cores, or one GPU.
PRESETS = {
    "cpu": dict(model=dict(hidden_size=128, num_hidden_layers=4, num_heads=4, num_shifts=4),
                block_size=128, batch_size=16, max_steps=300, learning_rate=3e-3),
    "cuda": dict(model=dict(hidden_size=512, num_hidden_layers=8, num_heads=8, num_shifts=8),
                 block_size=512, batch_size=32, max_steps=600, learning_rate=1.5e-3),
}
PROMPT = "Mr. Speaker, Mr. President, Members of the Congress,"


def run_demo(output_dir="outputs/demo-model", results_dir="results", max_steps=None, seed=0, device=None):
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    preset = PRESETS["cuda" if device == "cuda" else "cpu"]
    steps = max_steps or preset["max_steps"]
    set_seed(seed)
    tokenizer = load_tokenizer()
    corpus = load_demo_corpus()
    train = tokenize_and_chunk(corpus["train"], tokenizer, preset["block_size"])
    valid = tokenize_and_chunk(corpus["validation"], tokenizer, preset["block_size"])
    config = ResNetBKConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                            bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                            **preset["model"])
    model = ResNetBKForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"ResNet-BK {n_params / 1e6:.2f}M parameters on {device}; {len(train)} train and {len(valid)} "
          f"validation blocks of {preset['block_size']} tokens; {steps} steps")
    args = TrainingArguments(
        output_dir=str(Path(output_dir) / "checkpoints"), max_steps=steps,
        per_device_train_batch_size=preset["batch_size"], per_device_eval_batch_size=preset["batch_size"],
        learning_rate=preset["learning_rate"], lr_scheduler_type="cosine", warmup_steps=max(1, steps // 20),
        weight_decay=0.1, max_grad_norm=1.0, logging_steps=10, eval_strategy="steps",
        eval_steps=max(1, steps // 4), save_strategy="steps", save_steps=max(1, steps // 2), save_total_limit=1,
        report_to="none", use_cpu=device == "cpu", bf16=device == "cuda", seed=seed, data_seed=seed,
        logging_nan_inf_filter=False, dataloader_num_workers=0, disable_tqdm=False)
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=valid,
                      data_collator=default_data_collator, callbacks=[NonFiniteLossCallback()])
    start = time.time()
    trainer.train()
    train_seconds = time.time() - start
    eval_loss = trainer.evaluate()["eval_loss"]
    model.eval()
    prompt = tokenizer(PROMPT, return_tensors="pt").to(model.device)
    with torch.no_grad():
        greedy = model.generate(**prompt, max_new_tokens=40, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        sampled = model.generate(**prompt, max_new_tokens=40, do_sample=True, top_k=50, temperature=0.8,
                                 pad_token_id=tokenizer.pad_token_id)
    n_prompt = prompt["input_ids"].shape[1]
    greedy_text = tokenizer.decode(greedy[0, n_prompt:])
    sampled_text = tokenizer.decode(sampled[0, n_prompt:])
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    png = plot_loss_curve(trainer.state.log_history, results_dir / "demo_loss.png",
                          f"ResNet-BK demo ({n_params / 1e6:.1f}M params, {device})")
    result = {
        "validation_loss": eval_loss, "validation_perplexity": math.exp(eval_loss),
        "validation_tokens": len(valid) * preset["block_size"], "train_tokens_seen": steps * preset["batch_size"]
        * preset["block_size"], "train_seconds": train_seconds, "max_steps": steps, "parameters": n_params,
        "device": device, "device_name": torch.cuda.get_device_name() if device == "cuda" else platform.processor(),
        "prompt": PROMPT, "greedy_continuation": greedy_text, "sampled_continuation": sampled_text,
        "model_dir": str(output_dir), "loss_curve": str(png), "config": config.to_diff_dict(),
        "log_history": trainer.state.log_history, "resnet_bk_hf_version": __version__,
        "torch_version": torch.__version__,
    }
    (results_dir / "demo.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"\nvalidation perplexity: {math.exp(eval_loss):.2f} (loss {eval_loss:.4f} nats/token, "
          f"SOTU 1988-1990, {result['validation_tokens']} tokens)")
    print(f"train time: {train_seconds:.0f}s")
    print(f"prompt:  {PROMPT!r}\ngreedy:  {greedy_text!r}\nsampled: {sampled_text!r}")
    print(f"saved model to {output_dir}; wrote {results_dir / 'demo.json'} and {png}")
    return result
