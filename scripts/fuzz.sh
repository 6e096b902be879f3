#!/usr/bin/env bash
# The live-gateway fuzzer with 100,000 cases (the regular suite runs 5,000):
#   scripts/fuzz.sh [cases] [seed]
# Prints the seed, counts, throughput (cases/s) and every failure family with a reproduction;
# summaries are appended to test-output/fuzz.txt. Replay one case with
#   SLUICE_FUZZ_SEED=<seed> SLUICE_FUZZ_ONLY=<index> python3 -m pytest -s Tests/Interop/test_fuzz.py
# The binary is $SLUICE_BIN, else .build/release/sluice.
set -uo pipefail
cd "$(dirname "$0")/.."
export SWIFT_BACKTRACE=enable=no
export SLUICE_BIN="${SLUICE_BIN:-$PWD/.build/release/sluice}"
export SLUICE_FUZZ_CASES="${1:-100000}"
export SLUICE_FUZZ_SEED="${2:-${SLUICE_FUZZ_SEED:-20261125}}"
export SLUICE_FUZZ_CONCURRENCY="${SLUICE_FUZZ_CONCURRENCY:-128}"
echo "fuzz: $SLUICE_FUZZ_CASES cases, seed $SLUICE_FUZZ_SEED, binary $SLUICE_BIN"
start=$(date +%s)
python3 -m pytest -q -s -p no:cacheprovider Tests/Interop/test_fuzz.py -k test_fuzz_ 2>&1 |
  grep -E '^(fuzz |  [0-9]+ cases|[0-9]+ cases in|  FAIL|    case #|      repro|  gateway RSS|  outcomes|  wsproto|active RPCs|[0-9]+ (passed|failed))'
status=${PIPESTATUS[0]}
end=$(date +%s)
echo "fuzz: $SLUICE_FUZZ_CASES cases in $((end - start)) s ($((SLUICE_FUZZ_CASES / (end - start + 1))) cases/s overall), pytest exit $status"
exit "$status"
