#!/usr/bin/env bash
# Fails when Protos/*.proto (and Protos/interop/*.proto, Protos/grpc/**.proto), or public/, and the committed generated code
# have drifted apart (cheap: no plugins).
# The descriptor set is rebuilt with protoc when it is installed and compared byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."
fingerprint=Sources/SluiceProtos/Generated/protos.sha256
grpc=(Protos/grpc/reflection/v1/reflection.proto Protos/grpc/reflection/v1alpha/reflection.proto Protos/grpc/health/v1/health.proto)
if ! diff <(sha256sum Protos/*.proto Protos/interop/*.proto "${grpc[@]}") "$fingerprint" >/dev/null; then
  echo "Protos/*.proto changed since the code was generated: run scripts/generate-protos.sh" >&2
  exit 1
fi
if command -v protoc >/dev/null; then
  fresh=$(mktemp)
  trap 'rm -f "$fresh"' EXIT
  protoc -I Protos --include_imports --descriptor_set_out="$fresh" Protos/*.proto "${grpc[@]}"
  cmp -s "$fresh" Protos/sluice.binpb || {
    echo "Protos/sluice.binpb is stale: run scripts/generate-protos.sh" >&2
    exit 1
  }
fi
if ! diff <(scripts/embed-public.sh --stdout) Sources/SluicePublicFiles/Generated/PublicFiles.swift >/dev/null; then
  echo "public/ changed since Sources/SluicePublicFiles/Generated/PublicFiles.swift was generated: run scripts/embed-public.sh" >&2
  exit 1
fi
echo "generated code matches Protos/ and public/"
