#!/usr/bin/env bash
# libFuzzer on SluiceCodec (coverage-guided, AddressSanitizer), through the separate package in
# FuzzTesting/ so that the main package and its CI stay as they are:
#   scripts/fuzz-codec.sh [extra libFuzzer flags]
#   RUNS=1000000 CONFIG=release|debug scripts/fuzz-codec.sh -max_total_time=600
# Every input is tried as JSON text and as protobuf binary for every message type of
# Protos/sluice.binpb and of the codec tests' protos (see FuzzTesting/Sources/FuzzCodec/main.swift
# for the invariants). Output goes to test-output/fuzz-codec/: the corpus (kept between runs),
# fuzz.log, and crash-*/timeout-*/oom-* inputs; a finding makes the script exit non-zero.
# Replay one input: FuzzTesting/.build/$CONFIG/FuzzCodec test-output/fuzz-codec/crash-<sha1>
# (with SLUICE_FUZZ_DESCRIPTOR_SETS as printed below).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=SCRIPTDIR/fuzz-common.sh
source scripts/fuzz-common.sh   # the build, descriptor sets, run and report, with their reasons

fuzz_init fuzz-codec FuzzCodec
# One product: the whole package would also build swift-protobuf's protoc, whose main clashes
# with libFuzzer's.
fuzz_build --product FuzzCodec
fuzz_descriptor_sets

# Seeds: valid requests for the hosted and test messages (from the codec tests), and their binary
# forms, which the fuzzer writes itself (SLUICE_FUZZ_EMIT) along with a dictionary of field names.
step "seed corpus"
seed=0
add_seed() { seed=$((seed + 1)); printf '%s' "$1" >"$out/seeds/seed-$seed.json"; }
add_seed '{"pt":{"name":"gRPC Stream Client: Route","value":123456}}'
add_seed '{"pt":{}}'
add_seed '{}'
add_seed '{"data":"hello"}'
add_seed '{"name":"world","result":"ok"}'
add_seed '{"scalars":{"fDouble":1.5,"fFloat":"NaN","fInt32":-5,"fInt64":"-9223372036854775808","fUint32":4294967295,"fUint64":"18446744073709551615","fSint32":-3,"fSint64":"7","fFixed32":9,"fFixed64":"10","fSfixed32":-11,"fSfixed64":"-12","fBool":true,"fString":"h\u00e9llo \ud83d\ude00","fBytes":"AAEC/w==","fEnum":"RED"},"rInt32":[1,-2,3],"rDouble":[1,"Infinity"],"rString":["a","b"],"rEnum":["RED",2],"rNested":[{"name":"n","child":{"value":3}}],"uInt32":[1,2],"mInt32":{"1":"a","-2":"b"},"mBool":{"true":"t"},"mString":{"k":{"name":"v"}},"mValue":{"x":[1,"a",null,{"b":true}]}}'
add_seed '{"oString":"one","optInt32":0,"timestamp":"2024-02-29T12:00:00.123Z","duration":"-1.5s","fieldMask":"a.bC,d","structValue":{"a":{"b":[1,2]}},"value":null,"listValue":[1,{}],"nullValue":null,"empty":{},"any":{"@type":"type.googleapis.com/codectest.Nested","name":"x"},"rAny":[{"@type":"type.googleapis.com/google.protobuf.Duration","value":"1s"}],"wDouble":1,"wInt64":"5","wString":"s","wBytes":"_-8","customName":"c","snake_case_field_name":3,"recursive":{"nested":{"value":1},"mSfixed64":{"-1":"1970-01-01T00:00:00Z"},"oNested":{}}}'
add_seed '{"count":0,"label":"x","flag":true,"level":"HIGH","plain":[1,2],"packed":["-3","4"],"item":{"name":"n","size":"5"},"entry":[{"id":1},{}],"child":{"flag":false,"level":"LOW"},"levels":{"a":1},"ratio":0.5}'
add_seed '{"flag":false,"blob":"AAE=","entry":[{"id":7}],"child":{"flag":true,"item":{}}}'
add_seed '{"mUint32":{"7":{"name":"a","children":[{"color":"NEGATIVE"}]}},"mSint64":{"-1":"-Infinity"},"rBytes":["","AA=="],"oTimestamp":"1970-01-01T00:00:00.000000001Z","wUint64":"18446744073709551615"}'
add_seed '[1,"a",null,{"b":true,"c":[{}]}]'
add_seed '"2024-02-29T12:00:00.123Z"'
cp -n "$out"/seeds/*.json "$out/corpus/"
SLUICE_FUZZ_EMIT=$out/corpus "$fuzzer" "$out"/seeds/*.json >"$out/seed.log" 2>&1 ||
  { tail -30 "$out/seed.log" >&2; echo "fuzz-codec: a seed itself fails, see $out/seed.log" >&2; exit 1; }
echo "corpus: $(find "$out/corpus" -type f | wc -l) files; dictionary: $(wc -l <"$out/codec.dict") field names"

fuzz_run 4096 -dict="$out/codec.dict" "$@"
fuzz_report
