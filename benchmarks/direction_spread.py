"""Per-sample spread of v_F with the default directions (0 and 90 degrees, with K') against
the twelve of docs/physics.md#the-fermi-velocity, in 3x3 and 6x6 AB cells at 300 K (HedgeNet-Phonon phonons and
HedgeNet-Electron, as `mlepi mc` loads them). The same samples go through both probes.
Writes benchmarks/results/direction_spread.json.

    .venv/bin/python benchmarks/direction_spread.py
"""

import argparse
import json
from pathlib import Path

import numpy as np

from mlepi_core.model_names import force_model_from_name, hamiltonian_model_from_name
from mlepi_core.engine import MCSettings, MonteCarloEngine
from mlepi_core.observables import DIRECTIONS_DEG, BandProbe
from mlepi_core.structures import bilayer

OUT = Path(__file__).parent / "results" / "direction_spread.json"
TWELVE = tuple(range(0, 180, 30))  # with K': every 30 degrees


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[3, 6])
    p.add_argument("--samples", type=int, nargs="+", default=[200, 16], help="per size")
    args = p.parse_args()
    forces = force_model_from_name("assets/models/phonon")
    electrons = hamiltonian_model_from_name("assets/models/electron")
    result = {}
    for n, m in zip(args.sizes, args.samples):
        settings = MCSettings(temperatures=(300.0,), n_samples=m, supercell=n, spectral_every=0)
        engine = MonteCarloEngine(bilayer("AB"), forces, electrons, settings)
        atoms = [engine.sample_atoms(300.0, j) for j in range(m)]
        blocks = electrons.blocks(atoms)
        (pristine,) = electrons.blocks([engine.sampler.ideal])
        row = {}
        for name, dirs in (("default", DIRECTIONS_DEG), ("twelve", TWELVE)):
            probe = BandProbe(engine.primitive, engine.sampler.ideal, n_bands=4, directions_deg=dirs).prepare(pristine)
            vf = np.array([probe.fermi_velocity(probe.band_energies(b)) for b in blocks])
            row[name] = {"directions_deg": list(dirs), "k_points": probe.n_k, "static": probe.static,
                         "mean": float(vf.mean()), "sd": float(vf.std(ddof=1)), "se": float(vf.std(ddof=1) / np.sqrt(m))}
        row["sd_ratio"] = row["default"]["sd"] / row["twelve"]["sd"]
        row["samples"] = m
        result[f"{n}x{n}"] = row
        print(f"{n}x{n}, {m} samples: sd of v_F {row['default']['sd']:.4f} ({row['default']['k_points']} k) vs "
              f"{row['twelve']['sd']:.4f} ({row['twelve']['k_points']} k), ratio {row['sd_ratio']:.2f}; "
              f"means {row['default']['mean']:.4f} +- {row['default']['se']:.4f} vs "
              f"{row['twelve']['mean']:.4f} +- {row['twelve']['se']:.4f}; static {row['default']['static']:.6f} vs "
              f"{row['twelve']['static']:.6f}", flush=True)
    OUT.write_text(json.dumps(result, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
