"""Equilibrium and Gamma phonons of the empirical references of hBN and MoS2 bilayers
(reference/lammps_recipes.py), beside experiment.

For each bilayer (AA' hBN: ExTeP + ILP with its shielded Coulomb term; 2H MoS2:
Stillinger-Weber + TMD ILP; graphene on hBN: LCBOP and ExTeP + ILP, at the fixed common
lattice constant of ``structures.graphene_on_hbn``, a commensurate stand-in):
- a: the lattice constant minimizing the energy per atom of the primitive bilayer with
  its atoms relaxed at fixed cell (BFGS to 1e-5 eV/A; the relaxation sets the interlayer
  distance and, for MoS2, the sheet thickness);
- d: the interlayer distance of that cell (mean height of layer 2 minus layer 1: the
  metal-metal distance for MoS2, half of bulk c);
- Gamma frequencies from `mlepi_core.phonons` (phonopy, 6x6x1, the relaxed cell).

Run: ``python benchmarks/layered_references.py``; writes
``benchmarks/results/layered_references.json`` and prints a table.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from ase.optimize import BFGS
from scipy.optimize import minimize_scalar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlepi_core.phonons import dispersion, harmonic_phonons  # noqa: E402
from mlepi_core.reference.lammps_forces import EmpiricalForceReference  # noqa: E402
from mlepi_core.reference.lammps_recipes import interlayer, intralayer  # noqa: E402
from mlepi_core.structures import graphene_on_hbn, hbn_bilayer, tmd_bilayer  # noqa: E402
from mlepi_core.units import GRAPHENE_HBN_A  # noqa: E402
from mlepi_core.units import THZ_TO_CM1  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "layered_references.json"
SUPERCELL = 6
# Experiment (bulk unless stated), for orientation: the potentials' own papers are the references to match.
EXPERIMENT = {
    "hBN": {"a_A": 2.504, "d_A": 3.33, "modes_cm1": {"shear (bilayer)": 37.1, "E2g (in-plane optical)": 1366.0},
            "source": "a, c/2: bulk h-BN, Paszkowicz et al., Appl. Phys. A 75, 431 (2002); "
                      "E2g: Geick, Perry, Rupprecht, Phys. Rev. 146, 543 (1966); bilayer shear: the linear-chain "
                      "model (52.5 cos(pi/4)) from the bulk shear mode 52.5 cm^-1, Stenger et al., arXiv:1705.01298 "
                      "(2017), whose trilayer 46.0 cm^-1 it also gives"},
    "MoS2": {"a_A": 3.16, "d_A": 6.15, "modes_cm1": {"shear (bilayer)": 22.6, "breathing (bilayer)": 40.3,
                                                     "E2g": 383.0, "A1g": 408.0},
             "source": "a, c/2: bulk 2H-MoS2; Raman of the bilayer: Zhang et al., PRB 87, 115413 (2013); "
                       "Lee et al., ACS Nano 4, 2695 (2010)"},
}
BUILDERS = {"hBN": lambda a: hbn_bilayer(a=a), "MoS2": lambda a: tmd_bilayer(a=a),
            "graphene/hBN": lambda a: graphene_on_hbn(a=a)}
BRACKETS = {"hBN": (2.40, 2.60), "MoS2": (3.00, 3.30), "graphene/hBN": None}  # None: a fixed
EXPERIMENT["graphene/hBN"] = {"a_A": GRAPHENE_HBN_A, "d_A": 3.22, "modes_cm1": {},
                              "source": "a: the mean of graphene's and hBN's (each sheet strained 0.9 %); d: LDA, "
                                        "Giovannetti et al., PRB 76, 073103 (2007)"}


def relaxed(reference, name: str, a: float):
    atoms = BUILDERS[name](a)
    atoms.calc = reference.as_ase_calculator()
    BFGS(atoms, logfile=None).run(fmax=1e-5, steps=1000)
    return atoms, atoms.get_potential_energy() / len(atoms)


def main() -> dict:
    reference = EmpiricalForceReference()
    rows = {}
    for name in BUILDERS:
        t0 = time.perf_counter()
        a = (minimize_scalar(lambda a: relaxed(reference, name, a)[1], bounds=BRACKETS[name], method="bounded",
                             options={"xatol": 1e-4}).x if BRACKETS[name] else GRAPHENE_HBN_A)
        atoms, e = relaxed(reference, name, a)
        layer = atoms.arrays["layer"]
        d = float(atoms.positions[layer == 1, 2].mean() - atoms.positions[layer == 0, 2].mean())
        phonon = harmonic_phonons(atoms, reference, SUPERCELL)
        gamma = np.sort(dispersion(phonon).freq_thz[0]) * THZ_TO_CM1
        symbols = set(atoms.get_chemical_symbols())
        rows[name] = {
            "intralayer": "; ".join(sorted({intralayer(frozenset(np.asarray(atoms.get_chemical_symbols())[layer == k])).cite
                                            for k in (0, 1)})),
            "interlayer": interlayer(frozenset(symbols)).cite,
            "a_A": round(float(a), 4), "a_fixed": BRACKETS[name] is None, "d_A": round(d, 4), "energy_ev_per_atom": round(e, 5),
            "gamma_cm1": [round(float(f), 1) for f in gamma], "experiment": EXPERIMENT[name],
            "seconds": round(time.perf_counter() - t0, 1)}
    result = {"machine": platform.node(), "supercell": SUPERCELL, "materials": rows}
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{'bilayer':8s} {'a (A)':>8s} {'exp':>6s} {'d (A)':>7s} {'exp':>6s}  Gamma (cm^-1)")
    for name, r in rows.items():
        x = r["experiment"]
        print(f"{name:8s} {r['a_A']:8.4f} {x['a_A']:6.3f} {r['d_A']:7.3f} {x['d_A']:6.2f}  "
              + " ".join(f"{f:.1f}" for f in r["gamma_cm1"][3:]))
    return result


if __name__ == "__main__":
    main()
