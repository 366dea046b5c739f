"""How fine a radial basis the interlayer energy needs (issue 28, item 1).

The registry dependence of the Kolmogorov-Crespi interlayer energy lives in pairs whose
in-plane offset rho is below about 0.6 A; at d = 3.38 A their length r = sqrt(d^2 + rho^2)
spans only 3.38-3.43 A. A network's inter edges see r through a radial basis (MACE's
Bessel functions sin(n pi r / r_c) / r times the polynomial envelope, r_c = 6 A); their
finest wavelength with N functions is 2 r_c / N, 1.5 A for N = 8. The benchmark fits the
reference's stacking-energy surface (rigid flat bilayer along AA -> AB -> SP -> BA -> AA at
d = 3.30, 3.38 and 3.46 A) by the best pair sum sum_ij f(r_ij) with f in N Bessel functions
and reports the residual and the energy one path step (0.059 A) from AB, whose excess is
the shear mode's stiffness: the surface is the part of the interlayer energy that a pair
term can carry, so a basis that cannot fit it leaves the whole job to many-body features.
Units: meV/atom, Angstrom.

Writes benchmarks/results/stacking_resolution.json and prints a Markdown table. Run:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/stacking_resolution.py
"""

import json
import time
from pathlib import Path

import numpy as np
import torch

from mlepi_core import force_model
from mlepi_core.models.blocks import RadialEmbedding
from mlepi_core.interlayer import (STACKING_PATH_POINTS, energy_per_atom_mev, inter_pair_features,
                                   pair_resolution_fit, stacking_path)
from mlepi_core.structures import bilayer

CUTOFF_A = 6.0
ENVELOPE_P = 5
DISTANCES_A = (3.30, 3.38, 3.46)
COUNTS = (8, 16, 32)
OUT = Path(__file__).parent / "results" / "stacking_resolution.json"


def bessel_basis(n: int, frequencies: torch.dtype = torch.float64):
    """The network's own radial embedding (Bessel functions times the envelope) as a numpy basis;
    float64 ``frequencies`` as HedgeNet-Phonon builds them, float32 to see how well determined a fit is."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(frequencies)
    try:
        embedding = RadialEmbedding(CUTOFF_A, n, ENVELOPE_P)
    finally:
        torch.set_default_dtype(previous)

    def basis(r: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return embedding(torch.as_tensor(r, dtype=torch.float64)).numpy()

    return basis


def main() -> None:
    t0 = time.time()
    t = stacking_path(12)
    cells = [bilayer((float(x), float(x)), d=d) for d in DISTANCES_A for x in t]
    energies = energy_per_atom_mev(force_model("empirical"), cells)
    energies -= energies.min()
    n = len(t)
    middle = slice(n, 2 * n)  # d = 3.38 A
    ab = int(np.argmin(np.abs(t - STACKING_PATH_POINTS["AB"])))
    reference_step = energies[middle][ab + 1] - energies[middle][ab]
    out: dict = {"reference": "empirical (LCBOP + KC)", "cutoff_a": CUTOFF_A, "distances_a": DISTANCES_A,
                 "t": t.tolist(), "path_step_a": float(np.linalg.norm(
                     bilayer((t[ab + 1],) * 2).cell[:2, :2].sum(axis=0)) * (t[ab + 1] - t[ab])),
                 "reference_mev_per_atom": energies.tolist(),
                 "reference_step_from_ab_mev_per_atom": float(reference_step), "fits": {}}
    for count in COUNTS:
        fitted, _ = pair_resolution_fit(energies, inter_pair_features(cells, bessel_basis(count), CUTOFF_A))
        residual = fitted - energies
        step = fitted[middle][ab + 1] - fitted[middle][ab]
        out["fits"][str(count)] = {"rms_mev_per_atom": float(np.sqrt(np.mean(residual**2))),
                                   "max_abs_mev_per_atom": float(np.max(np.abs(residual))),
                                   "step_from_ab_mev_per_atom": float(step),
                                   "step_ratio": float(step / reference_step)}
        # the same fit with the frequencies rounded to float32: a well-determined fit does not move
        rounded, _ = pair_resolution_fit(energies, inter_pair_features(cells, bessel_basis(count, torch.float32),
                                                                       CUTOFF_A))
        out["fits"][str(count)]["step_ratio_float32_frequencies"] = float(
            (rounded[middle][ab + 1] - rounded[middle][ab]) / reference_step)
    out["seconds"] = time.time() - t0
    OUT.write_text(json.dumps(out, indent=1))
    print(f"reference energy one path step ({out['path_step_a']:.3f} A) from AB: "
          f"{reference_step:.4f} meV/atom\n")
    print("| Bessel functions | residual RMS (meV/atom) | max | step from AB | / reference | same, float32 frequencies |")
    print("|---|---|---|---|---|---|")
    for count, f in out["fits"].items():
        print(f"| {count} | {f['rms_mev_per_atom']:.4f} | {f['max_abs_mev_per_atom']:.4f} | "
              f"{f['step_from_ab_mev_per_atom']:.4f} | {f['step_ratio']:.2f} | "
              f"{f['step_ratio_float32_frequencies']:.2f} |")


if __name__ == "__main__":
    main()
