"""Aggregate result.json files into summary.json (statistics over seeds, paired tests) and figures."""
from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

from .fairness import check_comparable
from .stats import describe, paired_test

RUN_METRICS = {  # name -> how to read it from a result.json
    "train_tokens_per_second": lambda r: r["train"].get("tokens_per_second"),
    "train_tokens_per_second_steady": lambda r: r["train"].get("tokens_per_second_steady"),
    "peak_memory_bytes": lambda r: r["train"].get("peak_memory_bytes"),
    "final_train_loss": lambda r: r.get("final_train_loss"),
    "loss_spikes": lambda r: r.get("loss_spikes"),
    "train_flops_per_token": lambda r: r["flops_per_token"]["train"],
}
PAIRED_METRICS = ("loss", "bits_per_byte")
# Throughput is a run's own only where it had the GPU alone (runs of processes sharing it record how many).
THROUGHPUT_METRICS = ("train_tokens_per_second", "train_tokens_per_second_steady")


def had_gpu_alone(result: Dict) -> bool:
    return (result["train"].get("gpu_shared_by_processes") or 1) == 1


def load_results(run_dirs: List[Path]) -> List[Dict]:
    results = []
    for d in run_dirs:
        for path in sorted(Path(d).glob("*/*/seed*/result.json")):
            r = json.loads(path.read_text())
            r["result_path"] = str(path)
            results.append(r)
    return results


def _metric_table(runs: List[Dict]) -> Dict:
    solo = [r for r in runs if had_gpu_alone(r)]
    table = {name: describe([get(r) for r in (solo if name in THROUGHPUT_METRICS else runs)])
             for name, get in RUN_METRICS.items()}
    table["throughput_seeds"] = sorted(r["seed"] for r in solo)
    for vname in sorted({v for r in runs for v in r.get("validation", {})}):
        for key in ("loss", "perplexity", "bits_per_byte"):
            table[f"{vname}.{key}"] = describe([r["validation"][vname][key] for r in runs
                                                if vname in r.get("validation", {})])
    return table


def aggregate(cfg, run_dirs: List[Path], out: Path) -> Dict:
    results = [r for r in load_results(run_dirs) if r.get("size") is not None]
    summary = {"name": cfg.name, "status": "no runs yet" if not results else "ok", "sizes": {}, "figures": []}
    if results:
        summary["fairness"] = check_comparable(results, cfg.param_tolerance)  # raises FairnessError
    by_size = defaultdict(list)
    for r in results:
        by_size[r["size"]].append(r)
    for size, runs in by_size.items():
        arch_runs = defaultdict(list)
        for r in runs:
            arch_runs[r["arch"]].append(r)
        entry = {"architectures": {}, "comparisons": {}}
        for arch, rs in arch_runs.items():
            ok = [r for r in rs if r["status"] == "ok"]
            first = rs[0]
            entry["architectures"][arch] = {
                "runs": len(rs), "ok": len(ok), "statuses": {r["seed"]: r["status"] for r in rs},
                "non_embedding_params": first["parameters"]["non_embedding"],
                "total_params": first["parameters"]["total"], "model_class": first.get("model_class"),
                "spec": first["spec"], "flops_per_token": first["flops_per_token"],
                "mamba_scan_path": sorted({r.get("mamba_scan_path") for r in rs if r.get("mamba_scan_path")}) or None,
                "scan_backend": sorted({r.get("scan_backend") for r in rs if r.get("scan_backend")}) or None,
                "attn_implementation": first.get("attn_implementation"),
                "device": sorted({r["environment"].get("device_name", r["environment"]["device"]) for r in rs}),
                "metrics": _metric_table(ok)}
        for a, b in itertools.combinations(sorted(arch_runs), 2):
            comp = {}
            for vname in sorted({v for r in runs for v in r.get("validation", {})}):
                for key in PAIRED_METRICS:
                    va, vb = ({r["seed"]: r["validation"][vname][key] for r in arch_runs[x]
                               if vname in r.get("validation", {})} for x in (a, b))
                    comp[f"{vname}.{key}"] = paired_test(va, vb)
            tp, tq = ({r["seed"]: r["train"].get("tokens_per_second") or math.nan for r in arch_runs[x]
                       if had_gpu_alone(r)} for x in (a, b))
            comp["train_tokens_per_second"] = paired_test(tp, tq)
            entry["comparisons"][f"{a} - {b}"] = comp
        summary["sizes"][size] = entry
    from .figures import plot_curves, plot_validation
    for size, runs in by_size.items():
        summary["figures"] += plot_curves(runs, out / f"curves_{size}", f"{cfg.name} / {size}")
        summary["figures"] += plot_validation(summary["sizes"][size], out / f"validation_{size}",
                                              f"{cfg.name} / {size}")
    long_runs = load_long_context(out)
    if long_runs:
        from .figures import plot_long_context
        summary["status"] = "ok"
        summary["long_context"] = long_runs
        summary["figures"] += plot_long_context(long_runs, out / "long_context", cfg.name)
    # relative to summary.json, so the record still points at the figures after the folder is copied elsewhere
    summary["figures"] = [str(Path(f).relative_to(out)) for f in summary["figures"]]
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def load_long_context(out: Path) -> List[Dict]:
    rows = []
    for path in sorted((out / "long_context").glob("*/N*/result.json")):
        r = json.loads(path.read_text())
        rows.append({k: r.get(k) for k in ("arch", "seq_len", "status", "error", "final_train_loss", "loss_spikes",
                                            "nonfinite_loss", "max_grad_norm", "streaming", "batch_size",
                                            "mamba_scan_path")}
                    | {"tokens_per_second": r.get("train", {}).get("tokens_per_second"),
                       "peak_memory_bytes": r.get("train", {}).get("peak_memory_bytes"),
                       "gpu_shared_by_processes": r.get("train", {}).get("gpu_shared_by_processes"),
                       "loss_curve": [(c["tokens"], c["loss"]) for c in r.get("loss_curve", [])]})
    return rows
