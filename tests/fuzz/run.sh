#!/usr/bin/env bash
# Fuzzes every harness for a while on a copy of its seed corpus; fails if any harness finds something.
#   tests/fuzz/run.sh [seconds per harness, default 30] [build directory, default build-fuzz]
# Build first: CXX=clang++ cmake -S . -B build-fuzz -DGRPO_BUILD_FUZZERS=ON ... && cmake --build build-fuzz -j2
# Findings (crash-*, timeout-*, oom-* inputs) are copied to <build>/fuzz-artifacts/<harness>/; replay one with
# `GRPO_FUZZ_VERBOSE=1 <build>/tests/fuzz/<harness> <file>`.
set -u
secs=${1:-30}
build=${2:-build-fuzz}
here=$(cd "$(dirname "$0")" && pwd)
harnesses="fuzz_loss fuzz_advantages fuzz_process_rewards fuzz_token_advantages fuzz_rewards fuzz_trainer fuzz_views fuzz_logprobs
  fuzz_logprobs_hidden fuzz_dist"
fail=0
# A scratch allocation the system cannot serve must surface as grpo::error (errc::out_of_memory), as it does
# without sanitizers: let ASan's allocator fail with std::bad_alloc instead of aborting.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}allocator_may_return_null=1"
# One harness, its report into $2 (the harnesses run two at a time, one per core; reports print in order).
fuzz_one() {
  h=$1
  report=$2
  bin=$(find "$build" -type f -name "$h" -perm -u+x 2>/dev/null | head -n 1)
  if [ -z "$bin" ]; then
    echo "$h: not built in $build" >"$report"
    return 1
  fi
  work=$(mktemp -d)
  mkdir -p "$work/corpus" "$work/artifacts"
  cp "$here/corpus/$h/"* "$work/corpus/" 2>/dev/null || true
  "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "$work/corpus" >"$work/log" 2>&1
  rc=$?
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$work/log" | tail -n 1)
  rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$work/log" | tail -n 1)
  {
    echo "$h: exit $rc, ${execs:-?} executions in ${secs} s (${rate:-?}/s)"
    if [ "$rc" -ne 0 ]; then
      grep -m 5 -E "GRPO-FUZZ FINDING|ERROR: |runtime error|SUMMARY" "$work/log"
      tail -n 40 "$work/log"
      mkdir -p "$build/fuzz-artifacts/$h"
      cp "$work/artifacts/"* "$build/fuzz-artifacts/$h/" 2>/dev/null || true
      echo "$h: reproducer(s) in $build/fuzz-artifacts/$h/"
    fi
  } >"$report"
  rm -rf "$work"
  return $rc
}

reports=$(mktemp -d)
set -- $harnesses
while [ $# -gt 0 ]; do
  fuzz_one "$1" "$reports/$1" & first=$!
  second=""
  if [ $# -gt 1 ]; then fuzz_one "$2" "$reports/$2" & second=$!; fi
  wait $first || fail=1
  if [ -n "$second" ]; then wait $second || fail=1; fi
  shift; [ $# -gt 0 ] && shift
done
for h in $harnesses; do cat "$reports/$h"; done
rm -rf "$reports"
exit $fail
