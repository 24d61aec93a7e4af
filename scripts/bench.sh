#!/usr/bin/env bash
# Full benchmark (issue 11; not part of `make test`): builds the gateway,
# the fixture MCP server (both CGO_ENABLED=0) and the harness
# (test/bench/gateway), then runs every section one after another —
# gateway overhead, built-in throughput, policy, audit, sandboxes
# (scripts/bench-sandbox.sh), memory — and writes BENCHMARKS.md and
# bench/baseline.json. Needs root (the plugin and the sandbox section run
# in the native sandbox). RUNS sets the sandbox runs per row (default 200);
# extra arguments go to `bench-gateway run`, e.g.
#   scripts/bench.sh -json bench/latest.json -md bench/latest.md
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
RUNS=${RUNS:-200}
if [ "$(id -u)" != 0 ]; then
  echo "bench: needs root (the plugin and the sandbox section run in the native sandbox)" >&2
  exit 1
fi
mkdir -p bin bench
echo "bench: building bin/portcullis, bin/mcpfixture, bin/bench-gateway"
CGO_ENABLED=0 $GO build -trimpath -o bin/portcullis ./cmd/portcullis
CGO_ENABLED=0 $GO build -trimpath -o bin/mcpfixture ./test/fixtures/mcpfixture
$GO build -o bin/bench-gateway ./test/bench/gateway
exec ./bin/bench-gateway run -portcullis bin/portcullis -fixture bin/mcpfixture \
  -go "$GO" -sandbox-runs "$RUNS" "$@"
