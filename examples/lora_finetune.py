"""LoRA fine-tuning of a saved ResNet-BK model with PEFT and Trainer; merge and save.

    python examples/lora_finetune.py outputs/demo-model my_corpus.txt --output-dir outputs/lora --steps 100

Adapts the BK mixer's and the FFN's linear maps (resnet_bk_hf.peft_targets.TARGET_MODULES); only
the adapters train. Writes the adapter (OUTPUT_DIR/adapter, loadable with PeftModel.from_pretrained)
and the merged model (OUTPUT_DIR/merged, a plain model directory).
"""
import argparse
import math

import torch
from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, default_data_collator

import resnet_bk_hf  # noqa: F401  (registers the model type)
from resnet_bk_hf.data import tokenize_and_chunk
from resnet_bk_hf.peft_targets import TARGET_MODULES

parser = argparse.ArgumentParser()
parser.add_argument("model_dir")
parser.add_argument("text_file")
parser.add_argument("--output-dir", default="outputs/lora")
parser.add_argument("--block-size", type=int, default=128)
parser.add_argument("--steps", type=int, default=100)
parser.add_argument("--rank", type=int, default=8)
parser.add_argument("--learning-rate", type=float, default=2e-3)
args = parser.parse_args()

tok = AutoTokenizer.from_pretrained(args.model_dir)
model = get_peft_model(AutoModelForCausalLM.from_pretrained(args.model_dir),
                       LoraConfig(task_type="CAUSAL_LM", target_modules=TARGET_MODULES, r=args.rank,
                                  lora_alpha=2 * args.rank, lora_dropout=0.0))
model.print_trainable_parameters()
blocks = tokenize_and_chunk(load_dataset("text", data_files=args.text_file, sample_by="document", split="train"),
                            tok, args.block_size)
if len(blocks) < 2:
    raise SystemExit(f"{args.text_file} gives {len(blocks)} block(s) of {args.block_size} tokens")
split = blocks.train_test_split(test_size=max(1, len(blocks) // 10), shuffle=False)
trainer = Trainer(model=model, train_dataset=split["train"], eval_dataset=split["test"],
                  data_collator=default_data_collator,
                  args=TrainingArguments(output_dir=args.output_dir, max_steps=args.steps,
                                         learning_rate=args.learning_rate, per_device_train_batch_size=8,
                                         logging_steps=10, save_strategy="no", report_to="none"))
before = trainer.evaluate()["eval_loss"]
trainer.train()
after = trainer.evaluate()["eval_loss"]
print(f"held-out perplexity: {math.exp(before):.2f} before, {math.exp(after):.2f} after")
model.save_pretrained(f"{args.output_dir}/adapter")

model.eval()
probe = torch.tensor([split["test"][0]["input_ids"][:32]])
with torch.no_grad():
    adapted = model(input_ids=probe).logits
    merged = model.merge_and_unload()
    print(f"merged vs adapted logits, max abs difference: {(merged(input_ids=probe).logits - adapted).abs().max():.2e}")
merged.save_pretrained(f"{args.output_dir}/merged")
tok.save_pretrained(f"{args.output_dir}/merged")
print(f"saved {args.output_dir}/adapter and {args.output_dir}/merged")
