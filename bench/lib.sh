# Shared by the collector benchmarks (sourced, not run): one collection from the simulator.
#
# collect BIN WRAP: into a fresh $WORK, starts `BIN sim` with $N events (seed 7, rate limits off) on
# a free loopback port, onboards it as a source, runs `WRAP BIN run --once --no-rate-limit` (WRAP
# may be empty; its stderr goes to $WORK/run.err), then stops the simulator.
BENCH_ORG=11111111-2222-3333-4444-555555555555

collect() {
  local bin=$1 wrap=$2 port sim
  rm -rf "$WORK" && mkdir -p "$WORK"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  ORGTRAIL_SIM_KEY=bench-key "$bin" sim --listen 127.0.0.1:"$port" --org $BENCH_ORG --events "$N" \
    --seed 7 --no-rate-limit >"$WORK/sim.log" 2>&1 &
  sim=$!
  trap 'kill $sim 2>/dev/null || true' EXIT
  for _ in $(seq 1 1200); do curl -sf "http://127.0.0.1:$port/_sim/health" >/dev/null && break; sleep 0.5; done
  if ! echo bench-key | "$bin" --data-dir "$WORK" source add --name bench --org-id $BENCH_ORG \
    --api-key-stdin --base-url "http://127.0.0.1:$port" --no-input >"$WORK/add.log" 2>&1; then
    cat "$WORK/add.log" >&2
    exit 1
  fi
  $wrap "$bin" --data-dir "$WORK" run --once --no-rate-limit >"$WORK/run.out" 2>"$WORK/run.err"
  kill $sim
  trap - EXIT
}
