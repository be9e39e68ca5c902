#!/usr/bin/env bash
# Peak RSS of the simulator holding N events while serving: starts the release binary under
# /usr/bin/time -v, walks the whole /events-stream once (limit=500) and streams the ground truth,
# then stops it with SIGINT and prints the peak RSS and bytes per event.
#
# Usage: crates/orgtrail-sim/bench/sim-memory.sh [EVENTS]   (default 1000000)
# Needs: curl, /usr/bin/time; builds `orgtrail` with CARGO_TARGET_DIR (default: the repo's target/).
set -euo pipefail
N=${1:-1000000}
PORT=${PORT:-18177}
TARGET=${CARGO_TARGET_DIR:-target}
ORG=11111111-2222-3333-4444-555555555555
KEY=test-key
cd "$(dirname "$0")/../../.."
CARGO_TARGET_DIR=$TARGET cargo build --release -q -p orgtrail
LOG=$(mktemp)
/usr/bin/time -v "$TARGET/release/orgtrail" sim --listen 127.0.0.1:$PORT --events "$N" --no-rate-limit --seed 7 >"$LOG" 2>&1 &
TPID=$!
BASE=http://127.0.0.1:$PORT
for _ in $(seq 1 600); do
  curl -sf "$BASE/_sim/health" >/dev/null 2>&1 && break
  sleep 0.2
done
start=$(date +%s.%N)
url="$BASE/admin/v1/orgs/$ORG/events-stream?limit=500"
pages=0
while :; do
  body=$(curl -sf -H "Authorization: Bearer $KEY" "$url")
  pages=$((pages + 1))
  [[ $body == '{"data":[]'* ]] && break
  next=$(printf '%s' "${body: -2000}" | grep -o '"meta":{"next":"[^"]*"' | sed 's/.*"next":"//; s/"$//')
  [[ -z $next ]] && break
  url="$BASE/admin/v1/orgs/$ORG/events-stream?cursor=$next&limit=500"
done
end=$(date +%s.%N)
truth=$(curl -sf "$BASE/_sim/orgs/$ORG/events" | wc -c)
curl -sf "$BASE/_sim/stats"; echo
# SIGINT to the simulator process (the child of `time`, which ignores SIGINT), so time -v reports.
CPID=$(pgrep -P "$TPID")
kill -INT "$CPID"
wait "$TPID" || true
rss_kb=$(grep 'Maximum resident set size' "$LOG" | awk '{print $NF}')
echo "events=$N pages=$pages walk_seconds=$(echo "$end - $start" | bc) ground_truth_bytes=$truth"
echo "peak_rss_kb=$rss_kb bytes_per_event=$((rss_kb * 1024 / N))"
rm -f "$LOG"
