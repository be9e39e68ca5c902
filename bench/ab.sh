#!/usr/bin/env bash
# Interleaved A/B of two orgtrail builds on the collector: each round runs `run --once
# --no-rate-limit` of build A, then of build B, each against a fresh simulator with the same events,
# and prints wall time, CPU time, peak RSS and minor page faults per run. Interleaving puts both
# builds in the same hour of a machine whose speed drifts; compare the rounds, not single runs.
#   bench/ab.sh OLD_BINARY NEW_BINARY            # 1,000,000 events, 3 rounds
#   BENCH_EVENTS=300000 BENCH_ROUNDS=5 bench/ab.sh a b
# Keep a build to compare with: cp target/release/orgtrail /tmp/orgtrail-old (before rebuilding).
# With ALLOCS=1 (needs heaptrack), one more run per build counts the allocation calls per event, a
# figure that does not drift with the machine.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: bench/ab.sh OLD_BINARY NEW_BINARY (see the header of this script)" >&2
  exit 2
fi
for b in "$1" "$2"; do
  if [ ! -x "$b" ]; then
    echo "bench/ab.sh: $b is not an executable orgtrail binary; build one with cargo build --release -p orgtrail" >&2
    exit 2
  fi
done
N=${BENCH_EVENTS:-1000000}
ROUNDS=${BENCH_ROUNDS:-3}
BASE=${BENCH_DIR:-/tmp/orgtrail-bench-ab}
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

echo "$N events, $ROUNDS rounds: A = $1, B = $2"
# A directory per run, all deleted at the end (see bench/collect.sh: deleting a run's files right
# before the next run slows the next run's file creation).
rm -rf "$BASE"
for r in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    if [ $side = A ]; then bin=$1; else bin=$2; fi
    WORK="$BASE/$r$side"
    collect "$bin" "/usr/bin/time -v"
    awk -v side=$side -v r="$r" '
      /Elapsed \(wall clock\)/ { wall = $NF }
      /User time/ { user = $NF }
      /System time/ { sys = $NF }
      /Maximum resident/ { rss = $NF }
      /Minor \(reclaiming/ { faults = $NF }
      END { printf "round %s %s: wall %s, CPU %.2f s (user %s + sys %s), peak RSS %.1f MB, minor faults %s\n",
            r, side, wall, user + sys, user, sys, rss / 1024, faults }' "$WORK/run.err"
  done
done
if [ -n "${ALLOCS:-}" ]; then
  if ! command -v heaptrack >/dev/null; then
    echo "bench/ab.sh: ALLOCS=1 needs heaptrack (apt-get install heaptrack)" >&2
    exit 2
  fi
  for side in A B; do
    if [ $side = A ]; then bin=$1; else bin=$2; fi
    WORK="$BASE/allocs$side"
    collect "$bin" "heaptrack -o $WORK/heaptrack"
    calls=$(heaptrack_print -f "$WORK"/heaptrack*.zst --print-allocators 0 --print-peaks 0 \
      --print-temporary 0 --print-leaks 0 2>/dev/null | awk '/^calls to allocation functions:/ { print $5 }')
    python3 -c "print(f'$side: {$calls:,} allocation calls, {$calls / $N:.1f} per event')"
  done
fi
rm -rf "$BASE"
