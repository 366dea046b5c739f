"""HedgeNet-Electron against its reference (GFN1-xTB, tblite) on twisted bilayers, up to the
largest cells tblite does here: the 8 bands nearest charge neutrality at Gamma, M and K of
the moire cell from both (mlepi_core.moire, labelled sparse shift-invert), their largest
difference in meV (absolute, and with each model's own E_F), and the time of each H/S.
The twisted cells were never in HedgeNet-Electron's training set. Writes
benchmarks/results/twisted_bands.json and a table.

    nice .venv/bin/python benchmarks/twisted_bands.py [--m 3 5 7 9]
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from mlepi_core import moire
from mlepi_core.files import write_text_atomic
from mlepi_core.models import load_model
from mlepi_core.reference.tblite_electrons import GFN1Reference
from mlepi_core.structures import twist_angle, twisted_bilayer

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "twisted_bands.json"


def timed_blocks(model, atoms):
    t = time.perf_counter()
    (blocks,) = model.blocks([atoms])
    return blocks, time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--m", type=int, nargs="+", default=[3, 5, 7, 9], help="cells (m, m+1); tblite needs m >= 3 (a cell >= 13 A)")
    p.add_argument("--electron-model", default=str(ROOT / "assets" / "models" / "electron"))
    p.add_argument("--n-states", type=int, default=8)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    models = {"ml": load_model(args.electron_model, kind="electron"), "ref": GFN1Reference()}
    rows = []
    for m in args.m:
        atoms = twisted_bilayer(m, m + 1)
        k = np.array(list(moire.moire_k_points(atoms.cell).values()))
        row = {"mn": [m, m + 1], "angle_deg": twist_angle(m, m + 1), "atoms": len(atoms)}
        bands = {}
        for name, model in models.items():
            blocks, seconds = timed_blocks(model, atoms)
            bands[name] = moire.bands_near_neutrality(model, atoms, k, args.n_states, blocks=blocks)
            row[f"{name}_h_s"] = seconds
        diff = 1e3 * np.abs(bands["ml"].energies - bands["ref"].energies)
        aligned = np.abs(bands["ml"].relative_mev() - bands["ref"].relative_mev())
        row.update({"max_err_mev": float(diff.max()), "max_err_aligned_mev": float(aligned.max()),
                    "mean_err_mev": float(diff.mean()),
                    "ml_width_mev": moire.central_width(bands["ml"].relative_mev()),
                    "ref_width_mev": moire.central_width(bands["ref"].relative_mev()),
                    "k_points": list(moire.moire_k_points(atoms.cell))})
        rows.append(row)
        print(f"({m},{m + 1}) {row['angle_deg']:.2f} deg, {len(atoms)} atoms: max |ML - GFN1| "
              f"{row['max_err_mev']:.2f} meV ({row['max_err_aligned_mev']:.2f} with own E_F), "
              f"H/S {row['ml_h_s']:.2f} s vs {row['ref_h_s']:.1f} s", flush=True)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
              "electron_model": args.electron_model, "n_states": args.n_states, "rows": rows}
    write_text_atomic(args.out, json.dumps(result, indent=1))
    print(f"\n{'cell':>8} {'angle':>7} {'atoms':>6} {'max err':>8} {'aligned':>8} {'ML H/S':>7} {'GFN1 H/S':>9}")
    for r in rows:
        print(f"{str(tuple(r['mn'])):>8} {r['angle_deg']:7.2f} {r['atoms']:6d} {r['max_err_mev']:8.2f} "
              f"{r['max_err_aligned_mev']:8.2f} {r['ml_h_s']:7.2f} {r['ref_h_s']:9.1f}")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
