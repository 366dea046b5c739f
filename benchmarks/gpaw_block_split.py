"""How well GPAW's Gamma-point matrices of a 6x6 cell, split into blocks within r_c, reproduce GPAW's own bands.

A 6x6 AB bilayer with 0.05 A random displacements (seed 0) is solved once with GPAW
LCAO (PBE, dzp, Gamma point). Its H and S are split into atom-pair blocks within r_c
(minimal image) and Bloch-summed (i) at Gamma, where only the pairs beyond r_c are
missing, and (ii) at k = (1/2, 0) and (1/3, 1/3) of the supercell, where GPAW's own
non-self-consistent eigenvalues test that no block collects a periodic image. Errors
are over the states within 1 eV of E_F, in meV. The minimal eigenvalue of each S(k) is
recorded: the dzp basis is nearly linearly dependent, so leaving out the small overlaps
beyond r_c can make S(k) indefinite; where it is, the bands come from the subspace of
S eigenvalues above 1e-5 (canonical orthogonalisation) and each GPAW state is matched to
the nearest one. GPAW's matrices are kept in data/gpaw_block_split_6x6.npz (a rerun reuses them).
Writes benchmarks/results/gpaw_block_split.json.
Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gpaw_block_split.py
"""

import json
import time
from pathlib import Path

import numpy as np

from mlepi_core.electrons import bloch_matrices
from mlepi_core.reference.gpaw_electrons import GPAWReference, GPAWResult
from mlepi_core.structures import bilayer, supercell

OUT = Path(__file__).parent / "results" / "gpaw_block_split.json"
CACHE = Path(__file__).parents[1] / "data" / "gpaw_block_split_6x6.npz"
WINDOW_EV = 1.0
S_FLOOR = 1e-5


def bands(h, s):
    """Eigenvalues (eV) of H c = E S c, and min eig(S); in the span of S eigenvalues > S_FLOOR if S is indefinite."""
    w, u = np.linalg.eigh(s)
    keep = w > (S_FLOOR if w.min() <= 0 else -np.inf)
    x = u[:, keep] / np.sqrt(w[keep])
    return np.linalg.eigvalsh(x.conj().T @ h @ x), float(w.min()), int((~keep).sum())


def errors(h, s, e_ref, fermi):
    e, s_min, dropped = bands(h, s)
    near = np.abs(e_ref - fermi) < WINDOW_EV
    nearest = e[np.abs(e[None, :] - e_ref[near][:, None]).argmin(axis=1)]
    err = np.abs(nearest - e_ref[near]) * 1e3
    return {"states": int(near.sum()), "eig_mae_mev": float(err.mean()), "eig_max_mev": float(err.max()),
            "s_min_eig": s_min, "s_dropped": dropped}


def main():
    atoms = supercell(bilayer("AB", d=3.35), 6)
    atoms.positions += np.random.default_rng(0).normal(0.0, 0.05, atoms.positions.shape)
    ref = GPAWReference()
    ks = {"gamma": [0.0, 0.0, 0.0], "k_half_0": [0.5, 0.0, 0.0], "k_third_third": [1 / 3, 1 / 3, 0.0]}
    if CACHE.exists():
        solved = GPAWResult(**{k: v for k, v in np.load(CACHE, allow_pickle=True)["result"].item().items()})
        own, t_solve, t_bands = dict(np.load(CACHE, allow_pickle=True)["own"].item()), float("nan"), float("nan")
    else:
        t0 = time.perf_counter()
        solved = ref.solve(atoms)
        t_solve = time.perf_counter() - t0
        t0 = time.perf_counter()
        own = {"gamma": solved.eigenvalues[0]}
        own["k_half_0"], own["k_third_third"] = ref.band_energies(solved, [ks["k_half_0"], ks["k_third_third"]])
        t_bands = time.perf_counter() - t0
        keep = {k: v for k, v in vars(solved).items() if k != "calc"}
        np.savez(CACHE, result=np.array(keep, dtype=object), own=np.array(own, dtype=object))
    rows = {}
    for rc in (7.35, 7.0, 6.5, 6.0, 5.5, 5.0):
        blocks = ref.split_blocks(atoms, solved, r_c=rc)
        h_k, s_k = bloch_matrices(blocks, list(ks.values()))
        rows[f"{rc:g}"] = {"pairs": int(len(blocks.i)),
                           **{name: errors(h_k[n], s_k[n], own[name], solved.fermi_level)
                              for n, name in enumerate(ks)}}
    result = {"structure": "6x6 AB bilayer, d = 3.35 A, 0.05 A random displacements (seed 0)",
              "atoms": len(atoms), "orbitals": int(solved.norb.sum()), "settings": repr(ref.settings),
              "basis_reach_a": round(solved.reach_a, 3), "scf_iterations": solved.iterations,
              "gpaw_scf_s": round(t_solve, 1), "gpaw_two_k_bands_s": round(t_bands, 1),
              "fermi_level_ev": solved.fermi_level, "window_ev": WINDOW_EV, "by_rc_a": rows}
    OUT.write_text(json.dumps(result, indent=1))
    print(f"GPAW LCAO of {len(atoms)} atoms: {t_solve:.0f} s ({solved.iterations} SCF iterations), "
          f"basis reach {solved.reach_a:.2f} A")
    print(f"{'r_c (A)':>8} {'pairs':>7} " + " ".join(f"{k + ' MAE/max (meV)':>28}" for k in ks))
    for rc, r in rows.items():
        print(f"{rc:>8} {r['pairs']:>7} " + " ".join(
            f"{r[k]['eig_mae_mev']:>12.4f} / {r[k]['eig_max_mev']:<7.3f} S {r[k]['s_min_eig']:.1e}" for k in ks))


if __name__ == "__main__":
    main()
