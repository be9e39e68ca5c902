#!/usr/bin/env bash
# Collector benchmark: N events from the simulator (rate limits off) into the lake with `orgtrail run
# --once`: events/s and peak RSS. The baseline in the same run is Grove 2.2.0 (bench/grove/grove.sh)
# collecting the same number of events from the same simulator.
# orgtrail runs BENCH_RUNS times (3), after Grove (see below): a run takes seconds, and this
# machine's speed drifts by 10-15 % over minutes, so one run can fall in a slow or a fast moment; the
# ratio uses the median run (each run is printed) and the peak RSS is the largest. Grove's run takes
# minutes and averages the drift.
#   bench/collect.sh                 # N = 1,000,000
#   BENCH_EVENTS=100000 BENCH_RUNS=1 bench/collect.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${BENCH_EVENTS:-1000000}
BASE=${BENCH_DIR:-/tmp/orgtrail-bench-collect}
TARGET=${CARGO_TARGET_DIR:-target}
# shellcheck source=bench/lib.sh
. bench/lib.sh
cargo build --release -q -p orgtrail
BIN="$TARGET/release/orgtrail"
RUNS=${BENCH_RUNS:-3}
RESULTS=""
# Grove runs first, each run collects into a directory of its own, and nothing is deleted until the
# end (then synced): this file system (ext4 without a journal) skips inodes deleted in the last
# minute (five, while the inode tables are not written back) when it creates files, so files deleted
# just before a run slow that run's file creation: up to 3 % of its CPU time in `__ext4_new_inode`
# (perf, `recently_deleted` reading inode tables), as when one benchmark followed another that had
# just deleted its 5,000 files. Grove's two-minute run puts that window behind the orgtrail runs
# (not with BENCH_SKIP_GROVE); its work dir is kept under $BASE.
rm -rf "$BASE"
mkdir -p "$BASE"
sync
if [ -z "${BENCH_SKIP_GROVE:-}" ]; then
  # grove.sh ends with 4 lines: the whole run (rate, peak RSS), collection only, requests, ground truth.
  GROVE=$(TMPDIR="$BASE" BENCH_KEEP=1 BENCH_EVENTS="$N" bench/grove/grove.sh 2> >(grep -v '^work dir kept' >&2) | tail -4)
  echo "$GROVE"
  GROVE_RATE=$(echo "$GROVE" | grep -o '= [0-9.]* events/s' | head -1 | awk '{print $2}' || true)
fi
for run in $(seq 1 "$RUNS"); do
  WORK="$BASE/run-$run"
  collect "$BIN" "/usr/bin/time -v"
  ELAPSED=$(grep "Elapsed (wall clock)" "$WORK/run.err" | awk '{print $NF}' | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  RSS=$(grep "Maximum resident" "$WORK/run.err" | awk '{print $NF}')
  STORED=$("$BIN" --data-dir "$WORK" query --format csv "SELECT (SELECT count(*) FROM atlassian_audit) + (SELECT count(*) FROM classification_failures) AS n" | tail -1)
  python3 -c "print(f'orgtrail run $run of $RUNS: $N events in {float(\"$ELAPSED\"):.1f} s = {$N/float(\"$ELAPSED\"):,.0f} events/s, peak RSS {int(\"$RSS\")/1024:,.0f} MB (in the lake: $STORED)')"
  if [ "$STORED" != "$N" ]; then
    echo "orgtrail run $run: the lake holds $STORED events, not $N" >&2
    exit 1
  fi
  RESULTS="$RESULTS $ELAPSED:$RSS"
done
# The median run's time; the largest peak RSS.
read -r ELAPSED RSS < <(python3 -c "
r = sorted((float(e), int(m)) for e, m in (x.split(':') for x in '$RESULTS'.split()))
print(r[len(r) // 2][0], max(m for _, m in r))")
python3 -c "print(f'orgtrail (median of $RUNS runs): $N events in {float(\"$ELAPSED\"):.1f} s = {$N/float(\"$ELAPSED\"):,.0f} events/s, peak RSS {int(\"$RSS\")/1024:,.0f} MB (largest)')"
if [ -n "${GROVE_RATE:-}" ]; then
  python3 -c "print(f'ratio orgtrail/Grove in this run: {$N/float(\"$ELAPSED\")/$GROVE_RATE:.1f}x (goal: 20x)')"
fi
rm -rf "$BASE"
sync
