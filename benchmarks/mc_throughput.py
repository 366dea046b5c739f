"""Throughput of the Monte Carlo loop: per-sample time by stage, ML vs reference electrons.

For AB bilayers of 6x6, 9x9 and 12x12 cells, one engine per Hamiltonian model (the
trained HedgeNet-Electron, loaded as `mlepi mc` loads it, and the GFN1-xTB reference)
draws the same thermal samples at 300 K; stages: sampling, H/S (network inference or
tblite solve), Bloch sums, eigen-solve (only the states near E_F), unfolding and fit
("samples_per_s": the loop itself, from the wall time of the run; the stages in seconds of
the machine per sample: a thread's seconds over the samples running side by side, which a
thread-safe model's batch does, one torch thread each), and separately the cost of one averaged spectral map
A(k, E) along Gamma-M-K-Gamma at the default path resolution ("map_s"), which `mlepi mc` and the
dashboard add for the first samples and every 32nd ("cli_samples_per_s": a 500-sample run
with that schedule). Setup (phonons, pristine bands) is excluded.

Each loop runs in its own process under the OpenMP wait policy that suits it best
(measured on a 6x6 sample, 2 threads: tblite 1.49 s with PASSIVE against 1.83 s with
the default; the network 0.13 s with the default against 0.18 s with PASSIVE), so
neither side is timed in the other's setting. Writes benchmarks/results/mc_throughput.json
(seconds per sample, and under "models" the identity of each model it ran: a trained one by
its weights' sha256, which tests/test_benchmark_provenance.py matches against the shipped
models) and prints a table.

    .venv/bin/python benchmarks/mc_throughput.py --electron-model assets/models/electron
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).parent / "results" / "mc_throughput.json"
WAIT_POLICY = {"ml": None, "ref": "PASSIVE"}  # None: OpenMP's default (threads spin briefly)


def maps_in_run(n_samples: int, spectral_every: int) -> int:
    """Samples of an n-sample run that add to the averaged A(k, E) (the engine's schedule)."""
    from mlepi_core.engine import draws_spectrum

    return sum(draws_spectrum(j, spectral_every) for j in range(n_samples))


def run_leg(model_name: str, electron_model: str, sizes: list[int], samples: int, maps: int,
            map_max_cell: int) -> dict:
    """Seconds per sample by stage for one Hamiltonian model at each size (in this process):
    ``samples`` samples without the spectral map, then ``maps`` samples with it, whose
    "spectral" stage is the cost of one map (cells up to ``map_max_cell`` only)."""
    import numpy as np

    from mlepi_core.model_names import hamiltonian_model_from_name
    from mlepi_core.engine import MCSettings, MonteCarloEngine
    from mlepi_core.reference.lammps_forces import EmpiricalForceReference
    from mlepi_core.structures import bilayer

    model = hamiltonian_model_from_name(electron_model if model_name == "ml" else "reference")
    forces = EmpiricalForceReference()
    out = {}
    for n in sizes:
        per = {"map": None}
        for kind, count, every in (("loop", samples, 0), ("map", maps if n <= map_max_cell else 0, 1)):
            if count == 0:
                continue
            settings = MCSettings(temperatures=(300.0,), n_samples=count, batch_size=count,
                                  supercell=n, spectral_every=every)
            engine = MonteCarloEngine(bilayer("AB"), forces, model, settings)
            # samples side by side (thread-safe models): a stage's share of the wall time is its
            # thread-seconds over the workers; the map runs alone, after its batch
            workers = engine.workers(count)
            totals: dict[str, float] = {}
            t0 = time.perf_counter()
            for batch in engine.run(300.0):
                for key, value in batch.seconds.items():
                    totals[key] = totals.get(key, 0.0) + value
            wall = time.perf_counter() - t0
            per[kind] = ({k: v / count / workers for k, v in totals.items() if k != "spectral"} if kind == "loop"
                         else totals["spectral"] / count)
            if kind == "loop":
                vf = float(np.mean([v for v, _ in engine.per_sample[300.0].values()]))
                per["wall"], per["workers"] = wall / count, workers
        out[f"{n}x{n}"] = {"stages": per["loop"], "map_s": per["map"], "vf": vf, "eig_k_points": engine.probe.n_k,
                           "wall_s_per_sample": per["wall"], "workers": per["workers"]}
        print(f"{model_name} {n}x{n}: {sum(per['loop'].values()):.3f} s/sample, {per['map']} s per map",
              file=sys.stderr, flush=True)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--electron-model", default="assets/models/electron")
    p.add_argument("--sizes", type=int, nargs="+", default=[6, 9, 12])
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--maps", type=int, default=2, help="samples timed with the spectral map")
    p.add_argument("--map-max-cell", type=int, default=9,
                   help="time the map only up to this n x n (a 12x12 map takes minutes)")
    p.add_argument("--run-samples", type=int, default=500,
                   help="the mlepi mc run whose samples/s is reported with its default map schedule")
    p.add_argument("--leg", choices=["ml", "ref"], help=argparse.SUPPRESS)  # internal: one loop, JSON out
    args = p.parse_args()
    if args.leg:
        json.dump(run_leg(args.leg, args.electron_model, args.sizes, args.samples, args.maps, args.map_max_cell),
                  sys.stdout)
        return
    legs = {}
    for name, policy in WAIT_POLICY.items():
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        if policy:
            env["OMP_WAIT_POLICY"] = policy
        cmd = [sys.executable, __file__, "--leg", name, "--electron-model", args.electron_model,
               "--samples", str(args.samples), "--maps", str(args.maps), "--map-max-cell", str(args.map_max_cell),
               "--sizes", *map(str, args.sizes)]
        legs[name] = json.loads(subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE).stdout)
    from mlepi_core.engine import MCSettings

    every = MCSettings().spectral_every
    n_maps = maps_in_run(args.run_samples, every)
    result = {}
    for n in args.sizes:
        key = f"{n}x{n}"
        ml, ref = legs["ml"][key]["stages"], legs["ref"][key]["stages"]
        row = {"ml": ml, "ref": ref, "ml_map_s": legs["ml"][key]["map_s"], "ref_map_s": legs["ref"][key]["map_s"],
               "ml_samples_per_s": 1.0 / legs["ml"][key]["wall_s_per_sample"],
               "ref_samples_per_s": 1.0 / legs["ref"][key]["wall_s_per_sample"],
               "ml_workers": legs["ml"][key]["workers"], "ref_workers": legs["ref"][key]["workers"],
               "ml_h_s": ml["hamiltonian"], "ref_h_s": ref["hamiltonian"],
               "eig_s": 0.5 * (ml["eig"] + ref["eig"]),
               "eig_share_ml": ml["eig"] / sum(ml.values()),
               "eig_share_ref": ref["eig"] / sum(ref.values()),
               "eig_k_points": legs["ml"][key]["eig_k_points"],
               "ml_vf": legs["ml"][key]["vf"], "ref_vf": legs["ref"][key]["vf"]}
        for m in ("ml", "ref"):  # an mlepi mc run of run_samples samples with its default maps
            row[f"{m}_cli_samples_per_s"] = None if row[f"{m}_map_s"] is None else args.run_samples / (
                args.run_samples / row[f"{m}_samples_per_s"] + n_maps * row[f"{m}_map_s"])
        row["full_loop_ratio"] = row["ml_samples_per_s"] / row["ref_samples_per_s"]
        row["h_ratio"] = row["ref_h_s"] / row["ml_h_s"]
        result[key] = row
    from mlepi_core.model_names import model_identity

    result["models"] = {"electrons": model_identity(args.electron_model), "forces": model_identity("empirical")}
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    result["samples_per_size"] = args.samples
    result["cli_run"] = {"samples": args.run_samples, "spectral_every": every, "maps": n_maps}
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
            cli = (f"   map {row[m + '_map_s']:.2f} s, {args.run_samples}-sample run "
                   f"{row[m + '_cli_samples_per_s']:.3f} samples/s" if row[m + "_map_s"] is not None else "")
            print(f"{n}x{n:<3} {m:>4} " + " ".join(f"{row[m][k]:11.3f}" for k in stages)
                  + f"   {row[m + '_samples_per_s']:9.3f}" + cli)
        print(f"{'':>11} full loop {row['full_loop_ratio']:.1f}x faster with ML, H/S stage {row['h_ratio']:.1f}x, "
              f"eig share {100 * row['eig_share_ml']:.0f} % (ML) / {100 * row['eig_share_ref']:.0f} % (reference)")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
