"""Paired difference of two Hamiltonian models over the same Monte Carlo samples: <v_F> of
model A minus model B per temperature, with the standard error of the paired differences
(the keyed random streams give both models the very same displaced cells, so the paired error
is far below either mean's). Reads the checkpoints that `mlepi mc --out DIR` leaves; writes
benchmarks/results/mc_paired_models.json and a table. v_F in 10^6 m/s.

    .venv/bin/python benchmarks/mc_paired_models.py [DIR] [--a ml] [--b reference]
"""

import argparse
import json
from pathlib import Path

import numpy as np

from mlepi_core.checkpoints import read_checkpoint
from mlepi_core.files import write_text_atomic

OUT = Path(__file__).parent / "results" / "mc_paired_models.json"


def per_sample_vf(path: Path) -> dict[float, dict[int, float]]:
    saved = read_checkpoint(path)
    return {float(t): {int(k): float(v[0]) for k, v in rows.items()} for t, rows in saved["per_sample"].items()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", nargs="?", default="results/mc_ab_6x6")
    p.add_argument("--a", default="ml")
    p.add_argument("--b", default="reference")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    a = per_sample_vf(Path(args.dir) / f"checkpoint_{args.a}.npz")
    b = per_sample_vf(Path(args.dir) / f"checkpoint_{args.b}.npz")
    rows = []
    for t in sorted(set(a) & set(b)):
        keys = sorted(set(a[t]) & set(b[t]))
        va, vb = np.array([a[t][k] for k in keys]), np.array([b[t][k] for k in keys])
        d = va - vb
        rows.append({"T": t, "samples": len(keys), "vf_a": float(va.mean()), "vf_b": float(vb.mean()),
                     "diff": float(d.mean()), "diff_se": float(d.std(ddof=1) / np.sqrt(len(d))),
                     "diff_rel": float(d.mean() / vb.mean())})
        r = rows[-1]
        print(f"T = {t:6.1f} K, {len(keys)} paired samples: {args.a} - {args.b} = {r['diff']:+.4f} +- "
              f"{r['diff_se']:.4f} ({100 * r['diff_rel']:+.2f} %)")
    write_text_atomic(args.out, json.dumps({"dir": args.dir, "a": args.a, "b": args.b, "units": "1e6 m/s",
                                            "temperatures": rows}, indent=1))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
