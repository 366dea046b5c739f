"""Time per configuration: HedgeNet-Electron inference vs the GFN1-xTB reference (tblite).

Displaced AB bilayers of 6x6, 9x9, 12x12 and 18x18 cells (144 to 1,296 atoms), one
structure per call, median of repeats after a warm-up. Both produce the real-space H and
S blocks of every atom pair within 6 A (the reference: SCF, then F = S C diag(eps) C^T S
split into blocks). Fits t = a N^p for each and writes benchmarks/results/electron_timing.json
and a table. The reference runs only while its predicted time, extrapolated from the
previous sizes, stays under --ref-budget seconds.

    .venv/bin/python benchmarks/electron_timing.py [--model assets/models/electron] [--threads 2]
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP: no spinning threads

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from mlepi_core.models import load_model
from timing import median_time
from mlepi_core.reference.tblite_electrons import GFN1Reference
from mlepi_core.structures import bilayer, supercell

OUT = Path(__file__).parent / "results" / "electron_timing.json"
SIZES = (6, 9, 12, 18)




def exponent(n_atoms, seconds) -> float | None:
    ok = [(n, t) for n, t in zip(n_atoms, seconds) if t is not None]
    if len(ok) < 2:
        return None
    x, y = np.log([n for n, _ in ok]), np.log([t for _, t in ok])
    return float(np.polyfit(x, y, 1)[0])


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="assets/models/electron")
    p.add_argument("--ref-budget", type=float, default=900.0, help="seconds per reference call at most")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ml, ref = load_model(args.model, kind="electron", dtype=torch.float32), GFN1Reference()
    rows = {}
    for n in args.sizes:
        atoms = supercell(bilayer("AB"), n)
        atoms.positions += np.random.default_rng(n).normal(0.0, 0.03, atoms.positions.shape)
        row = {"atoms": len(atoms), "orbitals": 4 * len(atoms)}
        row["ml_s"] = median_time(lambda: ml.blocks([atoms]), repeats=3)
        done = [(r["atoms"], r["ref_s"]) for r in rows.values() if r.get("ref_s")]
        predicted = None
        if done:
            p_ref = exponent(*zip(*done)) if len(done) > 1 else 3.0
            predicted = done[-1][1] * (len(atoms) / done[-1][0]) ** p_ref
        if predicted is None or predicted < args.ref_budget:
            t0 = time.perf_counter()
            ref.blocks([atoms])  # the SCF dominates: one call, no warm-up needed
            row["ref_s"] = time.perf_counter() - t0
        else:
            row["ref_s"], row["ref_predicted_s"] = None, predicted
        row["speedup"] = row["ref_s"] / row["ml_s"] if row["ref_s"] else None
        rows[f"{n}x{n}"] = row
        print(f"{n:>2}x{n:<2} {len(atoms):>5} atoms: ML {row['ml_s']:8.3f} s   reference "
              + (f"{row['ref_s']:8.2f} s   speed-up {row['speedup']:6.1f}x" if row["ref_s"] else
                 f"skipped (predicted {predicted:.0f} s)"), flush=True)
    n_atoms = [r["atoms"] for r in rows.values()]
    fit = {"ml_exponent": exponent(n_atoms, [r["ml_s"] for r in rows.values()]),
           "ref_exponent": exponent(n_atoms, [r["ref_s"] for r in rows.values()])}
    show = lambda v: f"{v:.2f}" if v is not None else "n/a (one size)"
    print(f"fitted t ~ N^p: ML p = {show(fit['ml_exponent'])}, reference p = {show(fit['ref_exponent'])}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    result = {"sizes": rows, "fit": fit, "threads": torch.get_num_threads(), "model": args.model,
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "python": platform.python_version(), "torch": torch.__version__},
              "note": "one structure per call; ML: median of 3 after a warm-up (float32); reference: one call"}
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(OUT)
    print(f"-> {OUT}")


if __name__ == "__main__":
    main()
