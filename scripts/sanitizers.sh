#!/usr/bin/env bash
# Runs the Swift test suite under a sanitizer, each in its own scratch path (a full build the
# first time, about 10 minutes here):
#   scripts/sanitizers.sh thread     # ThreadSanitizer
#   scripts/sanitizers.sh address    # AddressSanitizer, with LeakSanitizer at exit
# Leaks that libraries outside Sluice hold at exit are suppressed, each with its reason, in
# Tests/lsan-suppressions.txt; anything else fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
sanitizer=${1:?usage: scripts/sanitizers.sh thread|address}
case "$sanitizer" in
  thread) scratch=.build-tsan ;;
  address) scratch=.build-asan ;;
  *) echo "sanitizers.sh: thread or address, not $sanitizer" >&2; exit 2 ;;
esac
export SWIFT_BACKTRACE=enable=no
export LSAN_OPTIONS="suppressions=$PWD/Tests/lsan-suppressions.txt:print_suppressions=1"
export TSAN_OPTIONS="halt_on_error=0:second_deadlock_stack=1"
swift build --build-tests --sanitize="$sanitizer" --scratch-path "$scratch"
swift test --skip-build --sanitize="$sanitizer" --scratch-path "$scratch"
