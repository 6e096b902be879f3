#!/usr/bin/env bash
# libFuzzer on descriptor loading (coverage-guided, AddressSanitizer): a FileDescriptorSet from an
# upstream's server reflection or a --descriptor-set file is untrusted input.
#   scripts/fuzz-descriptors.sh [extra libFuzzer flags]
#   RUNS=1000000 CONFIG=release|debug scripts/fuzz-descriptors.sh -max_total_time=600
# Inputs are raw sets (seeded with valid ones) and mutation scripts over valid sets; whatever loads
# is exercised (FuzzTesting/Sources/FuzzDescriptors/main.swift says how). Output goes to
# test-output/fuzz-descriptors/: the corpus (kept between runs), fuzz.log, and crash-*/timeout-*/oom-*
# inputs; a finding makes the script exit non-zero.
# Replay one input: FuzzTesting/.build/$CONFIG/FuzzDescriptors test-output/fuzz-descriptors/crash-<sha1>
# (with SLUICE_FUZZ_DESCRIPTOR_SETS as printed below).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=SCRIPTDIR/fuzz-common.sh
source scripts/fuzz-common.sh   # the build, descriptor sets, run and report, with their reasons

fuzz_init fuzz-descriptors FuzzDescriptors
fuzz_build --product FuzzDescriptors
fuzz_descriptor_sets

step "seed corpus"
# Each base set raw (mode byte 0, then the set) and as an empty mutation script (1, its index).
index=0
IFS=: read -ra base_sets <<<"$sets"
for set in "${base_sets[@]}"; do
  { printf '\0'; cat "$set"; } >"$out/seeds/raw-$index"
  printf '%b' "\\001\\0$(printf '%03o' "$index")" >"$out/seeds/script-$index"
  index=$((index + 1))
done
cp -n "$out"/seeds/* "$out/corpus/"
echo "corpus: $(find "$out/corpus" -type f | wc -l) files"

# The base sets are a few KiB.
fuzz_run 16384 "$@"
fuzz_report
