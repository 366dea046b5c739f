"""Time per force evaluation: HedgeNet-Phonon vs the empirical reference vs GFN1-xTB.

AB bilayers of 4x4, 6x6, 12x12 and 24x24 cells (64 to 2,304 atoms), one structure per
call, median of repeats after a warm-up. GFN1-xTB (the quantum reference whose ~N^3 cost
the ML model replaces) runs only while its predicted time, extrapolated as N^3 from the
previous size, stays under --gfn1-budget seconds. Writes benchmarks/results/force_timing.json.

    .venv/bin/python benchmarks/force_timing.py [--model assets/models/phonon]
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP: no spinning threads

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import torch

from mlepi_core.models import load_model
from timing import median_time
from mlepi_core.reference.lammps_forces import EmpiricalForceReference
from mlepi_core.reference.tblite_electrons import GFN1Reference
from mlepi_core.structures import bilayer, supercell

OUT = Path(__file__).parent / "results" / "force_timing.json"
SIZES = (4, 6, 12, 24)




def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="assets/models/phonon")
    p.add_argument("--gfn1-budget", type=float, default=180.0, help="seconds per GFN1 call at most")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    models = {"ml": load_model(args.model, dtype=torch.float32),
              "empirical": EmpiricalForceReference(), "gfn1": GFN1Reference()}
    rows, last_gfn1 = {}, None
    for n in SIZES:
        rng = np.random.default_rng(n)
        atoms = supercell(bilayer("AB"), n)
        atoms.positions += rng.normal(0.0, 0.03, atoms.positions.shape)
        row = {"atoms": len(atoms)}
        for name, model in models.items():
            if name == "gfn1" and last_gfn1 is not None:
                n_prev, t_prev = last_gfn1
                if t_prev * (len(atoms) / n_prev) ** 3 > args.gfn1_budget:
                    row[name + "_s"] = None
                    continue
            repeats = 1 if name == "gfn1" else 5
            row[name + "_s"] = median_time(lambda: model.energies_forces([atoms]), repeats)
            if name == "gfn1":
                last_gfn1 = (len(atoms), row[name + "_s"])
        rows[f"{n}x{n}"] = row
        print(f"{n}x{n}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                     for k, v in row.items()), flush=True)

    def exponent(key):
        pts = [(r["atoms"], r[key]) for r in rows.values() if r.get(key)]
        if len(pts) < 2:
            return None
        x, y = np.log(np.array(pts)).T
        return float(np.polyfit(x, y, 1)[0])

    result = {"rows": rows, "scaling_exponent": {k: exponent(k + "_s") for k in models},
              "model": str(args.model), "threads": args.threads,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
              "device": "cpu"}
    OUT.write_text(json.dumps(result, indent=1))
    print(f"\n{'cell':>6} {'atoms':>6} {'ML (s)':>9} {'REBO/LCBOP+KC (s)':>18} {'GFN1-xTB (s)':>13}")
    for key, r in rows.items():
        g = f"{r['gfn1_s']:.3g}" if r.get("gfn1_s") else "skipped"
        print(f"{key:>6} {r['atoms']:>6} {r['ml_s']:>9.4f} {r['empirical_s']:>18.4f} {g:>13}")
    print("scaling exponents (time ~ N^x): " + ", ".join(
        f"{k} {v:.2f}" for k, v in result["scaling_exponent"].items() if v is not None))


if __name__ == "__main__":
    main()
