"""Compare the `grid` timings of kernel_bench.py runs of two versions of the code on one GPU (e.g. before and
after a refactor): prints a table of the median over the runs of each version and the ratio new / old, and
writes it as JSON.

    python3 benchmarks/compare_grids.py OUT.json --old a1.json a2.json --new b1.json b2.json [--tolerance 0.03]

Runs of the two versions should alternate on the same warm machine (old, new, old, new) so that clock and
thermal drift fall on both. Exit status 0 always: the table says whether each ratio is within the tolerance.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def grid_times(paths):
    """{(N, io): {"fwd_ms": [...], "fwdbwd_ms": [...]}} over the runs in `paths`."""
    times = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        for row in data.get("grid", []):
            key = (row["N"], row.get("io", "float32"))
            entry = times.setdefault(key, {"fwd_ms": [], "fwdbwd_ms": []})
            for name in entry:
                if row.get(name) is not None:
                    entry[name].append(row[name])
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--old", nargs="+", required=True)
    parser.add_argument("--new", nargs="+", required=True)
    parser.add_argument("--tolerance", type=float, default=0.03)
    args = parser.parse_args(argv)
    old, new = grid_times(args.old), grid_times(args.new)
    rows = []
    for key in sorted(set(old) & set(new)):
        for name in ("fwd_ms", "fwdbwd_ms"):
            if not old[key][name] or not new[key][name]:
                continue
            o, n = statistics.median(old[key][name]), statistics.median(new[key][name])
            rows.append({"N": key[0], "io": key[1], "what": name, "old_ms": o, "new_ms": n,
                         "old_runs": old[key][name], "new_runs": new[key][name], "ratio": n / o,
                         "within_tolerance": abs(n / o - 1) <= args.tolerance})
    print(f"{'N':>9} {'io':>8} {'what':>10} {'old ms':>9} {'new ms':>9} {'new/old':>8}  runs old | new")
    for r in rows:
        flag = "" if r["within_tolerance"] else f"  <- outside +-{args.tolerance:.0%}"
        print(f"{r['N']:>9} {r['io']:>8} {r['what']:>10} {r['old_ms']:>9.3f} {r['new_ms']:>9.3f} {r['ratio']:>8.3f}  "
              f"{' '.join(f'{x:.3f}' for x in r['old_runs'])} | {' '.join(f'{x:.3f}' for x in r['new_runs'])}{flag}")
    Path(args.out).write_text(json.dumps({"tolerance": args.tolerance, "old": args.old, "new": args.new,
                                          "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
