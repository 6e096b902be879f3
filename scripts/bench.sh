#!/usr/bin/env bash
# Benchmarks Sluice against what a user would otherwise deploy: a plain grpc-go server (native
# gRPC) and a gorilla/websocket + grpc-go proxy (WebSocket/JSON, HTTP JSON), on 127.0.0.1, with one
# Go load generator. Prints progress and a table; writes BENCHMARKS.md and
# test-output/bench/results.json.
#
#   scripts/bench.sh            # ~5 minutes (4 on 2 cores)
#   scripts/bench.sh --quick    # ~1-2 minutes
#
# Environment: SLUICE_BIN=path skips building Sluice; BENCH_RUNS, BENCH_N, BENCH_DURATION,
# BENCH_SESSIONS, BENCH_RATE, BENCH_GRPC_WINDOW override the mode's parameters; BENCH_MARKDOWN=path writes the
# report somewhere other than BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

MODE=full
for arg in "$@"; do
  case $arg in
    --quick) MODE=quick ;;
    -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done
if [ "$MODE" = quick ]; then
  RUNS=${BENCH_RUNS:-3} N=${BENCH_N:-20000} DURATION=${BENCH_DURATION:-1s}
else
  RUNS=${BENCH_RUNS:-5} N=${BENCH_N:-100000} DURATION=${BENCH_DURATION:-2s}
fi
SESSIONS=${BENCH_SESSIONS:-10000} RATE=${BENCH_RATE:-2000} STREAMS=64 WINDOW=64
# The grpc-go client runs with grpc-go's default flow control (dynamic windows, BDP PINGs), as
# users deploy it. BENCH_GRPC_WINDOW=<bytes> sets static windows instead.
GRPC_WINDOW=${BENCH_GRPC_WINDOW:-0}
OUT=$ROOT/test-output/bench
MARKDOWN=${BENCH_MARKDOWN:-$ROOT/BENCHMARKS.md}
BUILD=$ROOT/.build-bench
START=$(date +%s)
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
say() { printf '%s\n' "$*" >&2; }

# --- what it needs and the Go peers ---------------------------------------------------------------
scripts/build-go-peers.sh
export PATH=/usr/lib/go/bin:$PATH

# Sessions need file descriptors: 10,000 on the server and as many in the load generator.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# --- build ---------------------------------------------------------------------------------------
if [ -n "${SLUICE_BIN:-}" ]; then
  say "==> Sluice: $SLUICE_BIN (SLUICE_BIN)"
else
  say "==> building Sluice (swift build -c release --product sluice)"
  swift build -c release --product sluice >&2
  SLUICE_BIN=$(swift build -c release --show-bin-path)/sluice
fi
[ -x "$SLUICE_BIN" ] || { say "bench.sh: no Sluice binary at $SLUICE_BIN"; exit 1; }

LOADGEN=$BUILD/bin/loadgen

# --- servers -------------------------------------------------------------------------------------
mkdir -p "$OUT"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r SG SH GP WP < <("$LOADGEN" ports 4 | paste -sd' ')
"$SLUICE_BIN" --host 127.0.0.1 --grpc-port "$SG" --http-port "$SH" --pace-ms 0 --list-count "$N" \
  --log-level warning >"$OUT/sluice.log" 2>&1 &
SPID=$!
PIDS+=("$SPID")
"$BUILD/bin/grpcserver" --port "$GP" --list-count "$N" >"$OUT/grpcserver.log" 2>&1 &
GPID=$!
PIDS+=("$GPID")
"$BUILD/bin/wsproxy" --listen "127.0.0.1:$WP" --backend "127.0.0.1:$GP" >"$OUT/wsproxy.log" 2>&1 &
WPID=$!
PIDS+=("$WPID")
for port in "$SG" "$SH" "$GP" "$WP"; do
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
done
for pid in "$SPID" "$GPID" "$WPID"; do
  kill -0 "$pid" 2>/dev/null || { say "bench.sh: a server did not start; see $OUT/*.log"; cat "$OUT"/*.log >&2; exit 1; }
done
say "==> servers: Sluice gRPC :$SG HTTP :$SH (pid $SPID); grpc-go :$GP (pid $GPID); gorilla proxy :$WP (pid $WPID)"
say "==> mode $MODE: $RUNS runs, N=$N, duration $DURATION, $SESSIONS idle sessions; load $(cut -d' ' -f1-3 /proc/loadavg)"

SLUICE_GRPC="name=sluice,grpc=127.0.0.1:$SG,pids=$SPID"
GO_GRPC="name=grpc-go,grpc=127.0.0.1:$GP,pids=$GPID"
SLUICE_HTTP="name=sluice,http=127.0.0.1:$SH,pids=$SPID"
GO_HTTP="name=gorilla+grpc-go,http=127.0.0.1:$WP,pids=$WPID,$GPID"

RESULTS=$OUT/results.jsonl
: >"$RESULTS"
TOTAL=13
STEP=0
run() { # run LABEL SLUICE_TARGET BASELINE_TARGET loadgen-args...
  local label=$1 sluice=$2 baseline=$3
  shift 3
  STEP=$((STEP + 1))
  say "[$STEP/$TOTAL] $label"
  "$LOADGEN" run --label "$label" --runs "$RUNS" --n "$N" --duration "$DURATION" --window "$WINDOW" \
    --streams "$STREAMS" --rate "$RATE" --sessions "$SESSIONS" --grpc-window "$GRPC_WINDOW" --target "$sluice" --target "$baseline" "$@" >>"$RESULTS"
}

run "native gRPC Route, 1 stream" "$SLUICE_GRPC" "$GO_GRPC" --scenario grpc-route
run "native gRPC List" "$SLUICE_GRPC" "$GO_GRPC" --scenario grpc-list
run "WebSocket/JSON Route, 1 stream" "$SLUICE_HTTP" "$GO_HTTP" --scenario ws-route
run "WebSocket/JSON List" "$SLUICE_HTTP" "$GO_HTTP" --scenario ws-list
run "HTTP JSON unary SayHi, 1 client" "$SLUICE_HTTP" "$GO_HTTP" --scenario http-unary --concurrency 1
run "HTTP JSON unary SayHi, 64 clients" "$SLUICE_HTTP" "$GO_HTTP" --scenario http-unary --concurrency 64
run "native gRPC unary SayHi, 1 client" "$SLUICE_GRPC" "$GO_GRPC" --scenario grpc-unary --concurrency 1
run "native gRPC unary SayHi, 64 clients" "$SLUICE_GRPC" "$GO_GRPC" --scenario grpc-unary --concurrency 64
run "native gRPC Route, $STREAMS streams" "$SLUICE_GRPC" "$GO_GRPC" --scenario grpc-route-streams
run "WebSocket/JSON Route, $STREAMS streams" "$SLUICE_HTTP" "$GO_HTTP" --scenario ws-route-streams
run "native gRPC Route latency at $RATE msg/s" "$SLUICE_GRPC" "$GO_GRPC" --scenario grpc-latency
run "WebSocket/JSON Route latency at $RATE msg/s" "$SLUICE_HTTP" "$GO_HTTP" --scenario ws-latency
run "$SESSIONS idle WebSocket sessions" "$SLUICE_HTTP" "$GO_HTTP" --scenario ws-idle

for pid in "$SPID" "$GPID" "$WPID"; do
  kill -0 "$pid" 2>/dev/null || { say "bench.sh: a server died during the run; see $OUT/*.log"; exit 1; }
done
say "==> report"
swift_version=$( (swift --version 2>/dev/null || true) | head -1)
"$LOADGEN" report --results "$RESULTS" --json "$OUT/results.json" --markdown "$MARKDOWN" --mode "$MODE" \
  --command "scripts/bench.sh$([ "$MODE" = quick ] && echo ' --quick' || true)" \
  --swift-version "${swift_version:-unknown}" \
  --grpc-go-version "$(dpkg-query -W -f '${Version}' golang-google-grpc-dev)" \
  --gorilla-version "$(dpkg-query -W -f '${Version}' golang-github-gorilla-websocket-dev)" \
  --grpc-window "$GRPC_WINDOW" --load "$LOAD_AT_START" --total-seconds "$(($(date +%s) - START))"
say "==> wrote ${MARKDOWN#"$ROOT"/} and ${OUT#"$ROOT"/}/results.json ($(($(date +%s) - START)) s)"
