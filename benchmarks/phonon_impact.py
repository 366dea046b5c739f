"""What HedgeNet-Phonon's phonons change in the Monte Carlo (issue 28): the 6x6 AB bilayer with
the GFN1-trained HedgeNet-Electron, phonons from the network against phonons from its
reference (LCBOP + Kolmogorov-Crespi), same keyed seeds, at 0 and 300 K.

Observables: v_F(300 K) - v_F(0 K) (paired over temperatures, common random numbers) and
gamma_1 at each temperature. The two phonon models' samples share their standard normals
(sample j of seed 0), so their difference is paired too: ``paired_se`` is the standard error
of the per-sample differences, the yardstick of the acceptance ("equal within their paired
standard error").

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/phonon_impact.py --model assets/models/phonon

Writes assets/results/phonon_impact.json (--out). About 0.7 s per sample and model on one core.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TEMPERATURES = (0.0, 300.0)


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    """Means of a and b, their difference and its paired standard error."""
    d = a - b
    return {"ml_phonons": float(a.mean()), "reference_phonons": float(b.mean()),
            "ml_se": float(a.std(ddof=1) / np.sqrt(len(a))), "reference_se": float(b.std(ddof=1) / np.sqrt(len(b))),
            "difference": float(d.mean()), "paired_se": float(d.std(ddof=1) / np.sqrt(len(d))),
            "difference_in_se": float(d.mean() / (d.std(ddof=1) / np.sqrt(len(d))))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="phonon", help="HedgeNet-Phonon: a model folder or shipped name")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--supercell", type=int, default=6)
    ap.add_argument("--out", default=str(ROOT / "assets" / "results" / "phonon_impact.json"))
    args = ap.parse_args()

    import mlepi_core as mlepi
    from mlepi_core.engine import MCSettings, MonteCarloEngine
    from mlepi_core.files import write_text_atomic
    from mlepi_core.model_names import force_model_from_name, hamiltonian_model_from_name, model_identity

    electrons = hamiltonian_model_from_name("electron")
    values = {}
    seconds = {}
    for name, forces in (("ml", args.model), ("reference", "empirical")):
        t0 = time.perf_counter()
        engine = MonteCarloEngine(mlepi.build("AB"), force_model_from_name(forces), electrons,
                                  MCSettings(temperatures=TEMPERATURES, n_samples=args.samples,
                                             supercell=args.supercell, spectral_every=0))
        for t in TEMPERATURES:
            for _ in engine.run(t):
                pass
            values[name, t] = (engine.sample_values(t, 0)[1], engine.sample_values(t, 1)[1])  # index order
        seconds[name] = time.perf_counter() - t0
        print(f"{name} phonons: {seconds[name]:.0f} s", flush=True)
    ml, ref = ("ml", "reference")
    out = {"protocol": f"{args.supercell}x{args.supercell} AB bilayer, GFN1-trained HedgeNet-Electron, "
                       f"seed 0, same samples for both phonon models",
           "samples": args.samples, "model": args.model, "model_identity": model_identity(args.model),
           "electrons_identity": model_identity("electron"), "units": {"vf": "1e6 m/s", "gamma1": "eV"},
           "dvf_0_300": paired(values[ml, 300.0][0] - values[ml, 0.0][0],
                               values[ref, 300.0][0] - values[ref, 0.0][0]),
           "gamma1": {f"{t:.0f}K": paired(values[ml, t][1], values[ref, t][1]) for t in TEMPERATURES},
           "vf": {f"{t:.0f}K": paired(values[ml, t][0], values[ref, t][0]) for t in TEMPERATURES},
           "seconds": seconds}
    write_text_atomic(args.out, json.dumps(out, indent=1))
    print(json.dumps({k: out[k] for k in ("dvf_0_300", "gamma1")}, indent=1))


if __name__ == "__main__":
    main()
