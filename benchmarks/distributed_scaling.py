"""Samples per second of the Monte Carlo loop: local executor vs 1 and 2 Dask workers.

The run is `mlepi mc`'s: the 6x6 AB bilayer, the shipped HedgeNet-Electron for H and S,
the shipped HedgeNet-Phonon for the phonons when present (else the LCBOP + KC
reference; only the engine's set-up uses it), 300 K, batches of one sample, the
spectral function every 4th sample. Each executor first builds its engines (phonons,
pristine bands; one per worker process) and runs one warm-up batch per worker; then
``--rounds`` rounds of ``--samples`` new samples per worker are each timed from the first
submission to the last result absorbed, and the median rate is reported (this shared VM's
speed drifts by 10-20 % from minute to minute). The parallel efficiency at 2 workers is
rate(2) / (2 rate(1)). The machine should be
otherwise idle: each worker is a one-thread process, and on a 2-core machine two of
them fill it.

Writes benchmarks/results/distributed.json and prints a table. Run:
    .venv/bin/python benchmarks/distributed_scaling.py [--samples 6] [--workers 1 2]
"""

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ELECTRONS = str(ROOT / "assets" / "models" / "electron")
PHONONS = ROOT / "assets" / "models" / "phonon"


def settings(n_samples: int):
    from mlepi_core.engine import MCSettings

    return MCSettings(temperatures=(300.0,), n_samples=n_samples, batch_size=1, supercell=6, spectral_every=4)


def timed_rounds(engine, run, per_round: int, rounds: int) -> list[float]:
    """Seconds of each of ``rounds`` rounds of ``per_round`` new samples through ``run(engine)``
    (the engine's sample count grows by ``per_round`` each round; finished samples stay)."""
    seconds = []
    for _ in range(rounds):
        engine.settings = dataclasses.replace(engine.settings, n_samples=engine.settings.n_samples + per_round)
        t0 = time.perf_counter()
        for _ in run(engine):
            pass
        seconds.append(time.perf_counter() - t0)
    return seconds


def summary(n: int, seconds: list[float], **extra) -> dict:
    rates = [n / s for s in seconds]
    return {"samples_per_round": n, "round_seconds": seconds, "round_samples_per_s": rates,
            "samples_per_s": float(np.median(rates)), **extra}


def local_rate(forces: str, n_samples: int, rounds: int) -> dict:
    """Samples/s of the in-process engine (torch's default thread count)."""
    from mlepi_core.model_names import force_model_from_name, hamiltonian_model_from_name
    from mlepi_core.engine import MonteCarloEngine
    from mlepi_core.structures import bilayer

    engine = MonteCarloEngine(bilayer("AB"), force_model_from_name(forces), hamiltonian_model_from_name(ELECTRONS),
                              settings(1))
    list(engine.run(300.0))  # warm-up: sample 0
    seconds = timed_rounds(engine, lambda e: e.run(300.0), n_samples, rounds)
    return summary(n_samples, seconds, threads=torch.get_num_threads())


def dask_rate(forces: str, workers: int, per_worker: int, rounds: int) -> dict:
    """Samples/s on a LocalCluster of ``workers`` one-thread processes, as `mlepi mc --executor dask`."""
    from distributed import wait

    from mlepi_core.model_names import force_model_from_name, hamiltonian_model_from_name
    from mlepi_core.distributed import RunSpec, compute_task, make_client, run_distributed
    from mlepi_core.engine import MonteCarloEngine
    from mlepi_core.structures import bilayer

    spec = RunSpec(bilayer("AB"), forces, ELECTRONS, settings(workers))
    client = make_client(workers=workers, threads_per_worker=1)
    try:
        t0 = time.perf_counter()
        # warm-up: samples 0 .. workers - 1, one on each worker, builds its engine
        addresses = sorted(client.scheduler_info()["workers"])
        warm = [client.submit(compute_task, spec, 300.0, k, 1, pure=False, workers=[addr])
                for k, addr in enumerate(addresses)]
        wait(warm)
        setup_s = time.perf_counter() - t0
        engine = MonteCarloEngine(bilayer("AB"), force_model_from_name(forces),
                                  hamiltonian_model_from_name(ELECTRONS), spec.settings)
        for f in warm:
            engine.absorb(f.result())
        n = workers * per_worker
        seconds = timed_rounds(engine, lambda e: run_distributed(e, spec, client, 300.0), n, rounds)
    finally:
        client.close()
    return summary(n, seconds, workers=workers, worker_setup_s=setup_s)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=6, help="timed samples per worker (and for the local run)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per executor (the median is reported)")
    args = p.parse_args()
    forces = str(PHONONS) if (PHONONS / "metadata.json").is_file() else "empirical"
    load = os.getloadavg()[0]
    local = local_rate(forces, args.samples, args.rounds)
    runs = [dask_rate(forces, w, args.samples, args.rounds) for w in args.workers]
    rate = {r["workers"]: r["samples_per_s"] for r in runs}
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.node()}, "
                   f"load {load:.2f} at start, torch {torch.__version__}",
        "device": "cpu",
        "structure": "AB bilayer, 6x6 sampling supercell (144 atoms), 300 K, batches of 1",
        "models": {"electrons": "assets/models/electron (HedgeNet-Electron)",
                   "forces": "assets/models/phonon (HedgeNet-Phonon)" if forces != "empirical"
                   else "empirical (LCBOP + KC; HedgeNet-Phonon not shipped yet)"},
        "local_samples_per_s": local["samples_per_s"],
        "local": local,
        "workers": [r["workers"] for r in runs],
        "dask_samples_per_s": [r["samples_per_s"] for r in runs],
        "dask": runs,
    }
    if 1 in rate and 2 in rate:
        result["efficiency_2"] = rate[2] / (2 * rate[1])
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS / ".distributed.json.tmp"
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(RESULTS / "distributed.json")
    print(f"machine: {result['machine']}")
    print(f"{'executor':<22} {'samples/round':>13} {'samples/s (median)':>19}  rounds")
    rows = [(f"local ({local['threads']} thread{'s' * (local['threads'] > 1)})", local)]
    rows += [(f"dask, {r['workers']} x 1 thread", r) for r in runs]
    for name, r in rows:
        print(f"{name:<22} {r['samples_per_round']:>13} {r['samples_per_s']:>19.3f}  "
              + " ".join(f"{x:.3f}" for x in r["round_samples_per_s"]))
    if "efficiency_2" in result:
        print(f"parallel efficiency at 2 workers: {result['efficiency_2']:.2f}")
    print(f"wrote {RESULTS / 'distributed.json'}")


if __name__ == "__main__":
    main()
