"""Forward+backward time of the demo-size model on the CPU, per scan backend.

    python benchmarks/cpu_scan_backends.py [results/cpu_scan_backends.json]

Prints a table and writes JSON. Median of 5 runs after 1 warm-up, batch 16 x 128 tokens.
"""
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from resnet_bk_hf import ResNetBKConfig, ResNetBKForCausalLM


def time_backend(backend, repeats=5):
    torch.manual_seed(0)
    cfg = ResNetBKConfig(vocab_size=8192, hidden_size=128, num_hidden_layers=4, num_heads=4, num_shifts=4,
                         scan_backend=backend)
    model = ResNetBKForCausalLM(cfg)
    ids = torch.randint(0, cfg.vocab_size, (16, 128))
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        model(ids, labels=ids, use_cache=False).loss.backward()
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "results/cpu_scan_backends.json")
    rows = [{"backend": b, "fwd_bwd_seconds": time_backend(b)} for b in ("naive", "recurrent")]
    print(f"{'backend':<10} {'fwd+bwd (s)':>12}")
    for r in rows:
        print(f"{r['backend']:<10} {r['fwd_bwd_seconds']:>12.3f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "threads": torch.get_num_threads(), "cpu": platform.processor(),
                               "torch": torch.__version__, "shape": "batch 16 x 128, demo CPU preset"}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
