#!/usr/bin/env bash
# Every gosec suppression must name the rule and carry a one-line reason:
#   // #nosec G304 -- path comes from the operator's config, not a client
set -euo pipefail
cd "$(dirname "$0")/.."
bad=$(git grep -nE '#nosec' -- '*.go' | grep -vE '#nosec G[0-9]{3}( G[0-9]{3})* -- .{10,}' || true)
if [ -n "$bad" ]; then
  echo "gosec suppressions without a rule id and a reason (// #nosec G123 -- why):" >&2
  echo "$bad" >&2
  exit 1
fi
echo "nosec: every suppression names its rule and a reason ($(git grep -c '#nosec' -- '*.go' | awk -F: '{s+=$2} END {print s+0}') in total)"
