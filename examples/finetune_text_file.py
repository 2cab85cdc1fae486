"""Fine-tune a saved ResNet-BK model on a local text file with transformers.Trainer.

    python examples/finetune_text_file.py outputs/demo-model my_corpus.txt --output-dir outputs/finetuned --steps 100

The file is read whole (datasets' "text" loader, one document), cut into blocks of --block-size
tokens; the last tenth of the blocks is held out for evaluation. The result is a saved model
directory (weights, tokenizer, code with auto_map) like the one you started from.
"""
import argparse
import math

from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, default_data_collator

import resnet_bk_hf  # noqa: F401  (registers the model type)
from resnet_bk_hf.data import tokenize_and_chunk
from resnet_bk_hf.training import NonFiniteLossCallback

parser = argparse.ArgumentParser()
parser.add_argument("model_dir")
parser.add_argument("text_file")
parser.add_argument("--output-dir", default="outputs/finetuned")
parser.add_argument("--block-size", type=int, default=128)
parser.add_argument("--steps", type=int, default=100)
parser.add_argument("--batch-size", type=int, default=8)
parser.add_argument("--learning-rate", type=float, default=5e-4)
args = parser.parse_args()

tok = AutoTokenizer.from_pretrained(args.model_dir)
model = AutoModelForCausalLM.from_pretrained(args.model_dir)
text = load_dataset("text", data_files=args.text_file, sample_by="document", split="train")
blocks = tokenize_and_chunk(text, tok, args.block_size)
if len(blocks) < 2:
    raise SystemExit(f"{args.text_file} gives {len(blocks)} block(s) of {args.block_size} tokens; "
                     "use a longer file or a smaller --block-size")
split = blocks.train_test_split(test_size=max(1, len(blocks) // 10), shuffle=False)
trainer = Trainer(
    model=model, train_dataset=split["train"], eval_dataset=split["test"], data_collator=default_data_collator,
    callbacks=[NonFiniteLossCallback()],
    args=TrainingArguments(output_dir=args.output_dir, max_steps=args.steps, learning_rate=args.learning_rate,
                           per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.batch_size,
                           lr_scheduler_type="cosine", warmup_steps=max(1, args.steps // 20), logging_steps=10,
                           save_strategy="no", report_to="none", logging_nan_inf_filter=False, max_grad_norm=1.0))
before = trainer.evaluate()["eval_loss"]
trainer.train()
after = trainer.evaluate()["eval_loss"]
print(f"held-out perplexity: {math.exp(before):.2f} before, {math.exp(after):.2f} after "
      f"({len(split['train'])} train / {len(split['test'])} held-out blocks of {args.block_size} tokens)")
trainer.save_model(args.output_dir)
tok.save_pretrained(args.output_dir)
print(f"saved {args.output_dir}")
