"""What a model is, in one paragraph: the cards the dashboard shows under its model choices
and ``mlepi models`` prints. A trained network's numbers come from its own metrics.json
(written by ``mlepi evaluate``), never from this file."""

from __future__ import annotations

import json
from pathlib import Path

from .model_names import UnknownModelError

REFERENCE_CARDS = {
    "empirical": "**LCBOP + Kolmogorov–Crespi** (LAMMPS): the empirical force field HedgeNet-Phonon "
                 "learnt from, in-plane bonds from LCBOP, interlayer registry from Kolmogorov–Crespi.",
    "rebo": "**REBO + Kolmogorov–Crespi** (LAMMPS): REBO for the in-plane bonds instead of LCBOP.",
    "gfn1": "**GFN1-xTB forces** (tblite): the quantum forces; its cost grows as N³.",
    "reference": "**GFN1-xTB** (tblite): the quantum reference HedgeNet-Electron learnt from, s and p "
                 "orbitals with overlap; its cost grows as N³ (a 6 x 6 sample takes seconds).",
    "slater-koster": "**Slater–Koster p_z**: one orbital per carbon, V_ppπ and V_ppσ hoppings with "
                     "γ₁ = 0.31 eV; fast, and the reference of the Slater–Koster-trained network.",
}


def model_card(name: str) -> str:
    """One paragraph (Markdown) on the model a name gives (``model_names``): for a trained
    network its architecture, training set and held-out errors against its reference, read
    from the folder's metadata.json and metrics.json; for a reference, what it is."""
    if name in REFERENCE_CARDS:
        return REFERENCE_CARDS[name]
    from .shipped import resolve_model_name

    folder = Path(resolve_model_name(name))
    if not (folder / "metadata.json").is_file():
        raise UnknownModelError(f"no card for {name!r}: neither a reference ({', '.join(REFERENCE_CARDS)}) "
                                "nor a saved model folder")
    meta = json.loads((folder / "metadata.json").read_text())
    metrics_file = folder / "metrics.json"
    m = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    relations = meta.get("relations", [])
    graph = "intra- and inter-layer sub-networks" if len(relations) > 1 else "one relation (homogeneous)"
    cutoffs = ", ".join(f"{r} {c:g} Å" for r, c in (meta.get("cutoffs_a") or {}).items())
    counts = (meta.get("training_data") or {}).get("split_counts") or {}
    head = (f"**{meta['architecture'].replace('HedgeNet', 'HedgeNet-')}**: {meta['n_parameters']:,} parameters, "
            f"{meta['num_layers']} layers, {graph}; cutoffs {cutoffs}; trained on {counts.get('train', 0):,} "
            f"structures.")
    if meta["kind"] == "phonon":
        t = m.get("test") or {}
        lines = [f"Held-out test set ({t.get('n_structures', '?')} structures) against the reference it learnt: "
                 f"energy MAE {t['energy_mae_mev_per_atom']:.3f} meV/atom, force MAE "
                 f"{t['force_mae_mev_per_a']:.2f} meV/Å."] if t else []
        if "phonons_6x6" in m:
            low = m["phonons_6x6"].get("low_branch_rms_cm1")
            lines.append(f"6 x 6 AB-bilayer phonons: RMS {m['phonons_6x6']['rms_cm1']:.1f} cm⁻¹ from the reference"
                         + (f" over all branches, {low:.1f} cm⁻¹ on the acoustic and interlayer branches below "
                            f"150 cm⁻¹." if low is not None else "."))
        lines += _interlayer_lines(m)
    else:
        ref = "the Slater–Koster p_z model" if meta.get("shells") == [0] else "GFN1-xTB"
        lines = []
        if m.get("test"):
            lines.append(f"H MAE against {ref}: {m['test']['h_mae_mev']:.3f} meV on "
                         f"{m['test'].get('n_structures', 'the')} held-out test cells"
                         + (f", {m['twisted']['h_mae_mev']:.3f} meV on {m['twisted'].get('n_structures', 'the')} "
                           f"{_held_out_kind(m['twisted'])}" if m.get("twisted") else "")
                         + ".")
        if m.get("mc_sample_300K") and m.get("pristine"):
            p = m["pristine"]
            lines.append(f"Bands of an unseen 300 K sample within 1 eV of E_F: max error "
                         f"{m['mc_sample_300K']['band_max_err_mev']:.1f} meV; pristine v_F "
                         f"{100 * p['vf_rel_diff']:+.2f} %, γ₁ {100 * p['gamma1_rel_diff']:+.2f} %.")
    return " ".join([head, *lines])


def _held_out_kind(split: dict) -> str:
    """What the data set's held-out ("twisted") split holds, from its structures' names:
    graphene's twisted cells, or another material's strained and restacked bilayers."""
    names = list(split.get("by_structure") or ())
    if names and all(n.startswith("tbg") for n in names):
        return "twisted cells"
    return "held-out cells (strained, restacked)" if names else "held-out cells"


def _interlayer_lines(m: dict) -> list[str]:
    """The Gamma modes below 150 cm⁻¹ (relative errors) and the stacking surface of a phonon
    model's metrics.json (``interlayer.interlayer_metrics``), as card sentences."""
    errors = m.get("gamma_mode_errors") or {}
    lines = []
    if "AB_bilayer" in errors:
        modes = [x for x in errors["AB_bilayer"] if x["rel_error"] is not None]
        lines.append("Γ modes below 150 cm⁻¹ of the AB bilayer, ML against the reference: " + ", ".join(
            f"{x['character']} {x['ml_cm1']:.1f} vs {x['reference_cm1']:.1f} ({100 * x['rel_error']:+.0f} %)"
            for x in modes) + ".")
    others = {c: [x for x in v if x["rel_error"] is not None] for c, v in errors.items() if c != "AB_bilayer"}
    worst = [(abs(x["rel_error"]), c, x) for c, v in others.items() for x in v]
    if worst:
        _, cell, x = max(worst, key=lambda w: w[0])
        n_ok = sum(x["ok"] for v in others.values() for x in v)
        lines.append(f"On {len(others)} cells outside the training set {n_ok} of {len(worst)} such modes are within "
                     f"10 % (or 2 cm⁻¹); the worst, {x['character']} of {cell.replace('_', ' ')}: "
                     f"{x['ml_cm1']:.1f} vs {x['reference_cm1']:.1f} cm⁻¹ ({100 * x['rel_error']:+.0f} %).")
    if "stacking_energy_mae_mev_per_atom" in m:
        lines.append(f"Rigid stacking-energy surface: MAE {m['stacking_energy_mae_mev_per_atom']:.3f} meV/atom.")
    return lines
