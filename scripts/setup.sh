#!/usr/bin/env bash
# Create or reuse .venv/ and install mlepi with what it needs (sourced by start.sh and test.sh).
# Debian packages: OpenBLAS for the fast tblite reference (DESIGN.md section 4).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

need_deb=()
[ -e /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0 ] || need_deb+=(libopenblas0-pthread)
for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || need_deb+=("$pkg"); done
if [ ${#need_deb[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "mlepi setup: installing Debian packages ${need_deb[*]}"
    $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq "${need_deb[@]}" >/dev/null
  else
    echo "mlepi setup: please install ${need_deb[*]} (no apt-get here)" >&2
  fi
fi

PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=".venv/.mlepi-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "mlepi setup: installing Python packages into .venv (about a minute)"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[test]"
  echo "$want" > "$stamp"
fi
