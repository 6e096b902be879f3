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
root=$PWD

export SWIFT_BACKTRACE=enable=no   # let libFuzzer print the stack of a trap, at once
# release runs ~13x faster than debug (2,500 vs 190 exec/s here); SluiceCodec has no assert() that -O drops.
config=${CONFIG:-release}
runs=${RUNS:-1000000}
out=$root/test-output/fuzz-codec
mkdir -p "$out/corpus" "$out/seeds"

step() { printf '\n==> %s\n' "$*"; }

# One -sanitize=fuzzer,address for every module. SwiftPM's own `--sanitize=fuzzer --sanitize=address`
# passes two -sanitize= flags in no fixed order and swiftc (6.3.1) keeps only the last: each build
# then got either coverage or ASan, never both. `--sanitize=fuzzer` alone still tells SwiftPM to
# link libFuzzer's main instead of main.swift's; the -Xswiftc flag comes after it, so it wins.
build=(swift build -c "$config" --package-path FuzzTesting --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address)
step "${build[*]}"
start=$(date +%s)
if ! "${build[@]}" >"$out/build.log" 2>&1; then
  # ld.gold warns about every ASan helper symbol; those lines are noise.
  grep -v "ld.gold: warning: Cannot export local symbol" "$out/build.log" | tail -30 >&2
  if grep -qiE "sanitize|fuzzer|libclang_rt|asan" "$out/build.log"; then
    echo "fuzz-codec: this toolchain cannot build with -sanitize=fuzzer,address ($(swift --version 2>&1 | head -1))." >&2
    echo "fuzz-codec: the swift.org Linux toolchains ship the fuzzer runtime; Xcode's does not (use a swift.org one)." >&2
  fi
  echo "fuzz-codec: build failed, full log in $out/build.log" >&2
  exit 2
fi
echo "built in $(($(date +%s) - start)) s"
fuzzer=$root/FuzzTesting/.build/$config/FuzzCodec
symbols=$(nm FuzzTesting/.build/"$config"/SluiceCodec.build/*.o 2>/dev/null || true)
if ! grep -q __asan_report <<<"$symbols" || ! grep -q __sancov <<<"$symbols"; then
  echo "fuzz-codec: SluiceCodec was not compiled with both ASan and coverage (see the comment on build=)" >&2
  exit 2
fi

# The codec tests' protos (every field kind, proto2, every well-known type), as a descriptor set.
step "descriptor sets"
sets=$root/Protos/sluice.binpb
test_protos=(-I Tests/SluiceCodecTests/Protos --include_imports --descriptor_set_out="$out/codec_test.binpb"
  codec_test.proto codec_test_proto2.proto)
if command -v protoc >/dev/null && [ -f /usr/include/google/protobuf/any.proto ] &&
  protoc -I /usr/include "${test_protos[@]}"; then
  sets=$sets:$out/codec_test.binpb
elif python3 -c 'import grpc_tools' 2>/dev/null && python3 -m grpc_tools.protoc "${test_protos[@]}"; then
  sets=$sets:$out/codec_test.binpb
else
  echo "fuzz-codec: neither protoc (apt: protobuf-compiler) nor grpc_tools: fuzzing Protos/sluice.binpb only" >&2
fi
export SLUICE_FUZZ_DESCRIPTOR_SETS=$sets
echo "SLUICE_FUZZ_DESCRIPTOR_SETS=$sets"

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

# One job only: the machine's two cores are shared.
step "$fuzzer -runs=$runs -max_len=4096 -timeout=10 ($config)"
start=$(date +%s)
status=0
"$fuzzer" -runs="$runs" -max_len=4096 -timeout=10 -dict="$out/codec.dict" -print_final_stats=1 \
  -artifact_prefix="$out/" "$@" "$out/corpus" >"$out/fuzz.log" 2>&1 || status=$?
elapsed=$(($(date +%s) - start))

# The summary: start and end of coverage, libFuzzer's final stats, and any finding in full.
grep -E '^INFO: (Seed|Loaded|seed corpus)|INITED' "$out/fuzz.log" || true
grep -E '^#[0-9]+[[:space:]]+(pulse|NEW|REDUCE|DONE)' "$out/fuzz.log" | tail -1 || true
grep -E '^(Done [0-9]+ runs|stat::)' "$out/fuzz.log" || true
if [ "$status" -eq 72 ] && ! ls "$out" | grep -qE '^(crash|timeout|oom|leak)-'; then
  echo "fuzz-codec: interrupted after ${elapsed} s (libFuzzer exit 72), no finding" >&2
  exit "$status"
elif [ "$status" -ne 0 ]; then
  sed -n '/FuzzCodec invariant\|Fatal error\|==ERROR\|deadly signal\|ALARM\|out-of-memory/,$p' "$out/fuzz.log" | head -80 >&2
  echo "fuzz-codec: FINDING (libFuzzer exit $status) after ${elapsed} s; inputs: $(ls "$out" | grep -E '^(crash|timeout|oom|leak)-' | tr '\n' ' ')" >&2
  exit "$status"
fi
if ! grep -q 'inline 8-bit counters' "$out/fuzz.log"; then
  echo "fuzz-codec: libFuzzer found no coverage counters, so it fuzzed blind (see the comment on build=)" >&2
  exit 3
fi
echo "fuzz-codec: $runs runs in ${elapsed} s, no finding; corpus $(find "$out/corpus" -type f | wc -l) files; log $out/fuzz.log"
