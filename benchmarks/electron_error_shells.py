"""Where a p_z-basis HedgeNet-Electron errs: H MAE per distance shell (in-plane and
interlayer) on test cells of the Slater-Koster set, and on the in-plane bonds (< 1.7 A) by
the tilt of the two atoms' normals, 1 - A with A = n_i.n_j - (n_i.u)(n_j.u) the angular
factor of the p_z hopping. Writes benchmarks/results/electron_error_shells.json and a table.

    .venv/bin/python benchmarks/electron_error_shells.py [MODEL] [--data data/electron_sk] [--cells 6]
"""

import argparse
import json
from pathlib import Path

import numpy as np

from mlepi_core.model_names import hamiltonian_model_from_name
from mlepi_core.data.deeph import read_deeph, read_split
from mlepi_core.files import write_text_atomic
from mlepi_core.reference import slater_koster as sk

OUT = Path(__file__).parent / "results" / "electron_error_shells.json"
SHELLS = [0.01, 1.7, 2.6, 3.0, 3.9, 4.4, 5.0, 5.4, 6.01]  # A, between the in-plane neighbour shells


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", default="assets/models/electron_sk")
    p.add_argument("--data", default="data/electron_sk")
    p.add_argument("--cells", type=int, default=6, help="first test cells of the split")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    ml = hamiltonian_model_from_name(args.model)
    names = read_split(args.data)["test"][:args.cells]
    dist, same, err, tilt = [], [], [], []
    for name in names:
        atoms, ref = read_deeph(f"{args.data}/{name}")
        (pred,) = ml.blocks([atoms])
        where = {(a, b, tuple(r)): k for k, (a, b, r) in enumerate(zip(pred.i, pred.j, pred.R))}
        idx = np.array([where[(a, b, tuple(r))] for a, b, r in zip(ref.i, ref.j, ref.R)])
        d = atoms.positions[ref.j] + ref.R @ atoms.cell.array - atoms.positions[ref.i]
        r = np.linalg.norm(d, axis=1)
        u = d / np.where(r > 0, r, 1.0)[:, None]
        n = sk.local_normals(atoms)
        ni, nj = n[ref.i], n[ref.j]
        layer = atoms.arrays["layer"]
        dist.append(r), same.append(layer[ref.i] == layer[ref.j]), err.append(pred.h[idx, 0, 0] - ref.h[:, 0, 0])
        tilt.append(1 - ((ni * nj).sum(1) - (ni * u).sum(1) * (nj * u).sum(1)))
    dist, same, err, tilt = (np.concatenate(x) for x in (dist, same, err, tilt))
    shells = []
    for lo, hi in zip(SHELLS[:-1], SHELLS[1:]):
        for rel, m in (("intra", same), ("inter", ~same)):
            sel = (dist > lo) & (dist <= hi) & m
            if sel.any():
                shells.append({"relation": rel, "r_a": [lo, hi], "pairs": int(sel.sum()),
                               "mae_mev": 1e3 * float(np.abs(err[sel]).mean())})
    bond = same & (dist > 0.01) & (dist < 1.7)
    cuts = np.quantile(tilt[bond], [0.0, 0.5, 0.9, 1.0])
    by_tilt = [{"quantiles": q, "mae_mev": 1e3 * float(np.abs(err[bond & (tilt >= lo) & (tilt <= hi)]).mean())}
               for q, lo, hi in zip(["0-50 %", "50-90 %", "90-100 %"], cuts[:-1], cuts[1:])]
    result = {"model": args.model, "cells": list(names), "mae_mev": 1e3 * float(np.abs(err).mean()),
              "shells": shells, "bonds_by_tilt": by_tilt}
    write_text_atomic(args.out, json.dumps(result, indent=1))
    print(f"{args.model}: H MAE {result['mae_mev']:.3f} meV over {len(names)} test cells")
    for s in shells:
        print(f"  {s['relation']:5} {s['r_a'][0]:4.2f}-{s['r_a'][1]:4.2f} A  {s['pairs']:6d} pairs  MAE {s['mae_mev']:7.3f} meV")
    for t in by_tilt:
        print(f"  bonds, tilt quantiles {t['quantiles']:>8}: MAE {t['mae_mev']:.2f} meV")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
