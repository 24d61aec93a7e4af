#!/usr/bin/env bash
# Compare a benchmark result with the committed baseline (issue 11;
# informational, not a CI gate). With RESULT=FILE it compares that file;
# otherwise it first runs the full benchmark (scripts/bench.sh) into
# bench/latest.json and bench/latest.md, leaving BENCHMARKS.md and the
# baseline untouched. Prints every metric with its change; a change beyond
# TOLERANCE (default 0.25 = 25%) in the bad direction is a regression.
# Exit status 0 unless STRICT=1 (or --strict) and something regressed.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
BASELINE=${BASELINE:-bench/baseline.json}
TOLERANCE=${TOLERANCE:-0.25}
args=(-baseline "$BASELINE" -tolerance "$TOLERANCE")
for a in "$@"; do
  case "$a" in
    --strict|-strict) STRICT=1 ;;
    *) echo "bench-check: unknown argument $a" >&2; exit 2 ;;
  esac
done
if [ -n "${STRICT:-}" ] && [ "${STRICT}" != 0 ]; then
  args+=(-strict)
fi
result=${RESULT:-}
if [ -z "$result" ]; then
  result=bench/latest.json
  scripts/bench.sh -json "$result" -md bench/latest.md
else
  mkdir -p bin
  $GO build -o bin/bench-gateway ./test/bench/gateway
fi
exec ./bin/bench-gateway check "${args[@]}" -result "$result"
