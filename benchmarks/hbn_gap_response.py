"""Where the hBN network's thermal gap shift differs from GFN1-xTB's: in-plane or out-of-plane.

The AA' hBN bilayer on a 6x6 cell at 300 K: the same keyed Monte Carlo samples (ExTeP + ILP
phonons) are given to the hBN HedgeNet-Electron and to its GFN1-xTB reference three ways,
with the whole displacement, with only its in-plane part (z set to zero) and with only its
out-of-plane part (x, y set to zero). Per model and part: the mean gap shift from the static
lattice and its standard error; per part, the paired difference network minus reference
over the same samples (docs/physics.md, published anchors for the gap's renormalisation).
Writes benchmarks/results/hbn_gap_response.json and prints a table.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/hbn_gap_response.py --samples 24
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from mlepi_core.engine import MCSettings, MonteCarloEngine
from mlepi_core.model_names import hamiltonian_model_from_name, model_identity
from mlepi_core.reference.lammps_forces import EmpiricalForceReference
from mlepi_core.structures import hbn_bilayer

OUT = Path(__file__).parent / "results" / "hbn_gap_response.json"
PARTS = {"whole": np.array([1.0, 1.0, 1.0]), "in_plane": np.array([1.0, 1.0, 0.0]),
         "out_of_plane": np.array([0.0, 0.0, 1.0])}
MODELS = {"network": "electron_hbn", "reference": "reference"}


class PartEngine(MonteCarloEngine):
    """The Monte Carlo engine whose samples keep only the Cartesian components ``mask``."""

    mask = PARTS["whole"]

    def _sample_batch(self, temperature, first, count):
        atoms = super()._sample_batch(temperature, first, count)
        ideal = self.sampler.ideal.positions
        for a in atoms:
            a.positions = ideal + (a.positions - ideal) * self.mask
        return atoms


def mean_se(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--samples", type=int, default=24)
    p.add_argument("--temperature", type=float, default=300.0)
    args = p.parse_args()
    settings = MCSettings(temperatures=(args.temperature,), n_samples=args.samples, batch_size=args.samples,
                          supercell=6, spectral_every=0)
    forces = EmpiricalForceReference()
    shifts, static, seconds = {}, {}, {}
    for name, model in MODELS.items():
        engine = PartEngine(hbn_bilayer(), forces, hamiltonian_model_from_name(model), settings)
        static[name] = float(engine.static["gap"])
        for part, mask in PARTS.items():
            t = time.perf_counter()
            engine.mask = mask
            gaps = np.asarray(engine.compute_batch(args.temperature, 0, args.samples)["gaps"])
            shifts[name, part] = gaps - static[name]
            seconds[f"{name}.{part}"] = time.perf_counter() - t
            print(f"{name} {part}: {1e3 * shifts[name, part].mean():+.2f} meV", file=sys.stderr, flush=True)
    rows = []
    for part in PARTS:
        net, ref = shifts["network", part], shifts["reference", part]
        rows.append({"part": part,
                     "network_shift_mev": mean_se(1e3 * net), "reference_shift_mev": mean_se(1e3 * ref),
                     "network_minus_reference_mev": mean_se(1e3 * (net - ref)),
                     "ratio": float(net.mean() / ref.mean())})
    result = {"structure": "hBN AA' bilayer, 6x6", "temperature_k": args.temperature, "samples": args.samples,
              "static_gap_ev": static, "static_network_minus_reference_mev": 1e3 * (static["network"] - static["reference"]),
              "parts": rows, "seconds": seconds,
              "models": {"electrons_network": model_identity(MODELS["network"]),
                         "electrons_reference": model_identity("reference"), "forces": model_identity("empirical")},
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(OUT)
    print(f"{'part':<14} {'network (meV)':>16} {'GFN1-xTB (meV)':>16} {'network - GFN1':>16} {'ratio':>6}")
    for r in rows:
        f = lambda v: f"{v[0]:+8.2f} ± {v[1]:.2f}"
        print(f"{r['part']:<14} {f(r['network_shift_mev']):>16} {f(r['reference_shift_mev']):>16} "
              f"{f(r['network_minus_reference_mev']):>16} {r['ratio']:6.2f}")
    print(f"static gap: network {static['network']:.4f} eV, GFN1-xTB {static['reference']:.4f} eV; wrote {OUT}")


if __name__ == "__main__":
    main()
