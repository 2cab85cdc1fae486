"""Fairness checks: runs are compared only when they share tokenizer, data, token budget, recipe and seeds.

Every result.json carries a `fairness` block (tokenizer sha256, data sha256, token budget, seed set of
its invocation, training recipe, and its own seed). `check_comparable` refuses any set of runs in
which one of those differs, naming the field and the values, and returns the table it checked so
that the summary records it.
"""
from __future__ import annotations

import json
from collections import defaultdict
from typing import Dict, List

SHARED_FIELDS = ("tokenizer_sha256", "data_sha256", "train_tokens_budget", "recipe")


class FairnessError(ValueError):
    """Raised when runs that differ in tokenizer, data, budget, recipe or seeds are put side by side."""


def _describe(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def check_comparable(results: List[Dict], param_tolerance: float | None = None) -> Dict:
    """Raise FairnessError unless all `results` (result.json dicts) may be compared; else the checked table."""
    if not results:
        raise FairnessError("no runs to compare")
    for r in results:
        if "fairness" not in r:
            raise FairnessError(f"run {r.get('arch')}/seed{r.get('seed')} has no fairness record")
    for field in SHARED_FIELDS:
        values = defaultdict(list)
        for r in results:
            values[_describe(r["fairness"].get(field))].append(f"{r.get('size')}/{r['arch']}/seed{r['seed']}")
        if len(values) > 1:
            detail = "; ".join(f"{v} in {runs[:4]}{' ...' if len(runs) > 4 else ''}" for v, runs in values.items())
            raise FairnessError(f"runs differ in {field}: {detail}")
    seed_sets = defaultdict(set)
    for r in results:
        seed_sets[(r.get("size"), r["arch"])].add(r["seed"])
    distinct = {tuple(sorted(s)) for s in seed_sets.values()}
    if len(distinct) > 1:
        detail = ", ".join(f"{size}/{arch}: {sorted(s)}" for (size, arch), s in sorted(seed_sets.items()))
        raise FairnessError(f"runs differ in seed set: {detail}")
    if param_tolerance is not None:
        for r in results:
            dev = r.get("param_deviation")
            if dev is not None and abs(dev) > param_tolerance:
                raise FairnessError(f"{r.get('size')}/{r['arch']}: non-embedding parameters "
                                    f"{r['parameters']['non_embedding']} are {dev:+.1%} from the target "
                                    f"{r['target_non_embedding_params']} (param_tolerance={param_tolerance})")
    first = results[0]["fairness"]
    return {**{field: first.get(field) for field in SHARED_FIELDS}, "seed_set": sorted(next(iter(distinct))),
            "runs": [{"size": r.get("size"), "arch": r["arch"], "seed": r["seed"], "status": r.get("status"),
                      "non_embedding_params": r.get("parameters", {}).get("non_embedding"),
                      "param_deviation": r.get("param_deviation")} for r in results],
            "param_tolerance": param_tolerance}
