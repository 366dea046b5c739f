#!/usr/bin/env bash
# Create or reuse .venv/ and install mlepi with what it needs (sourced by start.sh and test.sh).
# Debian packages: OpenBLAS for the fast tblite reference; libxc, OpenBLAS headers and gcc
# to build GPAW (the DFT reference) serially against them (scripts/gpaw_siteconfig.py).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

need_deb=()
[ -e /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0 ] || need_deb+=(libopenblas0-pthread)
for pkg in libxc-dev libopenblas-dev gcc "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || need_deb+=("$pkg"); done
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
want="$(cat pyproject.toml scripts/gpaw_siteconfig.py | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "mlepi setup: installing Python packages into .venv (about a minute)"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  # GPAW builds from source: serial, against Debian's libxc and OpenBLAS (without the
  # siteconfig it finds a half-installed MPI and links neither)
  GPAW_CONFIG="$ROOT/scripts/gpaw_siteconfig.py" .venv/bin/python -m pip install -q -e ".[test,dft]"
  echo "$want" > "$stamp"
fi
