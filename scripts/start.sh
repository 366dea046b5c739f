#!/usr/bin/env bash
# The main job: set up .venv if needed, then run mlepi's demo (the dashboard once it exists).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec .venv/bin/mlepi demo "$@"
