"""H MAE (meV, all matrix elements) of an electron model against a DeepH data set, structure by
structure: e.g. the held-out twisted cells one angle at a time, the 1.08-degree cells included.
Writes benchmarks/results/electron_error_per_structure.json and a table.

    .venv/bin/python benchmarks/electron_error_per_structure.py [MODEL] [--data data/electron_sk] [--split twisted]
"""

import argparse
import json
from pathlib import Path

import numpy as np

from mlepi_core.model_names import hamiltonian_model_from_name
from mlepi_core.data.deeph import read_deeph, read_split
from mlepi_core.files import write_text_atomic

OUT = Path(__file__).parent / "results" / "electron_error_per_structure.json"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", default="assets/models/electron_sk")
    p.add_argument("--data", default="data/electron_sk")
    p.add_argument("--split", default="twisted")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    ml = hamiltonian_model_from_name(args.model)
    rows = []
    for name in read_split(args.data)[args.split]:
        atoms, ref = read_deeph(f"{args.data}/{name}")
        (pred,) = ml.blocks([atoms])
        where = {(a, b, tuple(r)): k for k, (a, b, r) in enumerate(zip(pred.i, pred.j, pred.R))}
        idx = np.array([where[(a, b, tuple(r))] for a, b, r in zip(ref.i, ref.j, ref.R)])
        err = np.abs(pred.h[idx] - ref.h)
        rows.append({"structure": name, "atoms": len(atoms), "h_mae_mev": 1e3 * float(err.mean()),
                     "h_max_mev": 1e3 * float(err.max())})
        print(f"{name:22s} {len(atoms):7d} atoms  H MAE {rows[-1]['h_mae_mev']:.3f} meV  max {rows[-1]['h_max_mev']:.2f} meV",
              flush=True)
    result = {"model": args.model, "data": args.data, "split": args.split, "units": "meV", "structures": rows}
    write_text_atomic(args.out, json.dumps(result, indent=1))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
