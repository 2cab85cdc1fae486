"""`make demo` / `resnet-bk demo`: train a small ResNet-BK on the built-in corpus and report on it.

The run is resnet_bk_hf/demo_config.yaml, loaded and trained exactly as `resnet-bk train` does
(training.load_config + training.run_training: the same Trainer builder, fault handling and checkpoints);
this module adds the preset for a GPU, the report (validation perplexity, two continuations of a prompt,
the loss curve) and results/demo.json. The model folder (default outputs/demo-model) holds the model and
tokenizer only; checkpoints go to a `demo-checkpoints` folder beside it and are removed once the model is saved.
"""
from __future__ import annotations

import json
import math
import platform
from pathlib import Path

import torch
import transformers

from . import __version__

DEMO_CONFIG = Path(__file__).parent / "demo_config.yaml"
# The GPU preset, as overrides of demo_config.yaml (the CPU preset): sized for a few minutes on one GPU.
CUDA_OVERRIDES = {"model.hidden_size": 512, "model.num_hidden_layers": 8, "model.num_heads": 8,
                  "model.num_shifts": 8, "data.block_size": 512, "training.per_device_train_batch_size": 32,
                  "training.per_device_eval_batch_size": 32, "training.max_steps": 600,
                  "training.learning_rate": 1.5e-3, "training.use_cpu": False, "training.bf16": True}
PROMPT = "Mr. Speaker, Mr. President, Members of the Congress,"
RUN_FILES = ("events.jsonl", "train_log.jsonl", "train_summary.json", "trainer_state.json")


def demo_overrides(output_dir, max_steps, seed, device) -> dict:
    """{section.key: value} applied to demo_config.yaml for these command-line choices."""
    overrides = {"output.model_dir": str(output_dir),
                 "training.output_dir": str(Path(output_dir).parent / "demo-checkpoints"),
                 "training.seed": seed, "training.data_seed": seed}
    if device == "cuda":
        overrides.update(CUDA_OVERRIDES)
    steps = max_steps or overrides.get("training.max_steps", 300)
    overrides.update({"training.max_steps": steps, "training.warmup_steps": max(1, steps // 20),
                      "training.eval_steps": max(1, steps // 4), "training.save_steps": max(1, steps // 2)})
    return overrides


def clear_previous_run(folder: Path) -> None:
    """Remove what an earlier demo run left in its checkpoint folder (an interrupted one leaves checkpoints)."""
    import shutil
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.is_dir() and path.name.startswith(("checkpoint-", "corrupt-checkpoint-")):
            shutil.rmtree(path)
        elif path.name in RUN_FILES:
            path.unlink()


def generate_continuations(model, tokenizer, prompt: str = PROMPT) -> tuple[str, str]:
    """(greedy, sampled) continuations of 40 tokens."""
    model.eval()
    inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
    with torch.no_grad():
        greedy = model.generate(**inputs, max_new_tokens=40, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        sampled = model.generate(**inputs, max_new_tokens=40, do_sample=True, top_k=50, temperature=0.8,
                                 pad_token_id=tokenizer.pad_token_id)
    n_prompt = inputs["input_ids"].shape[1]
    return tokenizer.decode(greedy[0, n_prompt:]), tokenizer.decode(sampled[0, n_prompt:])


def run_demo(output_dir="outputs/demo-model", results_dir="results", max_steps=None, seed=0, device=None):
    from .training import load_config, plot_loss_curve, run_training
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg = load_config(DEMO_CONFIG, demo_overrides(output_dir, max_steps, seed, device))
    clear_previous_run(Path(cfg.training["output_dir"]))
    run = run_training(cfg)
    trainer = run.trainer
    model, tokenizer = trainer.model, run.tokenizer
    last_eval = next((h for h in reversed(trainer.state.log_history) if "eval_loss" in h), None)
    if last_eval is not None and last_eval["step"] == run.global_step:   # evaluated at the last step already
        eval_loss = last_eval["eval_loss"]
    else:
        eval_loss = trainer.evaluate()["eval_loss"]
    greedy_text, sampled_text = generate_continuations(model, tokenizer)
    steps, block, batch = run.global_step, cfg.data.block_size, trainer.args.per_device_train_batch_size
    n_params = sum(p.numel() for p in model.parameters())
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    png = plot_loss_curve(trainer.state.log_history, results_dir / "demo_loss.png",
                          f"ResNet-BK demo ({n_params / 1e6:.1f}M params, {device})")
    result = {
        "validation_loss": eval_loss, "validation_perplexity": math.exp(eval_loss),
        "validation_tokens": len(trainer.eval_dataset) * block,
        "train_tokens_seen": steps * batch * trainer.args.gradient_accumulation_steps * block,
        "train_seconds": run.metrics["train_metrics"].get("train_runtime"), "max_steps": steps,
        "parameters": n_params, "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else platform.processor(),
        "prompt": PROMPT, "greedy_continuation": greedy_text, "sampled_continuation": sampled_text,
        "model_dir": str(output_dir), "checkpoint_dir": cfg.training["output_dir"], "loss_curve": str(png),
        "config": model.config.to_diff_dict(), "log_history": trainer.state.log_history,
        "resnet_bk_hf_version": __version__, "torch_version": torch.__version__,
        "transformers_version": transformers.__version__, "cpu_threads": torch.get_num_threads(),
    }
    (results_dir / "demo.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"\nvalidation perplexity: {math.exp(eval_loss):.2f} (loss {eval_loss:.4f} nats/token, "
          f"SOTU 1988-1990, {result['validation_tokens']} tokens)")
    print(f"train time: {result['train_seconds']:.0f}s")
    print(f"prompt:  {PROMPT!r}\ngreedy:  {greedy_text!r}\nsampled: {sampled_text!r}")
    print(f"saved model to {output_dir}; wrote {results_dir / 'demo.json'} and {png} "
          f"(run logs in {cfg.training['output_dir']})")
    return result
