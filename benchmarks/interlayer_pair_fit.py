"""What an explicit interlayer pair term can do (issue 28): fitted by least squares to LCBOP + KC
(``training.pair_fit``) on AB bilayers alone, its interlayer force constants, Gamma shear and
breathing frequencies and stacking surface against the reference's, on the fitted AB bilayer
and on cells it never saw (ABA and ABC trilayers, the bilayer strained 1.5 %, at d = 3.30 A,
the 21.8-degree twisted cell), and across the interlayer distances the phonon set spans (rigid
AB bilayer, d = 2.95 to 4.05 A): the top layer's summed z force per atom and the binding
energy E(d0) - E(3.8 A).

Two forms of the term: the distance alone (``--registry 0``: sum_ij f(r_ij)) and the
Kolmogorov-Crespi form with functions of the transverse distance from the layer normals
(the default, 8). A layer-only energy exerts no net force on a rigid layer, so these numbers
are those of any HedgeNet-Phonon with that pair term on its inter edges, whatever its
message-passing intralayer part (here untrained).

    .venv/bin/python benchmarks/interlayer_pair_fit.py     # ~2 min on one core

Writes benchmarks/results/interlayer_pair_fit.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results" / "interlayer_pair_fit.json"


def layer_z_forces(model, distances) -> np.ndarray:
    """The top layer's summed z force per atom (eV/A) of the rigid AB bilayer at each distance."""
    from mlepi_core.structures import bilayer

    cells = [bilayer("AB", d=float(d)) for d in distances]
    _, forces = model.energies_forces(cells)
    return np.array([np.asarray(f)[a.positions[:, 2] > a.positions[:, 2].mean(), 2].mean()
                     for f, a in zip(forces, cells)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--registry", type=int, nargs="+", default=[0, 8])
    ap.add_argument("--basis", type=int, default=32)
    args = ap.parse_args()
    import torch

    import mlepi_core as mlepi
    from mlepi_core.interlayer import (binding_curve, equilibrium_distance, interlayer_force_constants,
                                       layer_chain_frequencies, stacking_energies, stacking_path, strained,
                                       trilayer)
    from mlepi_core.model_names import force_model_from_name
    from mlepi_core.models import HedgeNetPhonon, HedgeNetPhononConfig, MLForceModel
    from mlepi_core.structures import bilayer, twisted_bilayer
    from mlepi_core.training.pair_fit import fit_pair_term, interlayer_fit_cells

    torch.manual_seed(0)
    reference = force_model_from_name("empirical")
    ab = mlepi.build("AB")
    cells = interlayer_fit_cells(ab)
    validation = {"AB_bilayer": bilayer("AB"), "ABA_trilayer": trilayer("ABA"), "ABC_trilayer": trilayer("ABC"),
                  "AB_bilayer_strained_1.5pct": strained(bilayer("AB"), 0.015), "AB_bilayer_d3.30": bilayer("AB", d=3.30),
                  "twisted_21.8deg": twisted_bilayer(1, 2)}
    ref_k = {name: interlayer_force_constants(reference, atoms) for name, atoms in validation.items()}
    t = stacking_path(6)
    ref_surface = stacking_energies(reference, t)
    distances = np.linspace(3.2, 3.6, 17)
    ref_d0 = equilibrium_distance(distances, binding_curve(reference, distances))
    far = np.round(np.linspace(2.95, 4.05, 12), 3)
    ref_far = layer_z_forces(reference, far)
    wide = np.round(np.arange(3.10, 3.801, 0.02), 4)
    ref_curve = binding_curve(reference, wide)
    ref_binding = float(ref_curve.min() - ref_curve[-1])
    result = {"fit_cells": len(cells), "reference": "LCBOP + KC (LAMMPS)", "forms": {}}
    for registry in args.registry:
        cfg = HedgeNetPhononConfig(cutoffs={"intra": 5.0, "inter": 6.0}, hidden_irreps="4x0e+4x1o", num_bessel=4,
                                   radial_hidden=(8,), readout_hidden=4, pair_relations=("inter",),
                                   pair_basis=args.basis, pair_registry=registry,
                                   avg_num_neighbors={"intra": 9.0, "inter": 30.0})
        network = HedgeNetPhonon(cfg).to(torch.float64)
        t0 = time.perf_counter()
        fit = fit_pair_term(network, reference, ab, cells=cells)
        fit["seconds"] = time.perf_counter() - t0
        model = MLForceModel(network)
        rows = {}
        for name, atoms in validation.items():
            k = interlayer_force_constants(model, atoms)
            rows[name] = {key: {"pair": k[key], "reference": ref_k[name][key],
                                "relative_error": k[key] / ref_k[name][key] - 1}
                          for key in ("shear_ev_per_a4", "breathing_ev_per_a4", "shear_cm1", "breathing_cm1")}
        areal = float(ab.get_masses().sum() / 2 / np.linalg.norm(np.cross(ab.cell[0], ab.cell[1])))
        chain = {f"{n}_layers": {"pair": layer_chain_frequencies(rows["AB_bilayer"]["shear_ev_per_a4"]["pair"], areal, n).tolist(),
                                 "reference": layer_chain_frequencies(rows["AB_bilayer"]["shear_ev_per_a4"]["reference"], areal, n).tolist()}
                 for n in (2, 3)}
        surface = stacking_energies(model, t)
        d0 = equilibrium_distance(distances, binding_curve(model, distances))
        curve = binding_curve(model, wide)
        result["forms"][f"registry_{registry}"] = {
            "fit": fit, "cells": rows, "shear_chain_cm1": chain,
            "stacking_energy_mae_mev_per_atom": float(np.mean(np.abs(surface - ref_surface))),
            "stacking_energy_max_mev_per_atom": float(np.max(np.abs(surface - ref_surface))),
            "equilibrium_distance_a": {"pair": d0, "reference": ref_d0},
            "layer_z_force_mev_per_a": {"d_a": far.tolist(), "pair": (1e3 * layer_z_forces(model, far)).tolist(),
                                        "reference": (1e3 * ref_far).tolist()},
            "binding_mev_per_atom": {"pair": float(curve.min() - curve[-1]),
                                     "reference": ref_binding}}
        zf = result["forms"][f"registry_{registry}"]["layer_z_force_mev_per_a"]
        worst = float(np.max(np.abs(np.subtract(zf["pair"], zf["reference"]))))
        print(f"registry {registry}: fit E {fit['energy_rmse_mev_per_atom']:.4f} meV/atom, layer F "
              f"{fit['layer_force_rmse_mev_per_a']:.3f} meV/A ({fit['seconds']:.0f} s); stacking MAE "
              f"{result['forms'][f'registry_{registry}']['stacking_energy_mae_mev_per_atom']:.4f} meV/atom; "
              f"d0 {d0:.4f} vs {ref_d0:.4f} A; layer z force from 2.95 to 4.05 A: largest error {worst:.1f} meV/A "
              f"(reference up to {np.abs(zf['reference']).max():.0f}); binding "
              f"{result['forms'][f'registry_{registry}']['binding_mev_per_atom']['pair']:.3f} vs {ref_binding:.3f} meV/atom",
              flush=True)
        for name, r in rows.items():
            print(f"  {name:28s} shear {r['shear_ev_per_a4']['relative_error']:+7.1%}  breathing "
                  f"{r['breathing_ev_per_a4']['relative_error']:+7.1%}", flush=True)
    OUT.write_text(json.dumps(result, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
