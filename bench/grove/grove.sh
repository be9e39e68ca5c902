#!/usr/bin/env bash
# Baseline benchmark: HashiCorp Grove 2.2.0 (PyPI `grove`) collecting the Atlassian org audit log
# from the simulator (`orgtrail sim`) over loopback. Measures events/s and peak RSS of the Grove process.
#   bench/grove/grove.sh                      # N = 100,000
#   BENCH_EVENTS=1000000 bench/grove/grove.sh
# Env: BENCH_EVENTS (100000), BENCH_SEED (7), BENCH_OUTPUT (local_file | local_stdout),
#      BENCH_KEEP=1 (keep the work dir), GROVE_BENCH_TARGET_DIR (cargo target dir, default
#      $CARGO_TARGET_DIR, else <repo>/target, as bench/collect.sh), GROVE_VENV (default ${XDG_CACHE_HOME:-$HOME/.cache}/orgtrail-grove-venv).
# See bench/grove/README.md.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
N=${BENCH_EVENTS:-100000}
SEED=${BENCH_SEED:-7}
OUTPUT=${BENCH_OUTPUT:-local_file}
TARGET=${GROVE_BENCH_TARGET_DIR:-${CARGO_TARGET_DIR:-$REPO/target}}
VENV=${GROVE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/orgtrail-grove-venv}
ORG=11111111-2222-3333-4444-555555555555
KEY=bench-key
GROVE_VERSION=2.2.0

# 1. Simulator: `orgtrail sim` (release; the build bench/collect.sh made, when it ran first).
(cd "$REPO" && CARGO_TARGET_DIR="$TARGET" cargo build --release -q -p orgtrail)
SIM_BIN="$TARGET/release/orgtrail"

# 2. Grove venv, created once and reused.
if ! "$VENV/bin/python" -c "import grove.__about__ as a, sys; sys.exit(a.__version__ != '$GROVE_VERSION')" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "grove==$GROVE_VERSION"
fi
PY="$VENV/bin/python"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/orgtrail-grove-bench.XXXXXX")
SIM_PID=
cleanup() {
  # SIGTERM: a background job of a non-interactive shell starts with SIGINT ignored.
  if [ -n "$SIM_PID" ] && kill -0 "$SIM_PID" 2>/dev/null; then
    kill -TERM "$SIM_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SIM_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SIM_PID" 2>/dev/null || true
    wait "$SIM_PID" 2>/dev/null || true
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# 3. Simulator on a free loopback port, rate limits off. Grove's first run collects events whose
#    `time` is in [now - 7 days, now]. The simulator's --history bounds `processedAt`, and 1 % of
#    events are processed 1-48 h after their `time`: with --history 6d a few events have a `time`
#    older than 7 days and Grove (correctly, by its window) never asks for them. 4 days + 48 h
#    keeps every event inside the window, so "written == N" is a fair check.
ORGTRAIL_SIM_KEY=$KEY "$SIM_BIN" sim --listen 127.0.0.1:0 --org "$ORG" --events "$N" --seed "$SEED" \
  --history 4d --no-rate-limit >"$WORK/sim.log" 2>&1 &
SIM_PID=$!
BASE=
for _ in $(seq 1 1200); do
  kill -0 "$SIM_PID" 2>/dev/null || { cat "$WORK/sim.log" >&2; echo "simulator exited" >&2; exit 1; }
  BASE=$(sed -n 's/.*simulator on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$WORK/sim.log" 2>/dev/null | head -1 || true)
  if [ -n "$BASE" ] && curl -sf "$BASE/_sim/health" >/dev/null; then break; fi
  BASE=; sleep 0.1
done
[ -n "$BASE" ] || { cat "$WORK/sim.log" >&2; echo "simulator not ready after 120 s" >&2; exit 1; }

# 4. One Grove collection under /usr/bin/time -v.
RC=0
if [ "$OUTPUT" = local_stdout ]; then STDOUT="$WORK/grove.stdout"; else STDOUT=/dev/null; fi
GROVE_BENCH_KEY=$KEY /usr/bin/time -v -o "$WORK/time.txt" \
  "$PY" "$HERE/run_grove.py" collect --base-url "$BASE" --org "$ORG" --out "$WORK/out" --output "$OUTPUT" \
  >"$STDOUT" 2>"$WORK/grove.log" || RC=$?
if [ "$RC" != 0 ]; then
  echo "grove run failed (exit $RC); last log lines:" >&2; tail -n 20 "$WORK/grove.log" >&2
fi

# 5. Count what Grove wrote against the simulator's ground truth.
COUNT=$("$PY" "$HERE/run_grove.py" count --base-url "$BASE" --org "$ORG" --out "$WORK/out" \
  --output "$OUTPUT" --stdout-file "$STDOUT")
STATS=$(curl -sf "$BASE/_sim/stats")

"$PY" - "$N" "$WORK/time.txt" "$WORK/grove.log" "$COUNT" "$STATS" "$GROVE_VERSION" "$OUTPUT" "$RC" <<'EOF'
import json, re, sys
n, time_file, log_file, count, stats, version, output, rc = sys.argv[1:]
n = int(n)
count, stats = json.loads(count), json.loads(stats)
tv = open(time_file).read()
wall = tv.split("Elapsed (wall clock) time (h:mm:ss or m:ss):")[1].split()[0].split(":")
wall = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", tv).group(1))
user = float(re.search(r"User time \(seconds\): ([\d.]+)", tv).group(1))
sys_t = float(re.search(r"System time \(seconds\): ([\d.]+)", tv).group(1))
m = re.search(r"collection wall time ([\d.]+) s", open(log_file).read())
coll = float(m.group(1)) if m else float("nan")
reqs = {f'{r["endpoint"]} {r["status"]}': r["count"] for r in stats["requests"]}
w = count["written"]
print(f"grove {version}: {n} events in {wall:.2f} s = {n / wall:.0f} events/s, "
      f"peak RSS {rss_kb / 1024:.1f} MB (events written: {w})")
print(f"  collection only (after interpreter start and imports): {coll:.2f} s = {n / coll:.0f} events/s; "
      f"CPU user {user:.2f} s + sys {sys_t:.2f} s; output {output}; grove exit {rc}")
print(f"  simulator requests {reqs}; events served {stats['events_served']}")
print(f"  written {w}, unique ids {count['unique']}, duplicates {count['duplicates']}, "
      f"missing vs ground truth {count['missing']} of {count['truth']}, unknown ids {count['unknown']}")
if w != n or count["missing"] or count["duplicates"] or count["unknown"]:
    print(f"  MISMATCH: Grove wrote {w} events for {n} in the simulator", file=sys.stderr)
EOF
exit "$RC"
