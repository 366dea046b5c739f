"""Throughput of the Monte Carlo loop: per-sample time by stage, ML vs reference electrons.

For AB bilayers of 6x6, 9x9 and 12x12 cells, one engine per Hamiltonian model (the
trained HedgeNet-Electron, loaded as `mlepi mc` loads it, and the GFN1-xTB reference)
draws the same thermal samples at 300 K; stages: sampling, H/S (network inference or
tblite solve), Bloch sums, eigen-solve (only the states near E_F), unfolding and fit,
and the averaged spectral function along Gamma-M-K-Gamma for every --spectral-every-th
sample (as `mlepi mc`). Setup (phonons, pristine bands) is excluded.

Each loop runs in its own process under the OpenMP wait policy that suits it best
(measured on a 6x6 sample, 2 threads: tblite 1.49 s with PASSIVE against 1.83 s with
the default; the network 0.13 s with the default against 0.18 s with PASSIVE), so
neither side is timed in the other's setting. Writes benchmarks/results/mc_throughput.json
(seconds per sample) and prints a table.

    .venv/bin/python benchmarks/mc_throughput.py --electron-model assets/models/electron
"""

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).parent / "results" / "mc_throughput.json"
WAIT_POLICY = {"ml": None, "ref": "PASSIVE"}  # None: OpenMP's default (threads spin briefly)


def run_leg(model_name: str, electron_model: str, sizes: list[int], samples: int,
            spectral_every: int) -> dict:
    """Seconds per sample by stage for one Hamiltonian model at each size (in this process)."""
    import numpy as np

    from mlepi_core.model_names import hamiltonian_model_from_name
    from mlepi_core.engine import MCSettings, MonteCarloEngine
    from mlepi_core.reference.lammps_forces import EmpiricalForceReference
    from mlepi_core.structures import bilayer

    model = hamiltonian_model_from_name(electron_model if model_name == "ml" else "reference")
    forces = EmpiricalForceReference()
    out = {}
    for n in sizes:
        settings = MCSettings(temperatures=(300.0,), n_samples=samples, batch_size=samples,
                              supercell=n, spectral_every=spectral_every)
        engine = MonteCarloEngine(bilayer("AB"), forces, model, settings)
        totals: dict[str, float] = {}
        for batch in engine.run(300.0):
            for key, value in batch.seconds.items():
                totals[key] = totals.get(key, 0.0) + value
        out[f"{n}x{n}"] = {"stages": {k: v / samples for k, v in totals.items()},
                           "vf": float(np.mean([v for v, _ in engine.per_sample[300.0].values()])),
                           "eig_k_points": engine.probe.n_k}
        print(f"{model_name} {n}x{n}: {sum(totals.values()) / samples:.3f} s/sample", file=sys.stderr, flush=True)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--electron-model", default="assets/models/electron")
    p.add_argument("--sizes", type=int, nargs="+", default=[6, 9, 12])
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--spectral-every", type=int, default=4,
                   help="as mlepi mc: the averaged A(k, E) from every N-th sample (0: off)")
    p.add_argument("--leg", choices=["ml", "ref"], help=argparse.SUPPRESS)  # internal: one loop, JSON out
    args = p.parse_args()
    if args.leg:
        json.dump(run_leg(args.leg, args.electron_model, args.sizes, args.samples, args.spectral_every),
                  sys.stdout)
        return
    legs = {}
    for name, policy in WAIT_POLICY.items():
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        if policy:
            env["OMP_WAIT_POLICY"] = policy
        cmd = [sys.executable, __file__, "--leg", name, "--electron-model", args.electron_model,
               "--samples", str(args.samples), "--spectral-every", str(args.spectral_every),
               "--sizes", *map(str, args.sizes)]
        legs[name] = json.loads(subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE).stdout)
    result = {}
    for n in args.sizes:
        key = f"{n}x{n}"
        ml, ref = legs["ml"][key]["stages"], legs["ref"][key]["stages"]
        row = {"ml": ml, "ref": ref,
               "ml_samples_per_s": 1.0 / sum(ml.values()), "ref_samples_per_s": 1.0 / sum(ref.values()),
               "ml_h_s": ml["hamiltonian"], "ref_h_s": ref["hamiltonian"],
               "eig_s": 0.5 * (ml["eig"] + ref["eig"]),
               "eig_share_ml": ml["eig"] / sum(ml.values()),
               "eig_share_ref": ref["eig"] / sum(ref.values()),
               "eig_k_points": legs["ml"][key]["eig_k_points"],
               "ml_vf": legs["ml"][key]["vf"], "ref_vf": legs["ref"][key]["vf"]}
        row["full_loop_ratio"] = row["ml_samples_per_s"] / row["ref_samples_per_s"]
        row["h_ratio"] = row["ref_h_s"] / row["ml_h_s"]
        result[key] = row
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    result["samples_per_size"] = args.samples
    result["omp_wait_policy"] = {k: v or "default" for k, v in WAIT_POLICY.items()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(OUT)
    stages = list(result[f"{args.sizes[0]}x{args.sizes[0]}"]["ml"])
    print(f"{'cell':>6} {'loop':>4} " + " ".join(f"{k:>11}" for k in stages) + "   samples/s")
    for n in args.sizes:
        row = result[f"{n}x{n}"]
        for m in ("ml", "ref"):
            print(f"{n}x{n:<3} {m:>4} " + " ".join(f"{row[m][k]:11.3f}" for k in stages)
                  + f"   {row[m + '_samples_per_s']:9.3f}")
        print(f"{'':>11} full loop {row['full_loop_ratio']:.1f}x faster with ML, H/S stage {row['h_ratio']:.1f}x, "
              f"eig share {100 * row['eig_share_ml']:.0f} % (ML) / {100 * row['eig_share_ref']:.0f} % (reference)")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
