#!/usr/bin/env bash
# Collector benchmark: N events from the simulator (rate limits off) into the lake with `orgtrail run
# --once`: events/s and peak RSS. The baseline in the same run is Grove 2.2.0 (bench/grove/grove.sh)
# collecting the same number of events from the same simulator.
#   bench/collect.sh                 # N = 1,000,000
#   BENCH_EVENTS=100000 bench/collect.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${BENCH_EVENTS:-1000000}
WORK=${BENCH_DIR:-/tmp/orgtrail-bench-collect}
TARGET=${CARGO_TARGET_DIR:-target}
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ORG=11111111-2222-3333-4444-555555555555
rm -rf "$WORK" && mkdir -p "$WORK"
cargo build --release -q -p orgtrail
BIN="$TARGET/release/orgtrail"

ORGTRAIL_SIM_KEY=bench-key "$BIN" sim --listen 127.0.0.1:$PORT --org $ORG --events "$N" --seed 7 --no-rate-limit >"$WORK/sim.log" 2>&1 &
SIM=$!
trap 'kill $SIM 2>/dev/null || true' EXIT
for _ in $(seq 1 1200); do curl -sf "http://127.0.0.1:$PORT/_sim/health" >/dev/null && break; sleep 0.5; done
echo bench-key | "$BIN" --data-dir "$WORK" source add --name bench --org-id $ORG --api-key-stdin \
  --base-url "http://127.0.0.1:$PORT" --no-input >/dev/null
/usr/bin/time -v "$BIN" --data-dir "$WORK" run --once --no-rate-limit 2>"$WORK/run.err"
ELAPSED=$(grep "Elapsed (wall clock)" "$WORK/run.err" | awk '{print $NF}' | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
RSS=$(grep "Maximum resident" "$WORK/run.err" | awk '{print $NF}')
STORED=$("$BIN" --data-dir "$WORK" query --format csv "SELECT (SELECT count(*) FROM atlassian_audit) + (SELECT count(*) FROM classification_failures) AS n" | tail -1)
kill $SIM; trap - EXIT
python3 -c "print(f'orgtrail: $N events in {float(\"$ELAPSED\"):.1f} s = {$N/float(\"$ELAPSED\"):,.0f} events/s, peak RSS {int(\"$RSS\")/1024:,.0f} MB (in the lake: $STORED)')"
if [ -z "${BENCH_SKIP_GROVE:-}" ]; then
  GROVE=$(BENCH_EVENTS="$N" bench/grove/grove.sh | tail -3)
  echo "$GROVE"
  GROVE_RATE=$(echo "$GROVE" | grep -o '= [0-9.]* events/s' | head -1 | awk '{print $2}' || true)
  if [ -n "$GROVE_RATE" ]; then
    python3 -c "print(f'ratio orgtrail/Grove in this run: {$N/float(\"$ELAPSED\")/$GROVE_RATE:.1f}x (goal: 20x)')"
  fi
fi
