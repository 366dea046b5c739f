"""Can GFN1-xTB's MoS2 Hamiltonian be split into pair blocks? (issue 31)

GFN1's s, p, d basis on S and Mo is nearly linearly dependent, so the minimal-image split of
tblite's Gamma-point F and S into blocks within r_c (reference/tblite_electrons.py) leaves
S(k) indefinite, and the states near the gap depend on the directions that the cut spoils.
On the 6x6 2H bilayer (216 atoms, 1,944 orbitals; its Gamma holds K, M and Q = K/2 of the
primitive cell), pristine and with 0.05 A Gaussian displacements (about the thermal amplitude
at 300 K), this compares tblite's own eigenvalues with those of the blocks at the supercell's
Gamma, for cutoffs r_c and overlap floors of canonical orthogonalisation
(electrons.bloch_pair): the error of the highest occupied and lowest empty state and the
largest error of any state within 1 eV of the gap. The blocks' Gamma matrices differ from
tblite's by the pairs beyond r_c alone, so these errors are the cut's.

    .venv/bin/python benchmarks/mos2_gfn1_blocks.py      # ~5 min on one core

Writes benchmarks/results/mos2_gfn1_blocks.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent / "results" / "mos2_gfn1_blocks.json"
CUTOFFS = (6.0, 7.0, 8.0, 8.9)
FLOORS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1)


def main() -> None:
    import dataclasses

    import mlepi_core as mlepi
    from mlepi_core.electrons import DROPPED_EV, BlockTensors, bloch_pair, bloch_sum, solve_generalized
    from mlepi_core.reference.tblite_electrons import GFN1Reference

    ref = GFN1Reference()
    pristine = mlepi.build("MoS2", 6)
    displaced = pristine.copy()
    displaced.positions += np.random.default_rng(0).normal(0.0, 0.05, displaced.positions.shape)
    out = {"cell": "2H MoS2 bilayer, 6x6 (216 atoms)", "reference": "GFN1-xTB (tblite), Gamma point",
           "displacement_a": 0.05, "structures": {}}
    for name, atoms in (("pristine", pristine), ("displaced", displaced)):
        t0 = time.perf_counter()
        result = ref.solve(atoms)
        seconds = time.perf_counter() - t0
        n = int(round(result.occupations.sum() / 2))
        exact = result.orbital_energies
        near = (exact > exact[n - 1] - 1.0) & (exact < exact[n] + 1.0)
        row = {"tblite_seconds": seconds, "orbitals": int(len(exact)), "gap_ev": float(exact[n] - exact[n - 1]),
               "overlap_min_eigenvalue": float(np.linalg.eigvalsh(result.overlap)[0]), "cuts": []}
        for r_c in CUTOFFS:
            blocks = ref.split_blocks(atoms, result, r_c=r_c)
            gamma = torch.zeros(1, 3, dtype=torch.float64)
            s_min = float(torch.linalg.eigvalsh(bloch_sum(BlockTensors.from_blocks(blocks, atoms.positions, atoms.cell),
                                                          gamma, "s"))[0, 0])
            for floor in FLOORS:
                bt = BlockTensors.from_blocks(dataclasses.replace(blocks, meta={**blocks.meta, "overlap_floor": floor}),
                                              atoms.positions, atoms.cell)
                h, s = bloch_pair(bt, gamma)
                try:
                    e = solve_generalized(h, s)[0][0].numpy()
                except torch.linalg.LinAlgError:
                    row["cuts"].append({"r_c_a": r_c, "floor": floor, "split_overlap_min_eigenvalue": s_min,
                                        "error": "S(Gamma) not positive definite"})
                    continue
                kept = e[e < DROPPED_EV / 2]
                row["cuts"].append({
                    "r_c_a": r_c, "floor": floor, "split_overlap_min_eigenvalue": s_min,
                    "dropped": int(len(e) - len(kept)),
                    "homo_error_mev": 1e3 * float(kept[n - 1] - exact[n - 1]),
                    "lumo_error_mev": 1e3 * float(kept[n] - exact[n]),
                    "gap_error_mev": 1e3 * float((kept[n] - kept[n - 1]) - (exact[n] - exact[n - 1])),
                    # states matched by index: the dropped directions leave the spectrum from its top
                    "largest_error_within_1_ev_of_the_gap_mev": 1e3 * float(np.max(np.abs(
                        kept[np.flatnonzero(near)] - exact[near])))})
                c = row["cuts"][-1]
                print(f"{name} r_c {r_c} floor {floor}: dropped {c['dropped']}, HOMO {c['homo_error_mev']:+.2f}, "
                      f"LUMO {c['lumo_error_mev']:+.2f}, gap {c['gap_error_mev']:+.2f} meV", flush=True)
        out["structures"][name] = row
    OUT.write_text(json.dumps(out, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
