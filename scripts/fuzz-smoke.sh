#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME (default 15s) each.
# A crasher is written by `go test` to <package>/testdata/fuzz/<Target>/;
# fix the bug and commit that file: it becomes a regression case that
# every plain `go test` run replays.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-15s}
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
failed=()
for t in "${targets[@]}"; do
  dir=${t% *}
  name=${t#* }
  printf '== %-28s %s\n' "$name" "$dir"
  if ! $GO test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$dir" > "/tmp/fuzz-${name}.log" 2>&1; then
    tail -30 "/tmp/fuzz-${name}.log"
    failed+=("$name ($dir)")
  else
    grep -E '^fuzz: elapsed' "/tmp/fuzz-${name}.log" | tail -1 || true
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz-smoke: FAILED: ${failed[*]}" >&2
  echo "fuzz-smoke: crashers are in <package>/testdata/fuzz/<Target>/; fix, then commit them as regression cases" >&2
  exit 1
fi
echo "fuzz-smoke: all ${#targets[@]} targets passed"
