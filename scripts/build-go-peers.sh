#!/usr/bin/env bash
# Builds the Go peers into .build-bench/bin: the grpc-go server and gorilla proxy the benchmarks
# compare against, and the grpc-go load generator (also a test client: a grpc-go client with
# default windows). Installs Go and Debian's grpc-go packages with apt when missing. GOPATH mode,
# no module downloads: only Debian's packages are reachable.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=$ROOT/.build-bench
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
say() { printf '%s\n' "$*" >&2; }

# golang-github-golang-protobuf-1-5-dev is named explicitly: apt would otherwise pick 1.3, with
# which grpc-go's server panics on the first message.
GO_PACKAGES="golang-go protobuf-compiler protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev
  golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev golang-github-gorilla-websocket-dev"
missing=
for p in $GO_PACKAGES; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  say "==> installing$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
export PATH=/usr/lib/go/bin:$PATH

say "==> building the Go peers into .build-bench/bin (grpcserver, wsproxy, loadgen)"
rm -rf "$BUILD/src/sluicebench"
mkdir -p "$BUILD/src/sluicebench" "$BUILD/bin"
cp -r "$ROOT"/Benchmarks/baselines/{grpcserver,wsproxy,loadgen} "$BUILD/src/sluicebench/"
M="Mstream.proto=sluicebench/pb/streampb,Mhello.proto=sluicebench/pb/hellopb"
protoc -I"$ROOT/Protos" --go_out="$BUILD/src" --go_opt="$M" --go-grpc_out="$BUILD/src" --go-grpc_opt="$M" \
  "$ROOT/Protos/stream.proto" "$ROOT/Protos/hello.proto"
for program in grpcserver wsproxy loadgen; do
  GOPATH="$BUILD:/usr/share/gocode" GO111MODULE=off GOPROXY=off GOFLAGS= GOCACHE="$BUILD/cache" \
    go build -o "$BUILD/bin/$program" "sluicebench/$program"
done
