#!/usr/bin/env bash
# The main job: set up .venv if needed, then serve the dashboard at http://localhost:5006/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec .venv/bin/mlepi dashboard "$@"
