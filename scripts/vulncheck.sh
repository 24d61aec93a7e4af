#!/usr/bin/env bash
# govulncheck against an offline vulnerability database. This machine
# cannot reach the online database, so the scan runs only when GOVULNDB
# names a local copy (GOVULNDB=file:///path/to/vulndb); otherwise it says
# loudly that nothing was scanned. A skipped scan is never reported clean.
set -euo pipefail
GOVULNCHECK=${GOVULNCHECK:?path to govulncheck}
if [ -z "${GOVULNDB:-}" ]; then
  echo "govulncheck: SKIPPED - no offline vulnerability database configured."
  echo "govulncheck:   set GOVULNDB=file:///path/to/vulndb to scan; this is NOT a clean result."
  exit 0
fi
case "$GOVULNDB" in
  file://*) ;;
  *) echo "govulncheck: GOVULNDB must be a file:// URL of an offline database, got '$GOVULNDB'" >&2; exit 1 ;;
esac
dir=${GOVULNDB#file://}
if [ ! -d "$dir" ]; then
  echo "govulncheck: offline database $dir does not exist" >&2
  exit 1
fi
echo "govulncheck: scanning against offline database $GOVULNDB"
exec "$GOVULNCHECK" -db "$GOVULNDB" ./...
