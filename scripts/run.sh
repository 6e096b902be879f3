#!/usr/bin/env bash
# Starts the gateway with its defaults (flags pass through: scripts/run.sh --help). Installs the
# two C libraries it links when they are missing (Debian: libnghttp2-dev for the native port's
# HTTP/2, zlib1g-dev for gzip), then `swift run sluice`.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
[ -f /usr/include/nghttp2/nghttp2.h ] || missing+=(libnghttp2-dev)
[ -f /usr/include/zlib.h ] || missing+=(zlib1g-dev)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "==> apt-get install ${missing[*]}" >&2
  $sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
exec swift run sluice "$@"
