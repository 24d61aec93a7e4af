#!/usr/bin/env bash
# Prints per-package statement coverage from a `go test -cover` log and
# fails when a core package is below the bar (the seed's 80%).
# Usage: coverage-gate.sh <go test output file>
set -euo pipefail
log=${1:?usage: coverage-gate.sh <go test output>}
MIN=${COVERAGE_MIN:-80}
MODULE=github.com/portcullis/portcullis
CORE=(internal/gateway internal/policy internal/authn internal/authn/oidc internal/audit internal/sandbox internal/sandbox/native internal/tools/files)

declare -A cov
while read -r line; do
  pkg=$(awk '{print $2}' <<<"$line")
  pct=$(grep -oE 'coverage: [0-9.]+%' <<<"$line" | grep -oE '[0-9.]+' || true)
  [ -n "$pct" ] && cov[${pkg#"$MODULE"/}]=$pct
done < <(grep -E '^ok\s' "$log" || true)

echo "coverage by package (core packages must reach ${MIN}%):"
for p in $(printf '%s\n' "${!cov[@]}" | sort); do
  mark=""
  for c in "${CORE[@]}"; do [ "$p" = "$c" ] && mark=" (core)"; done
  printf '  %-32s %6s%%%s\n' "$p" "${cov[$p]}" "$mark"
done
fail=0
for c in "${CORE[@]}"; do
  pct=${cov[$c]:-}
  if [ -z "$pct" ]; then
    echo "coverage gate: no coverage figure for core package $c" >&2
    fail=1
  elif awk -v p="$pct" -v m="$MIN" 'BEGIN{exit !(p < m)}'; then
    echo "coverage gate: $c is at ${pct}%, below ${MIN}%" >&2
    fail=1
  fi
done
[ $fail -eq 0 ] && echo "coverage gate: all core packages at or above ${MIN}%"
exit $fail
