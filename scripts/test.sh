#!/usr/bin/env bash
# Set up .venv if needed, then run the test suite in two tiers (slow and GPU tests are skipped):
# the unit and physics tests first (a few minutes), then the integration tests (browser, Dask,
# subprocesses, installs). Arguments go to pytest, e.g. `bash scripts/test.sh tests/test_cli.py`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh" chromium chromium-driver  # browser tests drive Debian's Chromium
cd "$ROOT"

tier() {  # tier NAME MARKERS [pytest arguments]: exit 5 (no test of this tier selected) is not a failure
  local name=$1 markers=$2 rc=0
  shift 2
  echo "== $name"
  .venv/bin/python -m pytest -q -m "$markers" --durations=10 "$@" || rc=$?
  [ "$rc" -eq 5 ] && rc=0
  return "$rc"
}

status=0
tier "unit and physics tests" "not slow and not gpu and not integration" "$@" || status=$?
tier "integration tests" "integration and not slow and not gpu" "$@" || status=$?
exit "$status"
