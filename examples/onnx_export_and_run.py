"""Export a saved model to ONNX and generate with ONNX Runtime; compare with PyTorch.

    python examples/onnx_export_and_run.py outputs/demo-model outputs/demo-onnx "Mr. Speaker,"

Uses Optimum when it is installed (transformers < 4.58): export_with_optimum and
ORTResNetBKForCausalLM.generate; otherwise torch.onnx and the numpy runner OnnxResNetBK.
"""
import sys
import time

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import resnet_bk_hf  # noqa: F401  (registers the model type)
from resnet_bk_hf.onnx_export import OnnxResNetBK, export_onnx

model_dir = sys.argv[1] if len(sys.argv) > 1 else "outputs/demo-model"
onnx_dir = sys.argv[2] if len(sys.argv) > 2 else "outputs/demo-onnx"
prompt = sys.argv[3] if len(sys.argv) > 3 else "Mr. Speaker,"
try:
    from resnet_bk_hf.optimum_onnx import ORTResNetBKForCausalLM, export_with_optimum
except ImportError:
    export_with_optimum = None

start = time.perf_counter()
(export_with_optimum or export_onnx)(model_dir, onnx_dir)
print(f"exported to {onnx_dir} in {time.perf_counter() - start:.1f}s "
      f"({'Optimum' if export_with_optimum else 'torch.onnx'})")

tok = AutoTokenizer.from_pretrained(model_dir)
ids = tok(prompt, return_tensors="pt").input_ids
torch_model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
with torch.no_grad():
    reference = torch_model.generate(ids, max_new_tokens=30, do_sample=False, pad_token_id=tok.pad_token_id)

runner = OnnxResNetBK(onnx_dir)
tokens = runner.greedy_generate(ids.numpy(), max_new_tokens=30, eos_token_id=tok.eos_token_id)
print("ONNX Runtime:", tok.decode(tokens[0]))
print("same tokens as PyTorch:", np.array_equal(tokens, reference.numpy()))
if export_with_optimum is not None:
    ort_model = ORTResNetBKForCausalLM.from_pretrained(onnx_dir)
    sampled = ort_model.generate(ids, max_new_tokens=30, do_sample=True, top_k=50, temperature=0.8,
                                 pad_token_id=tok.pad_token_id)
    print("ORTResNetBKForCausalLM, sampled:", tok.decode(sampled[0]))
