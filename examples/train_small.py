"""Train a ResNet-BK on the built-in corpus with your own sizes, through transformers.Trainer.

    python examples/train_small.py --hidden-size 192 --layers 4 --steps 500 --mixer diag
"""
import argparse
import math

from transformers import Trainer, TrainingArguments, default_data_collator

from resnet_bk_hf import ResNetBKConfig, ResNetBKForCausalLM
from resnet_bk_hf.data import load_demo_corpus, tokenize_and_chunk
from resnet_bk_hf.tokenization import load_tokenizer
from resnet_bk_hf.training import NonFiniteLossCallback

parser = argparse.ArgumentParser()
parser.add_argument("--hidden-size", type=int, default=128)
parser.add_argument("--layers", type=int, default=4)
parser.add_argument("--heads", type=int, default=4)
parser.add_argument("--shifts", type=int, default=4)
parser.add_argument("--mixer", choices=["resolvent", "diag"], default="resolvent")
parser.add_argument("--block-size", type=int, default=128)
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--output-dir", default="outputs/train-small")
args = parser.parse_args()

tok = load_tokenizer()
corpus = load_demo_corpus()
train = tokenize_and_chunk(corpus["train"], tok, args.block_size)
valid = tokenize_and_chunk(corpus["validation"], tok, args.block_size)
config = ResNetBKConfig(vocab_size=len(tok), hidden_size=args.hidden_size, num_hidden_layers=args.layers,
                        num_heads=args.heads, num_shifts=args.shifts, mixer_mode=args.mixer)
model = ResNetBKForCausalLM(config)
trainer = Trainer(model=model, train_dataset=train, eval_dataset=valid, data_collator=default_data_collator,
                  callbacks=[NonFiniteLossCallback()],
                  args=TrainingArguments(output_dir=args.output_dir, max_steps=args.steps, learning_rate=3e-3,
                                         per_device_train_batch_size=16, lr_scheduler_type="cosine",
                                         warmup_steps=args.steps // 20, logging_steps=10, report_to="none",
                                         logging_nan_inf_filter=False, max_grad_norm=1.0))
trainer.train()
print("validation perplexity:", math.exp(trainer.evaluate()["eval_loss"]))
trainer.save_model(args.output_dir)
tok.save_pretrained(args.output_dir)
