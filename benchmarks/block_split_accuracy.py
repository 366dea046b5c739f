"""How well real-space blocks within r_c reproduce tblite's own Gamma-point eigenvalues.

A 6x6 AB bilayer with 0.05 A random displacements (seed 0) is solved once with
GFN1-xTB; its Gamma-point Fock and overlap matrices are split into atom-pair blocks
within r_c (minimal image), Bloch-summed back at Gamma and diagonalised.
Writes benchmarks/results/block_split.json. Run: .venv/bin/python benchmarks/block_split_accuracy.py
"""

import json
import time
from pathlib import Path

import numpy as np

from mlepi_core.electrons import bloch_matrices, solve_bands
from mlepi_core.reference.tblite_electrons import GFN1Reference
from mlepi_core.structures import bilayer, supercell

OUT = Path(__file__).parent / "results" / "block_split.json"


def main():
    atoms = supercell(bilayer("AB"), 6)
    atoms.positions += np.random.default_rng(0).normal(0.0, 0.05, atoms.positions.shape)
    ref = GFN1Reference()
    t0 = time.perf_counter()
    solved = ref.solve(atoms)
    t_solve = time.perf_counter() - t0
    rows = {}
    for rc in (6.0, 5.0, 4.0):
        blocks = ref.split_blocks(atoms, solved, r_c=rc)
        e = solve_bands(*bloch_matrices(blocks, [[0, 0, 0]]))[0]
        err = np.abs(e - solved.orbital_energies) * 1e3
        rows[f"{rc:g}"] = {"pairs": int(len(blocks.i)), "eig_mae_mev": float(err.mean()),
                           "eig_max_mev": float(err.max())}
    result = {"structure": "6x6 AB bilayer, 0.05 A random displacements (seed 0)", "atoms": len(atoms),
              "tblite_solve_s": round(t_solve, 2), "by_rc_a": rows}
    OUT.write_text(json.dumps(result, indent=1))
    print(f"GFN1-xTB solve of {len(atoms)} atoms: {t_solve:.2f} s")
    print(f"{'r_c (A)':>8} {'pairs':>7} {'MAE (meV)':>10} {'max (meV)':>10}")
    for rc, r in rows.items():
        print(f"{rc:>8} {r['pairs']:>7} {r['eig_mae_mev']:>10.3f} {r['eig_max_mev']:>10.3f}")


if __name__ == "__main__":
    main()
