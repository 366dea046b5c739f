"""Throughput of the Monte Carlo loop: per-sample time by stage, ML vs reference electrons.

For AB bilayers of 6x6, 9x9 and 12x12 cells, one engine per Hamiltonian model (the
trained HedgeNet-Electron and the GFN1-xTB reference) draws the same thermal samples at
300 K; stages: sampling, H/S (network inference or tblite solve), Bloch sums, eigen-solve
(only the states near E_F), unfolding and fit, and the averaged spectral function along
Gamma-M-K-Gamma for every --spectral-every-th sample (as `mlepi mc`). Setup (phonons, pristine bands) is
excluded. Writes benchmarks/results/mc_throughput.json (seconds per sample).

    .venv/bin/python benchmarks/mc_throughput.py --electron-model assets/models/electron
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
from pathlib import Path

import numpy as np

from mlepi_core.engine import MCSettings, MonteCarloEngine
from mlepi_core.models import load_model
from mlepi_core.reference.lammps_forces import EmpiricalForceReference
from mlepi_core.reference.tblite_electrons import GFN1Reference
from mlepi_core.structures import bilayer

OUT = Path(__file__).parent / "results" / "mc_throughput.json"


def per_sample_seconds(engine: MonteCarloEngine, samples: int) -> dict:
    totals: dict[str, float] = {}
    for batch in engine.run(300.0):
        for key, value in batch.seconds.items():
            totals[key] = totals.get(key, 0.0) + value
    return {k: v / samples for k, v in totals.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--electron-model", default="assets/models/electron")
    p.add_argument("--sizes", type=int, nargs="+", default=[6, 9, 12])
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--spectral-every", type=int, default=4,
                   help="as mlepi mc: the averaged A(k, E) from every N-th sample (0: off)")
    args = p.parse_args()
    forces = EmpiricalForceReference()
    models = {"ml": load_model(args.electron_model, kind="electron"), "ref": GFN1Reference()}
    result = {}
    for n in args.sizes:
        settings = MCSettings(temperatures=(300.0,), n_samples=args.samples, batch_size=args.samples,
                              supercell=n, spectral_every=args.spectral_every)
        row = {}
        for name, model in models.items():
            engine = MonteCarloEngine(bilayer("AB"), forces, model, settings)
            t = per_sample_seconds(engine, args.samples)
            row[name] = t
            row[f"{name}_samples_per_s"] = 1.0 / sum(t.values())
            row[f"{name}_h_s"] = t["hamiltonian"]
            row[f"{name}_vf"] = float(np.mean([v for v, _ in engine.per_sample[300.0].values()]))
        eig = [row[m]["eig"] for m in models]
        row["eig_s"] = float(np.mean(eig))
        row["eig_share_ml"] = row["ml"]["eig"] / sum(row["ml"].values())
        result[f"{n}x{n}"] = row
        print(f"{n}x{n}: ML {row['ml_samples_per_s']:.3f} samples/s (H/S {row['ml_h_s']:.3f} s), "
              f"reference {row['ref_samples_per_s']:.3f} samples/s (H/S {row['ref_h_s']:.3f} s), "
              f"eig {row['eig_s']:.3f} s/sample", flush=True)
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    result["samples_per_size"] = args.samples
    OUT.write_text(json.dumps(result, indent=1))
    print(f"\n{'cell':>6} {'stage (s/sample)':>18} " + " ".join(f"{k:>9}" for k in result[next(iter(result))]["ml"]))
    for key, row in result.items():
        if isinstance(row, dict):
            for m in models:
                print(f"{key:>6} {m:>18} " + " ".join(f"{v:9.3f}" for v in row[m].values()))


if __name__ == "__main__":
    main()
