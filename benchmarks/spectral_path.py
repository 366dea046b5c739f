"""The cost of the averaged spectral map's path resolution (issue 29): for the 6x6 AB bilayer
with the shipped HedgeNet-Electron, one thermal sample's A(k, E) at 0 (the cell's commensurate
points), 15, 30 and 60 points per path segment: path points, eigen-solves, seconds per map
(best of 3, one thread), and what the map adds per sample of the loop at the default
``spectral_every``, next to the sample's v_F probe. Writes benchmarks/results/spectral_path.json.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/spectral_path.py
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from mlepi_core.engine import SPECTRAL_FIRST, MCSettings, MonteCarloEngine, draws_spectrum
from mlepi_core.files import file_sha256, write_text_atomic
from mlepi_core.model_names import force_model_from_name, hamiltonian_model_from_name
from mlepi_core.spectral import SpectralMap
from mlepi_core.structures import build

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "spectral_path.json"


def best_of(f, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=int, nargs="+", default=[0, 15, 30, 60])
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    torch.set_num_threads(1)
    electrons = ROOT / "assets" / "models" / "electron"
    settings = MCSettings(temperatures=(300.0,), n_samples=1, supercell=6, path_points=0)
    engine = MonteCarloEngine(build("AB"), force_model_from_name("empirical"),
                              hamiltonian_model_from_name(str(electrons)), settings)
    (blocks,) = engine.hamiltonian_model.blocks([engine.sample_atoms(300.0, 0)])
    bt = engine.probe.tensors(blocks)
    probe_s = best_of(lambda: engine.probe.band_energies(bt))
    every = MCSettings().spectral_every
    rows = []
    for n in args.points:
        sm = SpectralMap(engine.primitive, engine.sampler.ideal, engine.probe.unfolder, engine.probe.sigma,
                         grid=3, points_per_segment=n)
        seconds = best_of(lambda: sm.spectral_function(bt))
        maps = sum(draws_spectrum(j, every) for j in range(500))  # samples with a map among the first 500
        rows.append({"points_per_segment": n, "path_points": len(sm.k_cart), "solves": sm.n_solves,
                     "map_s": seconds, "per_sample_s_at_default": seconds * maps / 500})
    result = {"machine": f"{platform.node()}, {platform.machine()}", "threads": 1, "cell": "6x6 AB",
              "electrons": "assets/models/electron",
              "electron_weights_sha256": file_sha256(electrons / "weights.pt"),
              "probe_s_per_sample": probe_s, "spectral_every_default": every, "spectral_first": SPECTRAL_FIRST,
              "rows": rows}
    write_text_atomic(args.out, json.dumps(result, indent=1))
    print(f"v_F probe: {probe_s:.3f} s per sample (6 solves)")
    print("| points/segment | path points | solves | s per map | s per sample (every "
          f"{every}, first {SPECTRAL_FIRST}, 500 samples) |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['points_per_segment']} | {r['path_points']} | {r['solves']} | {r['map_s']:.2f} | "
              f"{r['per_sample_s_at_default']:.3f} |")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
