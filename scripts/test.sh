#!/usr/bin/env bash
# Set up .venv if needed, then run the default test suite (slow and GPU tests are skipped).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh" chromium chromium-driver  # browser tests drive Debian's Chromium
cd "$ROOT"
exec .venv/bin/python -m pytest -q "$@"
