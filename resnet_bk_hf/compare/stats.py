"""Statistics over seeds: mean, std, confidence intervals, paired tests, loss spikes.

scipy (the `compare` extra) gives the t quantiles and the paired tests; it is imported when used.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000


def count_spikes(losses: Sequence[float], factor: float = 2.0) -> int:
    """Logged losses larger than `factor` x the previous logged one (non-finite values count too)."""
    return sum(1 for prev, cur in zip(losses[:-1], losses[1:])
               if not math.isfinite(cur) or (math.isfinite(prev) and cur > factor * prev))


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def bootstrap_ci(values: Sequence[float], level: float = 0.95, seed: int = 0) -> Optional[List[float]]:
    """Percentile bootstrap CI of the mean (None for fewer than 2 values)."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(BOOTSTRAP_RESAMPLES, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


def describe(values: Sequence[float]) -> Dict:
    """n, mean, std (ddof=1), 95% t interval and 95% bootstrap interval of the mean."""
    from scipy import stats
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    # None: not measured (e.g. the throughput of a run resumed from its final checkpoint); kept in "values"
    out = {"n": int(x.size), "values": [None if v is None else float(v) for v in values]}
    if x.size == 0:
        return out | {"mean": None, "std": None, "ci95_t": None, "ci95_bootstrap": None}
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else None
    ci_t = None
    if x.size > 1:
        half = float(stats.t.ppf(0.975, x.size - 1)) * std / math.sqrt(x.size)
        ci_t = [mean - half, mean + half]
    return out | {"mean": mean, "std": std, "ci95_t": ci_t, "ci95_bootstrap": bootstrap_ci(x)}


def paired_test(a: Dict[int, float], b: Dict[int, float]) -> Dict:
    """Paired comparison of two architectures over the seeds both have: a - b.

    Paired t-test and Wilcoxon signed-rank test (two-sided). With n seeds the smallest possible
    Wilcoxon p-value is 2 / 2^n (0.25 for 3 seeds): report it, but read the t-test and the CI.
    """
    from scipy import stats
    seeds = sorted(s for s in set(a) & set(b) if _finite(a[s]) and _finite(b[s]))
    # a seed that one side lacks or that diverged (non-finite) is left out of the test: say which
    dropped = sorted((set(a) | set(b)) - set(seeds))
    diffs = np.asarray([a[s] - b[s] for s in seeds], dtype=float)
    out = {"seeds": seeds, "n": len(seeds), "dropped_seeds": dropped, "differences": diffs.tolist(),
           "mean_difference": float(diffs.mean()) if diffs.size else None,
           "ci95_bootstrap_difference": bootstrap_ci(diffs)}
    if diffs.size < 2:
        return out | {"t_statistic": None, "t_pvalue": None, "wilcoxon_pvalue": None,
                      "note": "fewer than 2 paired seeds: no test"}
    if np.ptp(diffs) == 0:  # exactly constant differences: the t statistic is +-inf (or 0/0 for all zeros)
        t_stat, t_p = (math.inf * np.sign(diffs[0]), 0.0) if diffs[0] != 0 else (0.0, 1.0)
    else:
        res = stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds])
        t_stat, t_p = float(res.statistic), float(res.pvalue)
    try:
        w_p = float(stats.wilcoxon(diffs).pvalue) if np.any(diffs != 0) else 1.0
    except ValueError:
        w_p = None
    return out | {"t_statistic": float(t_stat), "t_pvalue": float(t_p), "wilcoxon_pvalue": w_p}
