#!/usr/bin/env bash
# Crash soak: `orgtrail run` is killed with SIGKILL at random moments, KILLS times, while it collects
# 50,000 events from the simulator and live events keep arriving; after the last restart and a final
# `run --once`, the lake must hold every event of the simulator's ground truth exactly once (same
# ids, same count, no duplicate). The CI test (crates/orgtrail/tests/collect.rs) does this 20 times
# on 5,500 events; this script is the long version.
#   bench/crash-soak.sh                     # 200 kills
#   KILLS=20 bench/crash-soak.sh            # a quick check
#   SEED=7 EVENTS=50000 LIVE_RATE=20 bench/crash-soak.sh
# The collector runs with its default request limiter (0.8 requests/s) against a simulator without
# rate limits, and polls every second, so the kills land during fetches, spool commits, flushes to
# the lake and idle polls alike. Each run lives 0.05 to 2.5 s (uniform, from SEED) before its kill.
# Prints one line; exit status 0 when the lake equals the ground truth, 1 on any loss or duplicate
# (or when a run logged a cycle error or exited by itself), 2 when the setup failed. Everything is
# kept in SOAK_DIR (default /tmp/orgtrail-crash-soak): the state, the lake and every log.
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS=${KILLS:-200}
EVENTS=${EVENTS:-50000}
SEED=${SEED:-1}
LIVE_RATE=${LIVE_RATE:-20}
# Live events keep arriving for about as long as the kills last (about 1.25 s per kill).
LIVE=${LIVE:-$((KILLS * 25))}
WORK=${SOAK_DIR:-/tmp/orgtrail-crash-soak}
TARGET=${CARGO_TARGET_DIR:-target}
ORG=11111111-2222-3333-4444-555555555555
KEY="soak-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
NAME="Crash soak"

fail_setup() { echo "crash-soak: setup failed: $*" >&2; exit 2; }

rm -rf "$WORK" && mkdir -p "$WORK"
cargo build --release -q -p orgtrail || fail_setup "cargo build"
BIN="$TARGET/release/orgtrail"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"

SIM=""
RUN=""
cleanup() {
  [ -n "$RUN" ] && kill -KILL "$RUN" 2>/dev/null || true
  [ -n "$SIM" ] && kill "$SIM" 2>/dev/null || true
}
trap cleanup EXIT

ORGTRAIL_SIM_KEY="$KEY" "$BIN" sim --listen "127.0.0.1:$PORT" --org $ORG --events "$EVENTS" --seed "$SEED" \
  --live-rate "$LIVE_RATE/s" --live-max-events "$LIVE" --no-rate-limit >"$WORK/sim.log" 2>&1 &
SIM=$!
for _ in $(seq 1 600); do curl -sf "$BASE/_sim/health" >/dev/null && break; sleep 0.2; done
curl -sf "$BASE/_sim/health" >/dev/null || fail_setup "the simulator did not start (see $WORK/sim.log)"
echo "$KEY" | "$BIN" --data-dir "$WORK" source add --name "$NAME" --org-id $ORG --api-key-stdin \
  --base-url "$BASE" --poll-interval 1s --no-input >"$WORK/add.log" 2>&1 || fail_setup "source add: $(cat "$WORK/add.log")"

truth_count() {
  curl -sf "$BASE/_sim/orgs/$ORG/events?idsOnly=true" | python3 -c 'import json, sys; print(json.load(sys.stdin)["count"])'
}

START=$SECONDS
RANDOM=$SEED
SELF_EXITS=0
for i in $(seq 1 "$KILLS"); do
  "$BIN" --data-dir "$WORK" run >>"$WORK/run.log" 2>&1 &
  RUN=$!
  MS=$((50 + (RANDOM * 32768 + RANDOM) % 2451))
  sleep "$((MS / 1000)).$(printf %03d $((MS % 1000)))"
  if kill -KILL "$RUN" 2>/dev/null; then
    wait "$RUN" 2>/dev/null || true
  else
    # It ended before the kill: only an error can end `run` on its own.
    CODE=0
    wait "$RUN" || CODE=$?
    echo "crash-soak: run $i exited by itself with status $CODE (see $WORK/run.log)" >&2
    SELF_EXITS=$((SELF_EXITS + 1))
  fi
  RUN=""
done
KILL_SECS=$((SECONDS - START))

# Wait until every live event exists, then catch up once, cleanly.
WANT=$((EVENTS + LIVE))
for _ in $(seq 1 1200); do [ "$(truth_count)" -ge "$WANT" ] && break; sleep 0.5; done
[ "$(truth_count)" -ge "$WANT" ] || fail_setup "the simulator never reached $WANT events"
"$BIN" --data-dir "$WORK" run --once >"$WORK/once.log" 2>&1 || {
  echo "crash-soak: FAIL: the final 'run --once' failed: $(tail -3 "$WORK/once.log")"
  exit 1
}

curl -sf "$BASE/_sim/orgs/$ORG/events?idsOnly=true" >"$WORK/truth.json"
"$BIN" --data-dir "$WORK" query --format csv "SELECT id FROM atlassian_audit" >"$WORK/lake-rows.csv"
"$BIN" --data-dir "$WORK" query --format csv \
  "SELECT regexp_replace(payload, '^.*?\"id\":\"([^\"]+)\".*\$', '\\1') AS id FROM classification_failures" \
  >"$WORK/lake-failures.csv"
# Ground truth: every event exactly once; a key in any output is a failure too.
LEAKS=$( (grep -l -F -- "$KEY" "$WORK"/*.log || true) | wc -l)
# Nothing fails here (no faults, the simulator stays up), so a cycle that logged an error is a bug
# even if the data ends up right (a killed run cannot log anything).
ERRORS=$( (grep -h -F ": error: " "$WORK/run.log" "$WORK/once.log" || true) | wc -l)
if [ "$ERRORS" -gt 0 ]; then
  echo "crash-soak: first cycle error: $(grep -h -m1 -F ": error: " "$WORK/run.log" "$WORK/once.log" | head -1)" >&2
fi
python3 - "$WORK" "$KILLS" "$((SECONDS - START))" "$KILL_SECS" "$SELF_EXITS" "$LEAKS" "$ERRORS" <<'PY'
import collections, json, sys
work, kills, secs, kill_secs, self_exits, leaks, errors = sys.argv[1], *map(int, sys.argv[2:])
truth = json.load(open(f"{work}/truth.json"))["ids"]
lake = collections.Counter()
for f in ("lake-rows.csv", "lake-failures.csv"):
    lines = open(f"{work}/{f}").read().splitlines()[1:]
    lake.update(l.strip() for l in lines if l.strip())
t = set(truth)
missing = len(t - lake.keys())
extra = len(lake.keys() - t)
dups = sum(n - 1 for n in lake.values() if n > 1)
ok = (missing == 0 and extra == 0 and dups == 0 and len(truth) == len(t) and self_exits == 0
      and leaks == 0 and errors == 0)
print(f"crash-soak: {'OK' if ok else 'FAIL'}: {kills} SIGKILLs in {kill_secs} s ({secs} s in all); "
      f"ground truth {len(truth)} events, lake {sum(lake.values())} rows: {missing} missing, "
      f"{dups} duplicate(s), {extra} unknown; {errors} cycle error(s), {self_exits} run(s) exited "
      f"by themselves, key in {leaks} log(s)")
sys.exit(0 if ok else 1)
PY
