#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Times the fused CPU loss pass of two revisions in one run: bench/bench_loss_ab.cpp is compiled against the
# include/ tree of each revision (same compiler, same flags) and the two binaries run alternately, `rounds`
# times; the median of each is printed with the ratio. For before/after figures on a noisy machine.
#   bench/compare_revisions.sh <old-rev> [<new-rev> = working tree] [rounds = 3]
# Needs g++ and Google Benchmark (libbenchmark-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
old_rev="$1"
new_rev="${2:-}"
rounds="${3:-3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/old" "$work/new"
git archive "$old_rev" include | tar -x -C "$work/old"
if [ -n "$new_rev" ]; then git archive "$new_rev" include | tar -x -C "$work/new"; else cp -r include "$work/new/"; fi
for side in old new; do
    g++ -std=c++17 -O3 -DNDEBUG -I"$work/$side/include" bench/bench_loss_ab.cpp -o "$work/bench_$side" \
        -lbenchmark -pthread
done
for _ in $(seq "$rounds"); do
    for side in old new; do
        "$work/bench_$side" --benchmark_min_time=0.5 --benchmark_format=csv 2>/dev/null |
            awk -F, -v side="$side" '/BM_config/ {gsub(/"/, "", $1); print side, $1, $3}'
    done
done | python3 -c '
import collections, sys
times = collections.defaultdict(list)
for line in sys.stdin:
    side, name, t = line.split()
    times[(name, side)].append(float(t))
names = {"0": "deepseekmath", "1": "trl", "2": "verl (beta 0.001)", "3": "gspo"}
for name in sorted({n for n, _ in times}):
    old = sorted(times[(name, "old")]); new = sorted(times[(name, "new")])
    mo, mn = old[len(old) // 2], new[len(new) // 2]
    label = names.get(name.split("/")[1], name)
    print("%-18s old %8.1f us  new %8.1f us  new/old %.3f" % (label, mo, mn, mn / mo))
'
