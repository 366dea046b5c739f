"""Which band edge carries the electron-phonon renormalisation of a gap? Three definitions on
the same samples.

The AA' hBN bilayer on a 6x6 cell (ExTeP + ILP phonons, 0 K) with the hBN network and with its
GFN1-xTB reference. Per sample and definition, the gap at K:
- ``supercell``: the mean of the g highest occupied and the g lowest empty eigenvalues of the
  displaced supercell at K (g = the pristine edge level's degeneracy; mlepi_core/band_edges.py);
- ``window``: first moments of the unfolded weight at K from half-way to the next pristine
  level with weight there (1 eV beyond an edge with none) to mid-gap, the definition
  band_edges.py used before;
- ``slice``: first moments of as much unfolded weight at K, counted outwards from mid-gap over
  all the states on that side, as the pristine edge level holds there (the v_F probe,
  observables.valley_band_moments, slices only the states nearest E_F).
Also a scan along one sample's displacement, 0 to 3 times its amplitude in steps of 0.1: the
largest second difference of each definition's gap up to twice the amplitude (a smooth gap
has small ones there; a jump shows as a large one), and, per sample, the share of the
pristine edge level's unfolded weight at K that the g edge states of the supercell carry
(where the configuration-averaged spectral function has its edge peak). Writes
benchmarks/results/gap_definition.json and prints a table. Units: eV, meV.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gap_definition.py --samples 24
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mlepi_core.engine import MCSettings, MonteCarloEngine, prepare_lattice
from mlepi_core.model_names import hamiltonian_model_from_name, model_identity
from mlepi_core.reference.lammps_forces import EmpiricalForceReference
from mlepi_core.structures import hbn_bilayer

OUT = Path(__file__).parent / "results" / "gap_definition.json"
MODELS = {"network": "assets/models/electron_hbn", "reference": "reference"}
DEFINITIONS = ("supercell", "window", "slice")


def measure(probe, blocks) -> dict:
    """One cell's gap at the probe's edges by every definition, from one solve, and the share
    of the pristine edge level's unfolded weight that its g edge states carry."""
    e, w = probe._states(blocks, weights=True)
    (k_v, k_c), (g_v, g_c), n = (probe.k_v, probe.k_c), probe.degeneracy, probe.n_occupied
    (v_lo, v_hi), (c_lo, c_hi) = probe._windows
    inside_v, inside_c = (e[k_v] >= v_lo) & (e[k_v] <= v_hi), (e[k_c] >= c_lo) & (e[k_c] <= c_hi)

    def moment(k, inside):
        return (w[k] * inside * e[k]).sum() / (w[k] * inside).sum()

    def slice_moment(energies, weights, units):
        cum = np.cumsum(weights)
        take = np.clip(np.minimum(cum, units) - np.concatenate([[0.0], cum[:-1]]), 0.0, None)
        return (take * energies).sum() / take.sum()

    down, up = np.argsort(-e[k_v][:n]), n + np.argsort(e[k_c][n:])
    level_v, level_c = probe._level_weight
    return {"supercell": float(e[k_c][n:n + g_c].mean() - e[k_v][n - g_v:n].mean()),
            "window": float(moment(k_c, inside_c) - moment(k_v, inside_v)),
            "slice": float(slice_moment(e[k_c][up], w[k_c][up], level_c)
                           - slice_moment(e[k_v][down], w[k_v][down], level_v)),
            "edge_weight_share": [float(w[k_v][n - g_v:n].sum() / level_v),
                                  float(w[k_c][n:n + g_c].sum() / level_c)]}


def attach_unfolded_reference(probe, pristine) -> None:
    """What the window and slice definitions need from the static lattice."""
    e, w = probe._states(pristine, weights=True)
    windows = []
    for k, edge, side in ((probe.k_v, probe.static["vbm"], -1), (probe.k_c, probe.static["cbm"], 1)):
        levels = np.unique(np.round(e[k][(w[k] > 0.25) & (side * (e[k] - edge) > 1e-5)], 5))
        nearest = levels.max() if side < 0 and len(levels) else levels.min() if len(levels) else None
        half = max(0.1, 0.5 * abs(nearest - edge)) if nearest is not None else 1.0
        windows.append((edge - half, probe.mid) if side < 0 else (probe.mid, edge + half))
    probe._windows = windows
    (g_v, g_c), n = probe.degeneracy, probe.n_occupied
    probe._level_weight = (w[probe.k_v][n - g_v:n].sum(), w[probe.k_c][n:n + g_c].sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=24)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    t0 = time.time()
    atoms, forces = hbn_bilayer(), EmpiricalForceReference()
    lattice = prepare_lattice(atoms, forces, 6)
    out: dict = {"cell": "AA' hBN bilayer, 6x6", "temperature_k": 0.0, "samples": args.samples,
                 "seed": args.seed, "models": {}}
    displacements = None
    for name, model_name in MODELS.items():
        model = hamiltonian_model_from_name(model_name)
        engine = MonteCarloEngine(atoms, forces, model, MCSettings(temperatures=(0.0,), supercell=6,
                                                                  spectral_every=0), lattice=lattice)
        probe = engine.gap_probe
        (pristine,) = model.blocks([probe.ideal])
        attach_unfolded_reference(probe, pristine)
        static = measure(probe, pristine)
        if displacements is None:
            displacements = engine.sampler.displacements(0.0, 0, args.samples, seed=args.seed)
        rows = []
        for u in displacements:
            cell = probe.ideal.copy()
            cell.positions += u
            (blocks,) = model.blocks([cell])
            rows.append(measure(probe, blocks))
        scan, steps = [], {}
        for a in np.round(np.arange(0.0, 3.0001, 0.1), 3):
            cell = probe.ideal.copy()
            cell.positions += a * displacements[0]
            (blocks,) = model.blocks([cell])
            scan.append({"amplitude": float(a), **measure(probe, blocks)})
        thermal = [r for r in scan if r["amplitude"] <= 2.0]
        for d in DEFINITIONS:
            steps[d] = float(np.abs(np.diff([r[d] for r in thermal], 2)).max())
        zpr = {}
        for d in DEFINITIONS:
            x = 1000 * (np.array([r[d] for r in rows]) - static[d])
            zpr[d] = {"mev": float(x.mean()), "se_mev": float(x.std(ddof=1) / np.sqrt(len(x)))}
        out["models"][name] = {"model": model_identity(model_name), "degeneracy": list(probe.degeneracy),
                               "static_gap_ev": static, "zpr": zpr, "largest_second_difference_ev": steps,
                               "edge_weight_share": {side: float(np.mean([r["edge_weight_share"][i] for r in rows]))
                                                     for i, side in enumerate(("valence", "conduction"))},
                               "scan": scan, "per_sample_gap_ev": rows}
        print(f"{name}: done ({time.time() - t0:.0f} s)", flush=True)
    out["seconds"] = time.time() - t0
    OUT.write_text(json.dumps(out, indent=1))
    print(table(out))
    print(f"-> {OUT}")


def table(out: dict) -> str:
    """The comparison as Markdown."""
    m, r = out["models"]["network"], out["models"]["reference"]
    lines = ["| definition | ZPR network (meV) | ZPR GFN1-xTB (meV) | largest second difference, network / GFN1 (meV) |",
             "|---|---|---|---|"]
    for d in DEFINITIONS:
        lines.append(f"| {d} | {m['zpr'][d]['mev']:+.1f} ± {m['zpr'][d]['se_mev']:.1f} | {r['zpr'][d]['mev']:+.1f} ± "
                     f"{r['zpr'][d]['se_mev']:.1f} | {1000 * m['largest_second_difference_ev'][d]:.1f} / "
                     f"{1000 * r['largest_second_difference_ev'][d]:.1f} |")
    for name, model in out["models"].items():
        lines.append(f"\n{name}: the g edge states carry {model['edge_weight_share']['valence']:.3f} (valence) and "
                     f"{model['edge_weight_share']['conduction']:.3f} (conduction) of the edge level's weight at K")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
