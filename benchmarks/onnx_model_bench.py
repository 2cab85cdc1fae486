"""A whole model in ONNX Runtime against PyTorch on the CPU: prefill latency, per-token decoding, error.

    python benchmarks/onnx_model_bench.py outputs/demo-model [--lengths 16 128 512] [--threads 2]

Exports MODEL_DIR with torch.onnx (resnet_bk_hf.onnx_export) into a temporary directory, then times
(median of --repeats, batch 1):
    prefill  PyTorch forward (default CPU scan backend) vs ORT model.onnx, at each length
    decode   one token with the state: PyTorch with ResNetBKCache vs ORT model_with_state.onnx
and prints the largest |ORT - PyTorch| logit difference seen.
"""
import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import onnxruntime as ort
import torch
from transformers import AutoModelForCausalLM

import resnet_bk_hf  # noqa: F401  (registers the model type)
from resnet_bk_hf.onnx_export import OnnxResNetBK, export_onnx


def median_ms(fn, repeats):
    """(median, min) milliseconds; on a shared machine the minimum is the least disturbed figure."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times), 1e3 * min(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 128, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir).float().eval()
    n_params = sum(p.numel() for p in model.parameters())
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        export_onnx(model, tmp)
        print(f"{n_params / 1e6:.2f}M parameters; export {time.perf_counter() - start:.1f}s; onnxruntime "
              f"{ort.__version__}, torch {torch.__version__}, {args.threads} threads, batch 1, "
              f"load average {os.getloadavg()[0]:.1f}")
        runner = OnnxResNetBK(tmp, session_options=options)
        print("| tokens | PyTorch prefill ms, median (min) | ORT prefill ms, median (min) | max abs logit diff |")
        print("| --- | --- | --- | --- |")
        worst = 0.0
        g = torch.Generator().manual_seed(0)
        for n in args.lengths:
            ids = torch.randint(2, model.config.vocab_size, (1, n), generator=g)
            with torch.no_grad():
                ref = model(ids, use_cache=False).logits.numpy()
                t_torch = median_ms(lambda: model(ids, use_cache=False), args.repeats)
            got = runner.logits(ids.numpy())
            t_ort = median_ms(lambda: runner.logits(ids.numpy()), args.repeats)
            diff = float(np.abs(got - ref).max())
            worst = max(worst, diff)
            print(f"| {n} | {t_torch[0]:.1f} ({t_torch[1]:.1f}) | {t_ort[0]:.1f} ({t_ort[1]:.1f}) | {diff:.1e} |")
        prompt = torch.randint(2, model.config.vocab_size, (1, 32), generator=g)
        nxt = torch.randint(2, model.config.vocab_size, (1, 1), generator=g)
        with torch.no_grad():
            cache = model(prompt, use_cache=True).cache

            def torch_step():
                # a copy of the state so that every timed step starts from the same 32-token prefix
                c = type(cache)(model.config, 1)
                c.states, c.seqlen_offset = list(cache.states), cache.seqlen_offset
                return model(nxt, cache=c, use_cache=True).logits

            ref = torch_step().numpy()
            t_torch = median_ms(torch_step, 10 * args.repeats)
        _, state = runner.step(prompt.numpy())
        got = runner.step(nxt.numpy(), state)[0]
        t_ort = median_ms(lambda: runner.step(nxt.numpy(), state), 10 * args.repeats)
        worst = max(worst, float(np.abs(got - ref).max()))
        print(f"\ndecode one token after a 32-token prompt, median (min): PyTorch {t_torch[0]:.2f} "
              f"({t_torch[1]:.2f}) ms, ORT {t_ort[0]:.2f} ({t_ort[1]:.2f}) ms; "
              f"largest logit difference overall {worst:.1e}")


if __name__ == "__main__":
    main()
