# shellcheck shell=bash
# What scripts/fuzz-codec.sh and scripts/fuzz-descriptors.sh share, sourced (not run) by both after
# `set -euo pipefail` and a cd to the repository: the sanitizer build of the FuzzTesting/ package,
# the descriptor sets, the libFuzzer run and its summary. Each script keeps its header, its seeds
# and its product. In order:
#   fuzz_init NAME PRODUCT     sets root, config (CONFIG), runs (RUNS), out and fuzzer
#   fuzz_build [ARGS]          the sanitizer build; exits 2 if it fails or lacks ASan or coverage
#   fuzz_descriptor_sets       sets and exports sets (SLUICE_FUZZ_DESCRIPTOR_SETS)
#   fuzz_run MAX_LEN [FLAGS]   sets status and elapsed
#   fuzz_report                the summary; exits with libFuzzer's status on a finding, 3 if blind

step() { printf '\n==> %s\n' "$*"; }

# fuzz_init NAME PRODUCT: NAME (fuzz-codec) begins every message and names the output folder,
# test-output/NAME/; PRODUCT (FuzzCodec) is the fuzzer's executable target in FuzzTesting/.
fuzz_init() {
  fuzz_name=$1
  fuzz_product=$2
  root=$PWD
  export SWIFT_BACKTRACE=enable=no   # let libFuzzer print the stack of a trap, at once
  # release runs ~13x faster than debug (2,500 vs 190 exec/s here); SluiceCodec has no assert() that -O drops.
  config=${CONFIG:-release}
  runs=${RUNS:-1000000}
  out=$root/test-output/$fuzz_name
  fuzzer=$root/FuzzTesting/.build/$config/$fuzz_product
  mkdir -p "$out/corpus" "$out/seeds"
}

# fuzz_build [ARGS]: ARGS go to `swift build` after the package path (--product X builds one
# fuzzer; none builds the whole package).
fuzz_build() {
  # One -sanitize=fuzzer,address for every module. SwiftPM's own `--sanitize=fuzzer --sanitize=address`
  # passes two -sanitize= flags in no fixed order and swiftc (6.3.1) keeps only the last: each build
  # then got either coverage or ASan, never both. `--sanitize=fuzzer` alone still tells SwiftPM to
  # link libFuzzer's main instead of main.swift's; the -Xswiftc flag comes after it, so it wins.
  # shellcheck disable=SC2054 # the comma is swiftc's, not an array separator
  local build=(swift build -c "$config" --package-path FuzzTesting "$@" --sanitize=fuzzer
    -Xswiftc -sanitize=fuzzer,address)
  local start symbols
  step "${build[*]}"
  start=$(date +%s)
  if ! "${build[@]}" >"$out/build.log" 2>&1; then
    # ld.gold warns about every ASan helper symbol; those lines are noise.
    grep -v "ld.gold: warning: Cannot export local symbol" "$out/build.log" | tail -30 >&2
    if grep -qiE "sanitize|fuzzer|libclang_rt|asan" "$out/build.log"; then
      echo "$fuzz_name: this toolchain cannot build with -sanitize=fuzzer,address ($(swift --version 2>&1 | head -1))." >&2
      echo "$fuzz_name: the swift.org Linux toolchains ship the fuzzer runtime; Xcode's does not (use a swift.org one)." >&2
    fi
    echo "$fuzz_name: build failed, full log in $out/build.log" >&2
    exit 2
  fi
  echo "built in $(($(date +%s) - start)) s"
  symbols=$(nm FuzzTesting/.build/"$config"/SluiceCodec.build/*.o 2>/dev/null || true)
  if ! grep -q __asan_report <<<"$symbols" || ! grep -q __sancov <<<"$symbols"; then
    echo "$fuzz_name: SluiceCodec was not compiled with both ASan and coverage (see the comment on build= in scripts/fuzz-common.sh)" >&2
    exit 2
  fi
}

# fuzz_descriptor_sets: the hosted services' set, and the codec tests' protos (every field kind,
# proto2, maps, oneofs, every well-known type) as a second set when protoc or grpc_tools is at hand.
fuzz_descriptor_sets() {
  step "descriptor sets"
  sets=$root/Protos/sluice.binpb
  local test_protos=(-I Tests/SluiceCodecTests/Protos --include_imports --descriptor_set_out="$out/codec_test.binpb"
    codec_test.proto codec_test_proto2.proto)
  if command -v protoc >/dev/null && [ -f /usr/include/google/protobuf/any.proto ] &&
    protoc -I /usr/include "${test_protos[@]}"; then
    sets=$sets:$out/codec_test.binpb
  elif python3 -c 'import grpc_tools' 2>/dev/null && python3 -m grpc_tools.protoc "${test_protos[@]}"; then
    sets=$sets:$out/codec_test.binpb
  else
    echo "$fuzz_name: neither protoc (apt: protobuf-compiler) nor grpc_tools: fuzzing Protos/sluice.binpb only" >&2
  fi
  export SLUICE_FUZZ_DESCRIPTOR_SETS=$sets
  echo "SLUICE_FUZZ_DESCRIPTOR_SETS=$sets"
}

# fuzz_run MAX_LEN [FLAGS]: the fuzzer on the corpus; FLAGS (the script's, then the user's) come
# after the common ones, so they can override them.
fuzz_run() {
  local max_len=$1 start
  shift
  # One job only: the machine's two cores are shared.
  step "$fuzzer -runs=$runs -max_len=$max_len -timeout=10 ($config)"
  start=$(date +%s)
  status=0
  "$fuzzer" -runs="$runs" -max_len="$max_len" -timeout=10 -print_final_stats=1 -artifact_prefix="$out/" "$@" \
    "$out/corpus" >"$out/fuzz.log" 2>&1 || status=$?
  elapsed=$(($(date +%s) - start))
}

# The inputs libFuzzer saved for findings (crash-*, timeout-*, oom-*, leak-*), one name a line.
fuzz_findings() {
  find "$out" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) \
    -printf '%f\n' | sort
}

# fuzz_report: the summary: start and end of coverage, libFuzzer's final stats, and any finding in full.
fuzz_report() {
  grep -E '^INFO: (Seed|Loaded|seed corpus)|INITED' "$out/fuzz.log" || true
  grep -E '^#[0-9]+[[:space:]]+(pulse|NEW|REDUCE|DONE)' "$out/fuzz.log" | tail -1 || true
  grep -E '^(Done [0-9]+ runs|stat::)' "$out/fuzz.log" || true
  if [ "$status" -eq 72 ] && [ -z "$(fuzz_findings)" ]; then
    echo "$fuzz_name: interrupted after ${elapsed} s (libFuzzer exit 72), no finding" >&2
    exit "$status"
  elif [ "$status" -ne 0 ]; then
    sed -n "/$fuzz_product invariant\\|Fatal error\\|==ERROR\\|deadly signal\\|ALARM\\|out-of-memory/,\$p" "$out/fuzz.log" |
      head -80 >&2
    echo "$fuzz_name: FINDING (libFuzzer exit $status) after ${elapsed} s; inputs: $(fuzz_findings | tr '\n' ' ')" >&2
    exit "$status"
  fi
  if ! grep -q 'inline 8-bit counters' "$out/fuzz.log"; then
    echo "$fuzz_name: libFuzzer found no coverage counters, so it fuzzed blind (see the comment on build= in scripts/fuzz-common.sh)" >&2
    exit 3
  fi
  # libFuzzer's own count: -max_total_time can end the run first.
  echo "$fuzz_name: $(grep -oE '^Done [0-9]+ runs' "$out/fuzz.log" | grep -oE '[0-9]+' || echo "$runs") runs in ${elapsed} s, no finding; corpus $(find "$out/corpus" -type f | wc -l) files; log $out/fuzz.log"
}
