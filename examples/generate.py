"""Load a saved ResNet-BK model with the Auto classes and continue a prompt.

    python examples/generate.py outputs/demo-model "Mr. Speaker, "
"""
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import resnet_bk_hf  # noqa: F401  (registers the model type)

model_dir = sys.argv[1] if len(sys.argv) > 1 else "outputs/demo-model"
prompt = sys.argv[2] if len(sys.argv) > 2 else "Mr. Speaker, "
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
inputs = tok(prompt, return_tensors="pt")
with torch.no_grad():
    greedy = model.generate(**inputs, max_new_tokens=40, do_sample=False)
    sampled = model.generate(**inputs, max_new_tokens=40, do_sample=True, top_k=50, temperature=0.8)
print("greedy: ", tok.decode(greedy[0]))
print("sampled:", tok.decode(sampled[0]))
