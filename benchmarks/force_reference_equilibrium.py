"""Equilibrium, stacking energies and Gamma phonons of AB bilayer graphene for the
empirical force reference, REBO + KC and LCBOP + KC (docs/physics.md#forces-empirical-potentials-through-lammps).

For each intralayer potential:
- a: lattice constant minimizing the energy per atom of the 4-atom AB cell with its
  atoms relaxed at fixed cell (the relaxation sets d and a tiny sublattice buckling:
  the atom with a partner directly above it is pushed out, the other pulled in);
- d: interlayer distance of that relaxed cell (mean z of layer 2 - layer 1), and
  d_flat, the one of rigid flat layers at the same a;
- E(AA) - E(AB), E(SP) - E(AB) in meV/atom, rigid flat layers at (a, d_flat), and
  again at d = 3.4 A to compare with the first measurement in docs/physics.md; plus E at the shift (1/6, 1/6)
  (halfway between AA and AB), which is where that measurement's "2.7 meV/atom" comes from;
- Gamma-point phonons with phonopy: 6x6x1 supercell of the relaxed AB cell,
  +-0.01 A displacements, symmetrized force constants; modes named by projecting
  their eigenvectors on the rigid-layer and intralayer-optical patterns.

Run: ``python benchmarks/force_reference_equilibrium.py``; writes
``benchmarks/results/force_reference.json`` and prints a table.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.optimize import BFGS
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms
from scipy.optimize import minimize_scalar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlepi_core.reference.lammps_forces import EmpiricalForceReference  # noqa: E402
from mlepi_core.structures import bilayer  # noqa: E402
from mlepi_core.units import THZ_TO_CM1  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "force_reference.json"
EXPERIMENT_CM1 = {"shear": 32.0, "breathing": 85.0, "ZO": 868.0, "G": 1582.0}  # docs/physics.md#forces-empirical-potentials-through-lammps
# (breathing: 80-90 cm^-1 in experiment, the middle is used)
SUPERCELL = 6
DISPLACEMENT_A = 0.01


def relaxed_ab(ref: EmpiricalForceReference, a: float, fmax: float = 1e-6):
    """AB cell at lattice constant a with its atoms relaxed (fixed cell); energy per atom."""
    atoms = bilayer("AB", a=a)
    atoms.calc = ref.as_ase_calculator()
    BFGS(atoms, logfile=None).run(fmax=fmax, steps=500)
    return atoms, atoms.get_potential_energy() / len(atoms)


def rigid_energy_per_atom(ref: EmpiricalForceReference, stacking, a: float, d: float) -> float:
    atoms = bilayer(stacking, a=a, d=d)
    return float(ref.energies_forces([atoms])[0][0]) / len(atoms)


def mode_patterns(layers: np.ndarray) -> dict[str, np.ndarray]:
    """Orthonormal displacement patterns (rows, 3N) of the 4-atom cell, grouped by name."""
    n = len(layers)
    top = layers == layers.max()
    sign_layer = np.where(top, -1.0, 1.0)
    sub = np.zeros(n)  # +1 / -1 on the two atoms of each layer
    for ell in np.unique(layers):
        idx = np.flatnonzero(layers == ell)
        sub[idx[0]], sub[idx[1]] = 1.0, -1.0
    groups = {"acoustic": [(np.ones(n), k) for k in range(3)],
              "shear": [(sign_layer, k) for k in range(2)],
              "breathing": [(sign_layer, 2)],
              "ZO": [(sub, 2), (sub * sign_layer, 2)],
              "G": [(s, k) for s in (sub, sub * sign_layer) for k in range(2)]}
    out = {}
    for name, items in groups.items():
        rows = []
        for weights, k in items:
            v = np.zeros((n, 3))
            v[:, k] = weights
            rows.append(v.ravel() / np.linalg.norm(v))
        out[name] = np.array(rows)
    return out


def gamma_phonons(ref: EmpiricalForceReference, primitive) -> dict:
    """Gamma frequencies (cm^-1) by mode name, from phonopy on a 6x6x1 supercell."""
    unit = PhonopyAtoms(symbols=primitive.get_chemical_symbols(), cell=np.array(primitive.cell),
                        positions=primitive.positions, masses=primitive.get_masses())
    phonon = Phonopy(unit, supercell_matrix=np.diag([SUPERCELL, SUPERCELL, 1]),
                     primitive_matrix="P")
    phonon.generate_displacements(distance=DISPLACEMENT_A, is_plusminus=True)
    sc = phonon.supercell
    unit_index = np.array([sc.u2u_map[i] for i in sc.s2u_map])  # supercell atom -> unit atom
    layer_sc = np.asarray(primitive.arrays["layer"])[unit_index]
    cells = []
    for c in phonon.supercells_with_displacements:
        atoms = Atoms(c.symbols, positions=c.positions, cell=c.cell, pbc=True, masses=c.masses)
        atoms.arrays["layer"] = layer_sc
        cells.append(atoms)
    t0 = time.perf_counter()
    _, forces = ref.energies_forces(cells)
    seconds_per_call = (time.perf_counter() - t0) / len(cells)
    phonon.forces = np.array(forces)
    phonon.produce_force_constants(show_drift=False)
    phonon.symmetrize_force_constants(show_drift=False)
    phonon.run_qpoints([[0.0, 0.0, 0.0]], with_eigenvectors=True)
    freqs = np.asarray(phonon.qpoints.frequencies[0]) * THZ_TO_CM1
    vecs = np.asarray(phonon.qpoints.eigenvectors[0])  # columns are modes
    patterns = mode_patterns(np.asarray(primitive.arrays["layer"]))
    named: dict[str, list[float]] = {k: [] for k in patterns}
    for j, f in enumerate(freqs):
        weight = {k: float(np.sum(np.abs(p @ vecs[:, j]) ** 2)) for k, p in patterns.items()}
        named[max(weight, key=weight.get)].append(round(float(f), 2))
    return {"frequencies_cm1": [round(float(f), 2) for f in freqs], "modes_cm1": named,
            "n_displacements": len(cells), "supercell_atoms": len(cells[0]),
            "seconds_per_force_call": round(seconds_per_call, 4)}


def measure(intralayer: str) -> dict:
    ref = EmpiricalForceReference(intralayer)
    t0 = time.perf_counter()
    opt = minimize_scalar(lambda a: relaxed_ab(ref, a)[1], bounds=(2.40, 2.52), method="bounded",
                          options={"xatol": 1e-5})
    a_eq = float(opt.x)
    atoms, e_atom = relaxed_ab(ref, a_eq)
    z, layer = atoms.positions[:, 2], atoms.arrays["layer"]
    d_eq = float(z[layer == 1].mean() - z[layer == 0].mean())
    buckling = float(max(np.ptp(z[layer == ell]) for ell in (0, 1)))
    d_flat = float(minimize_scalar(lambda d: rigid_energy_per_atom(ref, "AB", a_eq, d),
                                   bounds=(3.2, 3.6), method="bounded",
                                   options={"xatol": 1e-6}).x)

    def stacking(d):
        e = {s: rigid_energy_per_atom(ref, s, a_eq, d) for s in ("AB", "AA", "SP")}
        e["AA-AB halfway (1/6,1/6)"] = rigid_energy_per_atom(ref, (1 / 6, 1 / 6), a_eq, d)
        return {"d_A": round(d, 5),
                "AA_minus_AB_meV_per_atom": round(1e3 * (e["AA"] - e["AB"]), 3),
                "SP_minus_AB_meV_per_atom": round(1e3 * (e["SP"] - e["AB"]), 3),
                "shift_1_6_minus_AB_meV_per_atom":
                    round(1e3 * (e["AA-AB halfway (1/6,1/6)"] - e["AB"]), 3)}

    phonons = gamma_phonons(ref, atoms)
    modes = phonons["modes_cm1"]
    mean = {k: (round(float(np.mean(v)), 1) if v else None) for k, v in modes.items()}
    errors = {k: round(100 * (mean[k] - EXPERIMENT_CM1[k]) / EXPERIMENT_CM1[k], 1)
              for k in ("ZO", "G") if mean[k] is not None}
    result = {
        "intralayer": intralayer, "interlayer": "kolmogorov/crespi/full CC.KC-full, 16 A, taper",
        "a_A": round(a_eq, 5), "d_A": round(d_eq, 5), "d_flat_A": round(d_flat, 5),
        "sublattice_buckling_A": round(buckling, 5), "energy_eV_per_atom": round(e_atom, 6),
        "stacking_at_d_flat": stacking(d_flat), "stacking_at_3.4": stacking(3.4),
        "gamma": phonons, "gamma_mean_cm1": mean, "error_vs_experiment_percent": errors,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    ref.close()
    return result


def main() -> None:
    results = {"experiment_cm1": EXPERIMENT_CM1,
               "machine": platform.processor() or platform.machine(),
               "potentials": {k: measure(k) for k in ("rebo", "lcbop")}}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'':15s}" + "".join(f"{k:>12s}" for k in results["potentials"]) + f"{'expt.':>12s}")
    rows = [("a (A)", lambda r: r["a_A"], "2.46"),
            ("d (A)", lambda r: r["d_A"], "3.35"),
            ("d flat (A)", lambda r: r["d_flat_A"], ""),
            ("AA-AB meV", lambda r: r["stacking_at_d_flat"]["AA_minus_AB_meV_per_atom"], ""),
            ("SP-AB meV", lambda r: r["stacking_at_d_flat"]["SP_minus_AB_meV_per_atom"], ""),
            ("AA-AB @3.4", lambda r: r["stacking_at_3.4"]["AA_minus_AB_meV_per_atom"], ""),
            ("SP-AB @3.4", lambda r: r["stacking_at_3.4"]["SP_minus_AB_meV_per_atom"], "")]
    rows += [(f"{k} cm-1", (lambda k: lambda r: r["gamma_mean_cm1"][k])(k), f"{v:g}")
             for k, v in EXPERIMENT_CM1.items()]
    rows.append(("s/call 144", lambda r: r["gamma"]["seconds_per_force_call"], ""))
    for label, get, expt in rows:
        print(f"{label:15s}" + "".join(f"{get(r):>12}" for r in results["potentials"].values())
              + f"{expt:>12s}")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
