"""`resnet-bk lm-eval`: evaluate saved models with lm-eval-harness's `hf` model on the bench tasks; tabulate.

The models go through lm-eval's HFLM (`--model hf`, backend=causal) exactly as `lm_eval --model hf`
would load them; importing resnet_bk_hf first registers ResNet-BK with AutoModelForCausalLM, so no
remote code is needed. MambaForCausalLM and Llama are native to transformers. Offline: the tasks
read the bench corpora from disk (lm_eval_tasks/utils.py) and HF_HUB_OFFLINE / HF_DATASETS_OFFLINE
are set. The same evaluation from lm-eval's own command line:

    python -m resnet_bk_hf.compare.lm_eval_run run --model hf --model_args pretrained=DIR backend=causal \
        --include_path $(python -c "import resnet_bk_hf.compare.lm_eval_tasks as t; print(t.TASK_DIR)") \
        --tasks bench_sotu_valid --metadata '{"data_dir": "../shared/data"}'
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional

METRICS = ("word_perplexity", "byte_perplexity", "bits_per_byte")


def _offline():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def evaluate_model(model_dir: str, tasks: List[str], data_dir: Optional[str] = None, device: Optional[str] = None,
                   batch_size: int = 8, max_length: int = 2048, limit: Optional[int] = None, dtype: str = "float32",
                   metadata: Optional[Dict] = None) -> Dict:
    """lm_eval.simple_evaluate(model="hf", ...) on our task folder; returns lm-eval's results dict."""
    _offline()
    import lm_eval
    from lm_eval.tasks import TaskManager

    import resnet_bk_hf  # noqa: F401  (registers ResNet-BK with the Auto classes before HFLM loads it)
    from .architectures import init_only_overrides
    from .lm_eval_tasks import TASK_DIR

    if not Path(model_dir, "config.json").is_file():
        raise FileNotFoundError(f"no saved model (config.json) in {model_dir}")
    import torch
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    meta = {"data_dir": str(data_dir) if data_dir else None, **(metadata or {})}
    task_manager = TaskManager(include_path=str(TASK_DIR), metadata=meta)
    model_args = {"pretrained": str(model_dir), "backend": "causal", "dtype": dtype, "max_length": max_length,
                  "trust_remote_code": False, **init_only_overrides(model_dir)}   # HFLM hands these to from_pretrained
    return lm_eval.simple_evaluate(model="hf", model_args=model_args, tasks=tasks, task_manager=task_manager,
                                   device=device, batch_size=batch_size, limit=limit, log_samples=False,
                                   metadata=meta)


def table(rows: Dict[str, Dict]) -> str:
    """Markdown table: one row per (model, task), the three perplexity metrics."""
    lines = ["| model | task | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
    for model, results in rows.items():
        for task, values in sorted(results["results"].items()):
            cells = [f"{values[f'{m},none']:.4f}" if isinstance(values.get(f"{m},none"), (int, float)) else "-"
                     for m in METRICS]
            lines.append(f"| {model} | {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_lm_eval(models: List[str], tasks: str = "bench_sotu_valid,bench_wikitext2_valid",
                output_dir: str = "results/lm_eval", data_dir: Optional[str] = None, device: Optional[str] = None,
                batch_size: int = 8, max_length: int = 2048, limit: Optional[int] = None,
                dtype: str = "float32", metadata: Optional[Dict] = None) -> Dict:
    task_list = [t for t in tasks.split(",") if t]
    if not task_list:
        raise ValueError(f"--tasks must name at least one task, got {tasks!r}")
    rows = {}
    for model_dir in models:
        res = evaluate_model(model_dir, task_list, data_dir, device, batch_size, max_length, limit, dtype, metadata)
        rows[model_dir] = {"results": res["results"], "config": {k: str(v) for k, v in res.get("config", {}).items()},
                           "versions": res.get("versions"), "model_type": _model_type(model_dir)}
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = table(rows)
    (out / "lm_eval.json").write_text(json.dumps(rows, indent=2, default=str))
    (out / "lm_eval.md").write_text(text + "\n")
    print(text)
    print(f"wrote {out / 'lm_eval.json'} and {out / 'lm_eval.md'}")
    return rows


def _model_type(model_dir: str) -> Optional[str]:
    try:
        return json.loads(Path(model_dir, "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        return None


def main(argv=None):
    """lm-eval's own command line, with ResNet-BK registered and offline defaults."""
    _offline()
    import resnet_bk_hf  # noqa: F401
    from lm_eval.__main__ import cli_evaluate
    sys.argv = ["lm_eval", *(sys.argv[1:] if argv is None else argv)]
    cli_evaluate()


if __name__ == "__main__":
    main()
