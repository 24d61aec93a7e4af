#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME (default 10s) each.
# A crasher is written by `go test` to <package>/testdata/fuzz/<Target>/;
# fix the bug and commit that file: it becomes a regression case that
# every plain `go test` run replays.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10s}
GO=${GO:-go}

mapfile -t targets < <(git ls-files '*_test.go' | xargs grep -lE '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' |
  while read -r file; do
    dir=./$(dirname "$file")
    grep -oE '^func Fuzz[A-Za-z0-9_]+' "$file" | sed "s|^func |$dir |"
  done | sort -u)

if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz-smoke: no fuzz targets found" >&2
  exit 1
fi
echo "fuzz-smoke: ${#targets[@]} targets, ${FUZZTIME} each"
# corpus_count DIR NAME: files in the target's corpus directory (a new one
# after a failed run is the crasher go test wrote).
corpus_count() {
  local d="$1/testdata/fuzz/$2"
  if [ -d "$d" ]; then find "$d" -type f | wc -l; else echo 0; fi
}

# A duration -fuzztime can end with a bare "context deadline exceeded" and no
# failing input: a race in Go's fuzz coordinator (golang/go#75804, fixed in
# Go 1.27, present in 1.26.x). Such a run is retried; a run that wrote a
# failing input, or failed any other way, fails the target.
failed=()
flaked=()
for t in "${targets[@]}"; do
  dir=${t% *}
  name=${t#* }
  printf '== %-28s %s\n' "$name" "$dir"
  log="/tmp/fuzz-${name}.log"
  ok=0
  for attempt in 1 2 3; do
    before=$(corpus_count "$dir" "$name")
    if $GO test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$dir" > "$log" 2>&1; then
      grep -E '^fuzz: elapsed' "$log" | tail -1 || true
      ok=1
      break
    fi
    after=$(corpus_count "$dir" "$name")
    if [ "$after" -eq "$before" ] && grep -qE '^    context deadline exceeded$' "$log" &&
      ! grep -q "Failing input written" "$log"; then
      echo "fuzz-smoke: $name: coordinator deadline race (golang/go#75804), no failing input; retry $attempt"
      flaked+=("$name")
      continue
    fi
    break
  done
  if [ $ok -eq 0 ]; then
    tail -30 "$log"
    failed+=("$name ($dir)")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz-smoke: FAILED: ${failed[*]}" >&2
  echo "fuzz-smoke: crashers are in <package>/testdata/fuzz/<Target>/; fix, then commit them as regression cases" >&2
  exit 1
fi
echo "fuzz-smoke: all ${#targets[@]} targets passed (${#flaked[@]} coordinator-race retries)"
