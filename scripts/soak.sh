#!/usr/bin/env bash
# Soak test: mixed WebSocket, HTTP JSON and native gRPC load against one gateway for a while
# (default 10 minutes), printing requests, errors, RSS and RPCs in flight every 10 s.
#   scripts/soak.sh [--minutes N] [--concurrency N] [--rss-bound-mb N] [--proxy]
# The binary is $SLUICE_BIN, else .build/release/sluice (swift build -c release --product sluice).
# Not part of scripts/test.sh. Exits non-zero on any error or if RSS grew in the second half.
set -euo pipefail
cd "$(dirname "$0")/.."
export SWIFT_BACKTRACE=enable=no
exec python3 scripts/soak.py "$@"
