"""Band-level checks of a Hamiltonian model against the reference (the paper's Fig. 4d).

    atoms -> model.blocks, reference.blocks -> H(k), S(k) along the cell's own
    Gamma-M-K-Gamma -> eigenvalues -> max |E_model - E_ref| of the states within
    ``window`` eV of E_F (band by band, in energy order)

and the pristine-lattice Fermi velocity and gamma_1 from both (BandProbe), plus a
thermal Monte Carlo sample that no data set holds (its own seed). ``electron_physics``
runs them all on a saved network against the reference it was trained on
(``mlepi evaluate electron --physics``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from .electrons import BlockTensors, bloch_pair, solve_generalized
from .observables import BandProbe
from .phonons import hexagonal_path
from .seams import HamiltonianModel

VALIDATION_SEED = 9_000_001  # thermal samples for validation: a stream no data set draws from


def cell_path(cell: np.ndarray, points_per_segment: int = 12) -> tuple[np.ndarray, np.ndarray, list, np.ndarray]:
    """Gamma-M-K-Gamma of ``cell`` itself: Cartesian k (1/A), distances, labels, label distances."""
    path = hexagonal_path(cell)
    recip = 2 * np.pi * np.linalg.inv(np.asarray(cell)).T
    frac = np.concatenate([np.linspace(a[1], b[1], points_per_segment, endpoint=False)
                           for a, b in zip(path[:-1], path[1:])] + [path[-1][1][None]])
    k = frac @ recip
    dist = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(k, axis=0), axis=1))])
    return k, dist, [p[0] for p in path], dist[::points_per_segment]


def cell_bands(blocks, atoms: Atoms, k_cart: np.ndarray) -> np.ndarray:
    """All eigenvalues (n_k, M) in eV of a cell's blocks at Cartesian k (atomic gauge)."""
    bt = BlockTensors.from_blocks(blocks, atoms.positions, atoms.cell)
    k = torch.as_tensor(k_cart)
    e, _, _ = solve_generalized(*bloch_pair(bt, k))
    return e.numpy()


def fermi_level(energies: np.ndarray, n_electrons: int) -> float:
    """Mid-gap (or mid-point of the levels at the Fermi surface) of a k-set, spin-degenerate."""
    n_occ = n_electrons // 2
    return float(0.5 * (energies[:, n_occ - 1].max() + energies[:, n_occ].min()))


def compare_bands(model: HamiltonianModel, reference: HamiltonianModel, atoms: Atoms,
                  window: float = 1.0, points_per_segment: int = 12) -> dict:
    """Model vs reference bands of one cell along its own path: errors (meV) of the states
    whose reference energy lies within ``window`` eV of the reference E_F, band by band,
    energies measured from each model's own E_F (a rigid shift of all levels changes no
    observable); the absolute error and the E_F shift are reported beside it."""
    (b_model,), (b_ref,) = model.blocks([atoms]), reference.blocks([atoms])
    k, dist, labels, label_dist = cell_path(atoms.cell, points_per_segment)
    e_model, e_ref = cell_bands(b_model, atoms, k), cell_bands(b_ref, atoms, k)
    # electrons the basis holds (the p_z model: one per carbon), else GFN1's valence count
    n_el = int(b_ref.meta.get("valence_electrons", BandProbe.valence_electrons(atoms)))
    ef_model, ef_ref = fermi_level(e_model, n_el), fermi_level(e_ref, n_el)
    near = np.abs(e_ref - ef_ref) <= window
    # band energies relative to each model's own E_F (what the observables use), and absolute
    err = np.abs((e_model - ef_model) - (e_ref - ef_ref))[near] * 1000.0
    err_abs = np.abs(e_model - e_ref)[near] * 1000.0
    return {"band_max_err_mev": float(err.max()), "band_mae_mev": float(err.mean()),
            "band_max_err_absolute_mev": float(err_abs.max()), "fermi_shift_mev": 1000.0 * (ef_model - ef_ref),
            "n_states": int(near.sum()), "window_ev": window, "e_fermi_ref_ev": ef_ref, "n_k": len(k),
            "_plot": {"distances": dist, "labels": labels, "label_distances": label_dist,
                      "e_model": e_model - ef_model, "e_ref": e_ref - ef_ref}}


def pristine_fermi_velocity(model: HamiltonianModel, reference: HamiltonianModel, primitive: Atoms,
                            size: int = 6) -> dict:
    """Static v_F (10^6 m/s) and gamma_1 (eV) of the undisplaced n x n cell from both models."""
    from .structures import supercell

    ideal = supercell(primitive, size)
    out = {}
    for name, m in (("ml", model), ("ref", reference)):
        (blocks,) = m.blocks([ideal])
        probe = BandProbe(primitive, ideal, n_bands=4).prepare(blocks)
        out[f"vf_{name}"] = probe.static
        out[f"gamma1_{name}"] = probe.four_band_fit(probe.pristine_bands)["gamma1_ev"]
    out["vf_rel_diff"] = out["vf_ml"] / out["vf_ref"] - 1.0
    out["gamma1_rel_diff"] = out["gamma1_ml"] / out["gamma1_ref"] - 1.0
    return out


def thermal_sample(primitive: Atoms, force_model, temperature: float = 300.0, size: int = 6,
                   seed: int = VALIDATION_SEED) -> Atoms:
    """One thermally displaced n x n supercell from the force model's phonons (validation stream)."""
    from .engine import prepare_lattice
    from .sampling import ThermalSampler

    relaxed, phonon = prepare_lattice(primitive, force_model, size)
    (sample,) = ThermalSampler(phonon, relaxed).samples(temperature, 0, 1, seed)
    return sample


def plot_band_comparison(path, comparison: dict, title: str, window: float = 1.5,
                         reference_label: str = "GFN1-xTB") -> None:
    """Reference bands as lines, model bands as dots, within +-window eV of E_F (Fig. 4d)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = comparison["_plot"]
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    for b in range(p["e_ref"].shape[1]):
        if np.any(np.abs(p["e_ref"][:, b]) < window):
            ax.plot(p["distances"], p["e_ref"][:, b], color="k", lw=1)
            ax.plot(p["distances"], p["e_model"][:, b], "o", color="tab:red", ms=2.5)
    ax.plot([], [], color="k", lw=1, label=f"reference ({reference_label})")
    ax.plot([], [], "o", color="tab:red", ms=3, label="HedgeNet-Electron")
    ax.set_xticks(p["label_distances"], p["labels"])
    for x in p["label_distances"]:
        ax.axvline(x, color="0.8", lw=0.6)
    ax.set_ylim(-window, window)
    ax.set_xlim(p["distances"][0], p["distances"][-1])
    ax.set_ylabel("E - E$_F$ (eV)")
    ax.set_title(f"{title}\nmax |ΔE| within 1 eV of E$_F$: {comparison['band_max_err_mev']:.1f} meV", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def electron_reference_of(model_dir) -> tuple[str, object]:
    """(name, Hamiltonian model) of the reference an electron network was trained on: the
    labelling model its data set's metadata.json names, else its basis (one l = 0 orbital:
    the Slater-Koster p_z model; s, p: GFN1-xTB)."""
    from .models.io import read_metadata
    from .reference.slater_koster import SlaterKosterPz
    from .reference.tblite_electrons import GFN1Reference

    meta = read_metadata(model_dir)
    labels = ""
    data = Path((meta.get("training_data") or {}).get("path") or "")
    if (data / "metadata.json").is_file():
        labels = json.loads((data / "metadata.json").read_text()).get("hamiltonian_model", "")
    if labels.startswith("SlaterKosterPz") or (not labels and list(meta.get("shells", [])) == [0]):
        return "slater-koster", SlaterKosterPz()
    return "gfn1", GFN1Reference()


def electron_physics(model_dir, figure: str | None = None) -> dict:
    """Band-level checks against the model's own reference (GFN1-xTB or the Slater-Koster p_z
    model; the paper's Fig. 4d): a 300 K sample of the 6x6 AB bilayer from the empirical
    force reference's phonons (a validation seed no data set uses) and the pristine cell's
    v_F and gamma_1. For the p_z model also gamma_1 at its parametrisation's d = 3.35 A
    ("reference")."""
    from .models import load_model
    from .reference.lammps_forces import EmpiricalForceReference
    from .structures import bilayer

    ref_name, reference = electron_reference_of(model_dir)
    model, primitive = load_model(model_dir, kind="electron"), bilayer("AB")
    sample = thermal_sample(primitive, EmpiricalForceReference(), 300.0, size=6)
    bands = compare_bands(model, reference, sample)
    if figure:
        Path(figure).parent.mkdir(parents=True, exist_ok=True)
        plot_band_comparison(figure, bands, "6x6 AB bilayer, a 300 K Monte Carlo sample",
                             reference_label={"gfn1": "GFN1-xTB", "slater-koster": "Slater-Koster p$_z$"}[ref_name])
    bands = {k: v for k, v in bands.items() if not k.startswith("_")}
    pristine = pristine_fermi_velocity(model, reference, primitive, size=6)
    out = {"mc_sample_300K": {**bands, "structure": "AB 6x6", "temperature_k": 300.0,
                              "forces": "empirical (LCBOP + KC)", "reference": ref_name},
           "pristine": pristine}
    if ref_name == "slater-koster":
        out["reference"] = reference_coupling(model, reference)
    return out


def reference_coupling(model, reference, d: float = 3.35) -> dict:
    """gamma_1 (eV) and v_F (10^6 m/s) of the pristine AB bilayer at interlayer distance ``d``
    (the p_z model's parametrisation: 3.35 A) from the reference and from the network."""
    from .structures import bilayer

    at = pristine_fermi_velocity(model, reference, bilayer("AB", d=d), size=3)
    return {"model": repr(reference), "distance_a": d, "gamma1_ev": at["gamma1_ref"],
            "gamma1_ml_ev": at["gamma1_ml"], "vf_1e6_m_s": at["vf_ref"], "vf_ml_1e6_m_s": at["vf_ml"]}
