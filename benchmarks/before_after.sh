#!/usr/bin/env bash
# Time the BK scan kernels of two versions of the code on one GPU, alternating runs (old, new, old, new) so that
# clock and thermal drift fall on both, then compare their grids (benchmarks/compare_grids.py).
#
#   git archive REV resnet_bk_hf benchmarks/kernel_bench.py | tar -x -C .before    # the old tree, here
#   bash benchmarks/before_after.sh .before OUT_DIR [N_LIST] [ROUNDS]
#
# OLD_TREE must hold that version's resnet_bk_hf/ and benchmarks/kernel_bench.py. Its kernel_bench needed
# --time-loop=chunked at commit 0faf570 to time the default forward; pass extra old flags in OLD_FLAGS.
set -euo pipefail
old_tree=$1
out=$2
grid=${3:-4096,65536,1048576}
rounds=${4:-2}
old_flags=${OLD_FLAGS:---time-loop=chunked}
mkdir -p "$out"
for round in $(seq 1 "$rounds"); do
  (cd "$old_tree" && python3 benchmarks/kernel_bench.py "$out/old$round.json" --grid-n="$grid" --no-reference --no-check \
      --no-compare $old_flags) > "$out/old$round.log" 2>&1 || { tail -20 "$out/old$round.log"; exit 1; }
  python3 benchmarks/kernel_bench.py "$out/new$round.json" --grid-n="$grid" --no-reference --no-check --no-compare \
      > "$out/new$round.log" 2>&1 || { tail -20 "$out/new$round.log"; exit 1; }
done
python3 benchmarks/compare_grids.py "$out/before_after.json" --old "$out"/old*.json --new "$out"/new*.json
