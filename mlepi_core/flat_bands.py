"""Flat bands of a twisted bilayer from several Hamiltonian models (the paper's Fig. 4c).

Each model gives the ``n_states`` states nearest charge neutrality along the moire path
Gamma-M-K-Gamma (or at its corners only), from which the width of the four central
bands and the gaps to the remote bands follow (``moire``). Against the Slater-Koster
reference, the largest difference of the states at Gamma, M and K. Energies in meV from
each model's own E_F (the centre of the four central bands at K). ``mlepi tbg`` drives
it for the rigid and the relaxed cell and adds the continuum model; ``plot_flat_bands``
draws the figure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from ase import Atoms

from . import moire


@dataclass(frozen=True)
class BandModel:
    """A Hamiltonian model under a label; ``is_reference`` for the Slater-Koster reference."""

    label: str
    is_reference: bool
    model: object


@dataclass(frozen=True)
class MoirePath:
    """Gamma-M-K-Gamma of a moire cell without the closing Gamma: fractional k (P, 3), path
    distance (P,) in 1/A, tick labels and positions, and the index of each corner."""

    k_frac: np.ndarray
    dist: np.ndarray
    labels: list[str]
    ticks: np.ndarray
    points_per_segment: int

    @classmethod
    def of(cls, cell, points_per_segment: int) -> "MoirePath":
        p = max(1, int(points_per_segment))
        k_frac, dist, labels, ticks = moire.moire_path(cell, p)
        return cls(k_frac[:-1], dist[:-1], labels, ticks, p)

    @property
    def corner(self) -> dict[str, int]:
        p = self.points_per_segment
        return {"Γ": 0, "M": p, "K": 2 * p}


def model_bands(entry: BandModel, atoms: Atoms, path: MoirePath, n_states: int, corners_only: bool = False,
                progress: Callable[[str], None] | None = None) -> tuple[dict, np.ndarray, float]:
    """One model's bands near neutrality: the record for the results, the energies (P, n_states)
    in meV and the seconds the solves took."""
    corner = path.corner
    if corners_only:
        ks, at = path.k_frac[list(corner.values())], dict(zip(corner, range(3)))
    else:
        ks, at = path.k_frac, corner
    t = time.perf_counter()
    nb = moire.bands_near_neutrality(entry.model, atoms, ks, n_states, progress=progress)
    seconds = time.perf_counter() - t
    e = nb.relative_mev()
    below, above = moire.remote_gaps(e)
    along_path = path.points_per_segment > 1 and not corners_only
    record = {"e_fermi_ev": nb.e_fermi, "n_occupied_bands": nb.n_occ,
              "width_mev": moire.central_width(e), "gap_below_mev": below, "gap_above_mev": above,
              "width_over": (f"Gamma-M-K-Gamma, {path.points_per_segment} points per segment" if along_path
                             else "Gamma, M, K"),
              "eigenvalues_mev": {c: e[i].tolist() for c, i in at.items()},
              **({"path_mev": e.tolist()} if along_path else {})}
    return record, e, seconds


def compare_to_reference(models: Sequence[BandModel], records: dict, energies: dict, path: MoirePath) -> dict:
    """The section of one cell (rigid or relaxed): widths of the reference and of the (first)
    ML model, the reference's gap to the remote bands and the largest ML - reference
    difference of the states at Gamma, M and K."""
    ref = next((m.label for m in models if m.is_reference), None)
    ml = next((m.label for m in models if not m.is_reference), None)
    section = {"ref_width_mev": records[ref]["width_mev"] if ref else None,
               "ml_width_mev": records[ml]["width_mev"] if ml else None,
               "gap_to_remote_mev": min(records[ref]["gap_below_mev"], records[ref]["gap_above_mev"]) if ref else None,
               "max_ml_ref_err_mev": None}
    if ref and ml:
        idx = list(path.corner.values())
        section["max_ml_ref_err_mev"] = float(np.abs(energies[ml][idx] - energies[ref][idx]).max())
        section["ml_ref_fermi_shift_mev"] = 1e3 * (records[ml]["e_fermi_ev"] - records[ref]["e_fermi_ev"])
    section["eigenvalues"] = {lab: r["eigenvalues_mev"] for lab, r in records.items()}
    section["models"] = records
    return section


def plot_flat_bands(path: MoirePath, panels: Sequence[tuple[str, dict]], models: Sequence[BandModel],
                    continuum: tuple[np.ndarray, np.ndarray, np.ndarray], title: str):
    """The figure: one panel per cell (name, {label: energies (P, n) in meV}), reference as open
    circles, ML models as dots, the continuum bands (distance, energies, ticks) as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dist_c, e_c, ticks_c = continuum
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.4), squeeze=False, sharey=True)
    x_c = np.interp(dist_c, ticks_c, path.ticks)  # continuum path drawn on the tight-binding one
    for ax, (name, energies) in zip(axes[0], panels):
        ax.plot(x_c, e_c, color="tab:blue", lw=1, alpha=0.7)
        ax.plot([], [], color="tab:blue", lw=1, label="continuum (BM, w$_{AA}$ = w$_{AB}$)")
        for k, entry in enumerate(models):
            e = energies[entry.label]
            xs = np.repeat(path.dist[:, None], e.shape[1], axis=1)
            if entry.is_reference:
                ax.scatter(xs, e, s=60, facecolors="none", edgecolors="k", lw=1.1, label="Slater-Koster p$_z$",
                           zorder=3)
            else:
                ax.scatter(xs, e, s=14, color=f"C{k + 1}", label=f"ML ({entry.label})", zorder=4)
        ax.set_xticks(path.ticks, path.labels)
        ax.set_xlim(path.ticks[0], path.ticks[-1])
        ax.axhline(0, color="0.7", lw=0.6, zorder=0)
        width = ", ".join(f"{m.label} {moire.central_width(energies[m.label]):.1f}" for m in models)
        ax.set_title(f"{title}, {name}\ncentral widths (meV): {width}", fontsize=8)
    span = max(np.abs(np.concatenate([e.ravel() for _, energies in panels for e in energies.values()])).max(), 1.0)
    axes[0][0].set_ylim(-1.2 * span, 1.2 * span)
    axes[0][0].set_ylabel("E - E$_F$ (meV)")
    axes[0][0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig
