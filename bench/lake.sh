#!/usr/bin/env bash
# Lake benchmark (issue: the data lake). Ingest of N normalized Atlassian rows (rows/s, MB/s, peak RSS)
# and `count(*) GROUP BY attributes.action` over them with orgtrail (DataFusion), with DuckDB on the
# same files in the same run as the baseline.
#   bench/lake.sh            # N = 1,000,000
#   BENCH_ROWS=100000 bench/lake.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${BENCH_ROWS:-1000000}
WORK=${BENCH_DIR:-/tmp/orgtrail-bench-lake}
PORT=${BENCH_PORT:-18099}
TARGET=${CARGO_TARGET_DIR:-target}
rm -rf "$WORK" && mkdir -p "$WORK"

cargo build --release -q -p orgtrail
BIN="$TARGET/release/orgtrail"
python3 -m pip install --quiet duckdb 2>/dev/null

ORG=11111111-2222-3333-4444-555555555555
"$BIN" sim --listen 127.0.0.1:$PORT --org $ORG --key bench-key --events "$N" --seed 7 --no-rate-limit >"$WORK/sim.log" 2>&1 &
SIM=$!
trap 'kill $SIM 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$PORT/_sim/health" >/dev/null && break; sleep 0.5; done
python3 bench/fetch_events.py "http://127.0.0.1:$PORT" $ORG bench-key >"$WORK/events.jsonl"
kill $SIM; trap - EXIT

# Exit status 1 = some events are classification failures (the simulator sends a few without `links`).
"$BIN" parse --log-type Atlassian.Audit --failures "$WORK/failures.jsonl" "$WORK/events.jsonl" >"$WORK/rows.jsonl" || [ $? -eq 1 ]
N=$(wc -l <"$WORK/rows.jsonl")
ROWS_MB=$(python3 -c "import os;print(os.path.getsize('$WORK/rows.jsonl')/1e6)")

# Flush the rows file first: its write-back would otherwise run during (and be timed with) the ingest.
sync
/usr/bin/time -v "$BIN" --lake "$WORK/lake" lake ingest --log-type Atlassian.Audit "$WORK/rows.jsonl" 2>"$WORK/ingest.time"
ELAPSED=$(python3 - "$WORK/ingest.time" <<'PY'
import sys
for line in open(sys.argv[1]):
    if "Elapsed (wall clock)" in line:
        t = line.rsplit(" ", 1)[1].strip().split(":")
        print(sum(float(x) * 60 ** i for i, x in enumerate(reversed(t))))
PY
)
RSS=$(grep "Maximum resident" "$WORK/ingest.time" | awk '{print $NF}')
FILES=$(find "$WORK/lake/atlassian_audit" -name '*.parquet' | wc -l)
LAKE_MB=$(du -sm "$WORK/lake" | cut -f1)

SQL="SELECT attributes.action, count(*) FROM atlassian_audit GROUP BY 1 ORDER BY 2 DESC"
DUCK="SELECT attributes.action, count(*) FROM read_parquet('$WORK/lake/atlassian_audit/**/*.parquet', hive_partitioning=1) GROUP BY 1 ORDER BY 2 DESC"
python3 - "$BIN" "$WORK" "$SQL" "$DUCK" "$N" "$ELAPSED" "$ROWS_MB" "$RSS" "$FILES" "$LAKE_MB" <<'PY'
import statistics, subprocess, sys, time
import duckdb
bin_, work, sql, duck_sql, n, elapsed, rows_mb, rss, files, lake_mb = sys.argv[1:]
n, elapsed, rows_mb = int(n), float(elapsed), float(rows_mb)

def ours():
    # In-process time (session, listing, planning, execution), as for DuckDB below.
    r = subprocess.run([bin_, "--lake", f"{work}/lake", "query", "--timing", "--format", "csv", sql],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return float(r.stderr.split(" in ")[1].split(" ms")[0]) / 1000

def duck():
    t = time.perf_counter()
    con = duckdb.connect()
    con.execute(duck_sql).fetchall()
    con.close()
    return time.perf_counter() - t

ours(); duck()  # warm the page cache for both
o = statistics.median(ours() for _ in range(5))
d = statistics.median(duck() for _ in range(5))
print(f"ingest: {n} rows in {elapsed:.2f} s = {n/elapsed:,.0f} rows/s, {rows_mb/elapsed:,.1f} MB/s of row JSON "
      f"(goal >= 200,000 rows/s); peak RSS {int(rss)/1024:,.0f} MB; {files} files, {lake_mb} MB of Parquet")
print(f"query `count(*) GROUP BY attributes.action` (in-process, median of 5): orgtrail {o*1000:,.0f} ms, "
      f"DuckDB {d*1000:,.0f} ms; ratio {o/d:.2f} (goal <= 2.0)")
PY
