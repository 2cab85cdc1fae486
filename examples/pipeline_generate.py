"""Text generation with transformers.pipeline on a saved model directory.

    python examples/pipeline_generate.py outputs/demo-model "Mr. Speaker,"
    python examples/pipeline_generate.py outputs/demo-model "Mr. Speaker," --remote-code   # without this package

With --remote-code the model is built from the code saved in the directory (auto_map,
trust_remote_code=True), as it would be after a push to the Hub.
"""
import argparse

from transformers import pipeline

parser = argparse.ArgumentParser()
parser.add_argument("model_dir")
parser.add_argument("prompt", nargs="?", default="Mr. Speaker,")
parser.add_argument("--remote-code", action="store_true")
parser.add_argument("--max-new-tokens", type=int, default=40)
args = parser.parse_args()
if not args.remote_code:
    import resnet_bk_hf  # noqa: F401  (registers the model type with the Auto classes)

generator = pipeline("text-generation", model=args.model_dir, trust_remote_code=args.remote_code)
print("greedy: ", generator(args.prompt, max_new_tokens=args.max_new_tokens, do_sample=False)[0]["generated_text"])
print("sampled:", generator(args.prompt, max_new_tokens=args.max_new_tokens, do_sample=True, top_k=50,
                            temperature=0.8)[0]["generated_text"])
print("model class:", type(generator.model).__module__ + "." + type(generator.model).__name__)
