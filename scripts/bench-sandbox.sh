#!/usr/bin/env bash
# Sandbox overhead benchmark (not part of `make test`): /bin/true and
# `python3 -c pass` bare, in the Portcullis sandbox cold and warm, and in
# bubblewrap with equivalent isolation, side by side; p50/p99 and ratios.
# Needs root; installs Debian's bubblewrap when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
RUNS=${RUNS:-200}
if [ "$(id -u)" != 0 ]; then
  echo "bench-sandbox: needs root (the native runtime maps sandbox users onto host ids)" >&2
  exit 1
fi
if ! command -v bwrap >/dev/null 2>&1; then
  echo "bench-sandbox: installing bubblewrap from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq bubblewrap >/dev/null
fi
mkdir -p bin
$GO build -o bin/bench-sandbox ./test/bench/sandbox
echo "bench-sandbox: $(bwrap --version), $RUNS runs per row"
./bin/bench-sandbox -n "$RUNS" | tee bench-sandbox.txt
