"""Is the v_F / gamma_1 probe a continuous function of the displacements? A scan along one mode.

The 6x6 AB bilayer with HedgeNet-Phonon's phonons and the GFN1-trained HedgeNet-Electron:
the supercell mode (``--row``, ``--band``: phonopy's set-A q-point rows, then set-B pairs, as in
``mode_curvature.py``) is displaced alone by a sweep of amplitudes in units of its zero-point
sigma(0 K). At each amplitude: v_F and gamma_1 of the probe, the largest difference between
the near-E_F solve and a full diagonalisation at the six probe k-points, and the unfolded
K-valley weights of the eight states at each k. A jump in v_F or gamma_1 between neighbouring
amplitudes, with exact eigenvalues, points at the valley assignment of the states
(``observables.valley_band_moments``). Writes benchmarks/results/probe_continuity.json.

    .venv/bin/python benchmarks/probe_continuity.py [--row 16 --band 3]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "results" / "probe_continuity.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--row", type=int, default=16)
    ap.add_argument("--band", type=int, default=3)
    ap.add_argument("--amplitudes", type=float, nargs="+",
                    default=[0.0, 0.5, 1.0, 1.2, 1.34, 1.5, 1.73, 2.0, 2.26, 2.5, 3.0])
    args = ap.parse_args()
    import mlepi_core as mlepi
    from mlepi_core.electrons import solve_generalized, solve_near
    from mlepi_core.engine import MCSettings, MonteCarloEngine, prepare_lattice
    from mlepi_core.mode_curvature import ModeCurvature
    from mlepi_core.model_names import force_model_from_name, hamiltonian_model_from_name, model_identity

    atoms, forces = mlepi.build("AB"), force_model_from_name("phonon")
    engine = MonteCarloEngine(atoms, forces, hamiltonian_model_from_name("electron"),
                              MCSettings(temperatures=(0.0,), supercell=6, spectral_every=0),
                              lattice=prepare_lattice(atoms, forces, 6))
    modes, probe = ModeCurvature(engine.sampler), engine.probe
    amps = np.asarray(args.amplitudes, dtype=float)
    ii = np.zeros((modes.n_a, len(amps), modes.n_bands))
    ij = np.zeros((modes.n_b, 2, len(amps), modes.n_bands))
    if args.row < modes.n_a:
        ii[args.row, :, args.band] = amps
    else:  # a set-B pair (q, -q): the real part of its complex normal
        ij[args.row - modes.n_a, 0, :, args.band] = amps / np.sqrt(2.0)
    modes.rd.run(0.0, standard_normals=(ii, ij))
    rows = []
    for a, u in zip(amps, np.array(modes.rd.u)):
        displaced = engine.sampler.ideal.copy()
        displaced.positions += u
        (blocks,) = engine.hamiltonian_model.blocks([displaced])
        bt = probe.tensors(blocks)
        h, s = probe._bloch(bt)
        e, c = solve_near(h, s, probe.sigma, probe.n_states, guess=probe.guess, tol=probe.tol)
        full, _, _ = solve_generalized(h, s)
        nearest = np.sort(np.take_along_axis(full.numpy(), np.argsort(np.abs(full.numpy() - probe.sigma), axis=1)[:, :probe.n_states], 1), 1)
        weights = probe.unfolder.weights(c, s, probe.valley_g).clamp(min=0.0).numpy()
        bands = probe._moments(e, probe.unfolder.weights(c, s, probe.valley_g))
        rows.append({"amplitude_sigma0": float(a), "max_abs_u_a": float(np.abs(u).max()),
                     "vf": probe.fermi_velocity(bands), "gamma1_ev": probe.four_band_fit(bands).get("gamma1_ev"),
                     "solve_vs_full_ev": float(np.abs(np.sort(e.numpy(), 1) - nearest).max()),
                     "k_valley_weights": weights[:, 0].round(4).tolist(),
                     "bands_ev": (bands - probe.sigma).round(5).tolist()})
        print(f"{a:5.2f} sigma0  max|u| {rows[-1]['max_abs_u_a']:.4f} A  v_F {rows[-1]['vf']:.5f}  "
              f"gamma_1 {rows[-1]['gamma1_ev']:.5f}  solve vs full {rows[-1]['solve_vs_full_ev']:.1e} eV", flush=True)
    vf = np.array([r["vf"] for r in rows])
    result = {"mode": {"row": args.row, "band": args.band,
                       "thz": float(modes.frequencies_thz[args.row, args.band])},
              "largest_step": {"vf": float(np.abs(np.diff(vf)).max()),
                               "gamma1_ev": float(np.abs(np.diff([r["gamma1_ev"] for r in rows])).max())},
              "rows": rows, "models": {"forces": model_identity("phonon"), "electrons": model_identity("electron")}}
    OUT.write_text(json.dumps(result, indent=1))
    print(f"largest step between neighbouring amplitudes: v_F {result['largest_step']['vf']:.4f}, "
          f"gamma_1 {result['largest_step']['gamma1_ev']:.4f} eV; wrote {OUT}")


if __name__ == "__main__":
    main()
