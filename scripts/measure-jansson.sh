#!/usr/bin/env bash
# Times libjansson on the same document as Benchmarks/CodecBenchmark's "JSON readers" table, and
# probes the two correctness rules that ruled it out (uint64 range, duplicate keys). The figures
# are recorded in Sources/SluiceCodec/JSONReader.swift. Needs gcc and libjansson-dev (apt).
# Not part of CI: jansson is not a dependency of Sluice.
set -euo pipefail
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/bench.c" <<'C'
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

int main(void) {
  const char *doc = "{\"pt\":{\"name\":\"gRPC Stream Client: Route\",\"value\":123456}}";
  json_error_t error;
  long parses = 0, sink = 0;
  double start = now();
  while (now() - start < 2.0) {
    for (int i = 0; i < 1000; i++) {
      json_t *value = json_loadb(doc, strlen(doc), JSON_REJECT_DUPLICATES, &error);
      sink += json_object_size(value);
      json_decref(value);
    }
    parses += 1000;
  }
  printf("| libjansson %s json_loadb | %.0f parses/s |\n", JANSSON_VERSION, parses / (now() - start));
  const char *big = "{\"u\":18446744073709551615}";
  json_t *value = json_loadb(big, strlen(big), 0, &error);
  printf("uint64 max: %s\n", value ? "parsed" : error.text);
  const char *duplicate = "{\"a\":1,\"a\":2}";
  value = json_loadb(duplicate, strlen(duplicate), JSON_REJECT_DUPLICATES, &error);
  printf("duplicate keys: %s (sink %ld)\n", value ? "accepted" : error.text, sink);
  return 0;
}
C
gcc -O2 "$work/bench.c" -o "$work/bench" -ljansson
"$work/bench"
