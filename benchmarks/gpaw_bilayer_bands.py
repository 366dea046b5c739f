"""GPAW's gamma_1 and Fermi velocity of the pristine AB bilayer (PBE, dzp), from GPAW's own bands and from its blocks.

The primitive AB bilayer (d = 3.35 A, a = 2.46 A) is solved self-consistently on a
15x15 k-mesh (h = 0.2 A, 18 A cell). Band energies of the four bands nearest E_F at
k = K + q e and K' + q e (q = 0.06, 0.08, 0.10 1/A, e at 0 and 90 degrees, the
points ``mlepi_core.observables`` uses) come (i) from GPAW non-self-consistently and
(ii) from the blocks H_ij(R), S_ij(R) of the k-mesh (r_c = 7 A); each set is fitted with
the four-band model E = e0 +- gamma_1/2 +- sqrt(gamma_1^2/4 + (hbar v q)^2)
(``BandProbe.four_band_fit``). gamma_1 at K itself is half the splitting of the outer bands.
Writes benchmarks/results/gpaw_bilayer.json.
Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gpaw_bilayer_bands.py
"""

import json
import time
from pathlib import Path

import numpy as np

from mlepi_core.electrons import bloch_matrices, solve_bands
from mlepi_core.observables import BandProbe, valley_points
from mlepi_core.reference.gpaw_electrons import GPAWReference
from mlepi_core.structures import bilayer, supercell

OUT = Path(__file__).parent / "results" / "gpaw_bilayer.json"
MESH = (15, 15)
D_A = 3.35


def four_nearest(e: np.ndarray, fermi: float) -> np.ndarray:
    """The four band energies (..., 4) nearest E_F, ascending."""
    idx = np.argsort(np.abs(e - fermi), axis=-1)[..., :4]
    return np.sort(np.take_along_axis(e, idx, axis=-1), axis=-1)


def main():
    atoms = bilayer("AB", d=D_A)
    ref = GPAWReference(kpts=MESH)
    t0 = time.perf_counter()
    solved = ref.solve(atoms)
    t_scf = time.perf_counter() - t0
    probe = BandProbe(atoms, supercell(atoms, 3), n_bands=4)
    k_valley, kp_valley = valley_points(atoms.cell)
    # (n_q, n_dir, valley, 3) Cartesian k -> fractional of the primitive cell
    k_cart = np.stack([probe.k_cart, probe.k_cart - k_valley + kp_valley], axis=2)
    k_frac = k_cart.reshape(-1, 3) @ np.asarray(atoms.cell).T / (2 * np.pi)
    k_points = np.vstack([[k_valley @ np.asarray(atoms.cell).T / (2 * np.pi)], k_frac])
    t0 = time.perf_counter()
    own = ref.band_energies(solved, k_points)
    t_bands = time.perf_counter() - t0
    blocks = ref.split_blocks(atoms, solved)
    mine = solve_bands(*bloch_matrices(blocks, k_points))
    result = {"structure": f"AB bilayer, primitive cell, a = 2.46 A, d = {D_A} A",
              "settings": repr(ref.settings), "k_mesh": list(MESH), "scf_iterations": solved.iterations,
              "gpaw_scf_s": round(t_scf, 1), "gpaw_bands_s": round(t_bands, 1),
              "fermi_level_ev": solved.fermi_level, "q_values_per_a": list(probe.q_values),
              "directions_deg": list(probe.directions_deg)}
    for name, e in (("gpaw", own), ("blocks", mine)):
        near = four_nearest(e, solved.fermi_level)
        at_k, bands = near[0], near[1:].reshape(len(probe.q_values) * len(probe.directions_deg), 2, 4)
        fit = probe.four_band_fit(bands)
        result[name] = {"gamma1_at_K_ev": float((at_k[3] - at_k[0]) / 2),
                        "bands_at_K_minus_EF_ev": (at_k - solved.fermi_level).tolist(),
                        "gamma1_fit_ev": fit["gamma1_ev"], "vf_fit_1e6_m_per_s": fit["v_1e6_m_per_s"],
                        "vf_slope_1e6_m_per_s": probe.fermi_velocity(bands)}
    result["blocks_minus_gpaw_max_mev"] = float(np.abs(four_nearest(mine, solved.fermi_level)
                                                       - four_nearest(own, solved.fermi_level)).max() * 1e3)
    OUT.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("gpaw", "blocks", "blocks_minus_gpaw_max_mev", "gpaw_scf_s")},
                     indent=1))


if __name__ == "__main__":
    main()
