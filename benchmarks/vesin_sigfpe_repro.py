"""Minimal reproduction of an integer divide trap (SIGFPE) in vesin's CPU cell list, for an
upstream report (https://github.com/Luthaf/vesin/issues; this machine has no internet
access, so the report is to be filed from elsewhere with this script and its output).

Fifty points in a 369 A hexagonal cell, periodic in-plane and open along z, all at one
height, cutoff 0.5 A: vesin kills the process with SIGFPE instead of returning (found by
mlepi's overlap check on a 45,000-atom graphene sheet; the number of atoms is irrelevant,
only the cell size over the cutoff and a flat extent along the open direction matter).
The same points with a 6 A cutoff trap once the cell is ~2,300 A across.

Likely cause (vesin/src/cpu_cell_list.cpp, ``CellList::CellList``): with more than
MAX_NUMBER_OF_CELLS = 1e5 bins, the grid is rescaled as
``n_z = trunc(cbrt(1e5 / (ratio_x_y * ratio_y_z^2)))``, which is 0 when n_x n_y > 1e5 n_z^2
(a thin open direction gives n_z = 1 or 2); ``cells_shape_[2] = 0`` then reaches
``divmod(a, b)`` as ``a % 0`` in ``add_point``. Clamping each rescaled count to >= 1 would
avoid it.

Each case runs in a child process, so this script survives and reports the signal::

    python benchmarks/vesin_sigfpe_repro.py
"""

from __future__ import annotations

import signal
import subprocess
import sys

CHILD = """
import sys
import numpy as np
from vesin import NeighborList

length, cutoff = float(sys.argv[1]), float(sys.argv[2])
cell = np.array([[length, 0.0, 0.0], [length / 2, length * np.sqrt(3) / 2, 0.0], [0.0, 0.0, 20.0]])
frac = np.random.default_rng(0).random((50, 3))
frac[:, 2] = 0.5  # a flat sheet: no extent along the open direction
i, j = NeighborList(cutoff=cutoff, full_list=False).compute(frac @ cell, cell, [True, True, False], quantities="ij")
print(len(i))
"""


def run_case(length_a: float, cutoff_a: float) -> str:
    """'ok (P pairs)' or the signal that ended vesin's child process."""
    result = subprocess.run([sys.executable, "-c", CHILD, str(length_a), str(cutoff_a)],
                            capture_output=True, text=True, timeout=300)
    if result.returncode < 0:
        return f"killed by {signal.Signals(-result.returncode).name}"
    if result.returncode:
        return f"exit {result.returncode}: {result.stderr.strip().splitlines()[-1]}"
    return f"ok ({result.stdout.strip()} pairs)"


def main() -> int:
    import vesin

    print(f"vesin {vesin.__version__}, Python {sys.version.split()[0]}, {sys.platform}")
    trapped = False
    for length, cutoff in ((360.0, 0.5), (369.0, 0.5), (2000.0, 6.0), (2300.0, 6.0)):
        outcome = run_case(length, cutoff)
        trapped |= "SIGFPE" in outcome
        print(f"hexagonal cell {length:6.0f} A, open z, flat sheet, cutoff {cutoff} A: {outcome}")
    return 1 if trapped else 0


if __name__ == "__main__":
    sys.exit(main())
