"""The interlayer physics of a phonon model against LCBOP + Kolmogorov-Crespi (issue 28, item 1).

(a) the rigid flat bilayer's stacking-energy surface along AA -> AB -> SP -> BA -> AA at
d = 3.38 A and its binding curve E(d) for AB stacking (each model's equilibrium d);
(b) the shear and breathing force constants from central differences of rigid-layer
displacements of the relaxed AB bilayer (mlepi_core.interlayer), with the two-mass and
three-layer chain frequencies they give; (c) the Gamma modes below 150 cm^-1 from phonopy
on the AB bilayer, the ABA trilayer, a 1.5 % biaxially strained AB bilayer, the ABC trilayer
and the 21.8 deg twisted bilayer (m, n) = (1, 2), mode by mode (the reference's Gamma shear of
the twisted cell is itself slightly imaginary: its layers barely lock); (d) the layer-summed forces (the interlayer
force on each layer, in which the intralayer forces cancel) on the test split of the
phonon set, against the per-atom force error. Units: meV/atom, Angstrom, eV, cm^-1.

Writes benchmarks/results/interlayer_phonons[_TAG].json and prints a Markdown table. Run:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/interlayer_phonons.py [--model phonon] [--tag TAG]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from mlepi_core import force_model
from mlepi_core.interlayer import (STACKING_PATH_POINTS, binding_curve, equilibrium_distance,
                                   gamma_comparison, interlayer_force_constants, layer_chain_frequencies,
                                   layer_forces, layers_of, stacking_energies, stacking_path,
                                   validation_cells)
from mlepi_core.phonons import relax_positions
from mlepi_core.structures import bilayer



def layer_force_errors(model, reference_frames) -> dict:
    """RMS of the reference's layer-summed force per atom and of the model's error on it (meV/A),
    beside the per-atom force MAE, over ``reference_frames`` (with forces)."""
    _, forces = model.energies_forces(reference_frames)
    ref_l, err_l, err_atom = [], [], []
    for atoms, f in zip(reference_frames, forces):
        labels = layers_of(atoms)
        n = np.bincount(labels)[:, None]
        f_ref = atoms.arrays["forces"]
        ref_l.append(layer_forces(f_ref, labels) / n)
        err_l.append(layer_forces(f - f_ref, labels) / n)
        err_atom.append(np.abs(f - f_ref).ravel())
    ref_l, err_l = np.concatenate(ref_l), np.concatenate(err_l)
    out = {"n_frames": len(reference_frames),
           "force_mae_mev_per_a": 1e3 * float(np.mean(np.concatenate(err_atom)))}
    for part, axes in (("in_plane", slice(0, 2)), ("z", slice(2, 3))):
        out[f"layer_force_per_atom_{part}_rms_reference_mev_per_a"] = 1e3 * float(np.sqrt(np.mean(ref_l[:, axes] ** 2)))
        out[f"layer_force_per_atom_{part}_rmse_mev_per_a"] = 1e3 * float(np.sqrt(np.mean(err_l[:, axes] ** 2)))
    return out


def checkpoint_model(path: str):
    """The EMA weights of a training checkpoint (a run stopped mid-epoch) as a force model."""
    from mlepi_core.models.phonon import HedgeNetPhonon, HedgeNetPhononConfig, MLForceModel

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    network = HedgeNetPhonon(HedgeNetPhononConfig.from_dict(ckpt["model_config"]))
    network.load_state_dict(ckpt["model"], strict=False)
    with torch.no_grad():
        for name, p in network.named_parameters():
            p.copy_(ckpt["ema"]["shadow"][name])
    return MLForceModel(network.eval(), {"checkpoint": str(path), "step": ckpt["state"]["step"]})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="phonon", help="force model name, saved folder, or a run's checkpoint.pt")
    p.add_argument("--tag", default="", help="suffix of the output file")
    p.add_argument("--data", default="data/phonon/phonon_set.xyz")
    p.add_argument("--cells", default=",".join(validation_cells()))
    args = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    ml = checkpoint_model(args.model) if args.model.endswith(".pt") else force_model(args.model)
    models = {"ml": ml, "reference": force_model("empirical")}
    out: dict = {"model": args.model, "reference": "empirical (LCBOP + KC)"}

    t = stacking_path(6)
    surface = {k: stacking_energies(m, t) for k, m in models.items()}
    out["stacking_surface"] = {
        "d_a": 3.38, "t": t.tolist(), "points": STACKING_PATH_POINTS,
        **{f"{k}_mev_per_atom": v.tolist() for k, v in surface.items()},
        "mae_mev_per_atom": float(np.mean(np.abs(surface["ml"] - surface["reference"]))),
        "max_abs_error_mev_per_atom": float(np.max(np.abs(surface["ml"] - surface["reference"]))),
        "symmetry_ml_mev_per_atom": float(np.max(np.abs(surface["ml"] - surface["ml"][::-1])))}
    ds = np.round(np.arange(3.10, 3.801, 0.02), 4)
    curves = {k: binding_curve(m, ds) for k, m in models.items()}
    out["binding_curve"] = {"d_a": ds.tolist(), **{f"{k}_mev_per_atom": v.tolist() for k, v in curves.items()},
                            **{f"{k}_d_eq_a": equilibrium_distance(ds, v) for k, v in curves.items()},
                            **{f"{k}_binding_mev_per_atom": float(v.min() - v[-1]) for k, v in curves.items()}}

    relaxed = {k: relax_positions(bilayer("AB"), m) for k, m in models.items()}
    fcs = {k: interlayer_force_constants(m, relaxed[k]) for k, m in models.items()}
    rho = float(relaxed["reference"].get_masses()[:2].sum() / fcs["reference"]["area_a2"])
    for k, fc in fcs.items():
        fc["d_relaxed_a"] = float(np.ptp(relaxed[k].positions[:, 2]))
        fc["trilayer_chain_shear_cm1"] = layer_chain_frequencies(fc["shear_ev_per_a4"], rho, 3).tolist()
        fc["trilayer_chain_breathing_cm1"] = layer_chain_frequencies(fc["breathing_ev_per_a4"], rho, 3).tolist()
    out["force_constants"] = {**fcs, "areal_mass_amu_per_a2": rho,
                              "shear_ratio_ml_over_ref": fcs["ml"]["shear_ev_per_a4"] / fcs["reference"]["shear_ev_per_a4"],
                              "breathing_ratio_ml_over_ref": fcs["ml"]["breathing_ev_per_a4"]
                              / fcs["reference"]["breathing_ev_per_a4"]}

    out["gamma"] = {}
    cells = validation_cells()
    for name in args.cells.split(","):
        atoms, size = cells[name]
        t1 = time.time()
        out["gamma"][name] = gamma_comparison(atoms, models["ml"], models["reference"], size=size)
        out["gamma"][name]["seconds"] = time.time() - t1
        print(f"{name}: {time.time() - t1:.0f} s", flush=True)

    if Path(args.data).is_file():
        from mlepi_core.data.extxyz import read_extxyz

        test = [a for a in read_extxyz(args.data) if a.info.get("split") == "test"]
        out["layer_forces_test"] = layer_force_errors(models["ml"], test)
    out["seconds"] = time.time() - t0

    path = Path("benchmarks/results") / f"interlayer_phonons{'_' + args.tag if args.tag else ''}.json"
    path.write_text(json.dumps(out, indent=1))
    print(table(out))
    print(f"-> {path}")


def table(out: dict) -> str:
    """The measurements as Markdown."""
    s, b, fc = out["stacking_surface"], out["binding_curve"], out["force_constants"]
    idx = {k: int(np.argmin(np.abs(np.array(s["t"]) - v))) for k, v in s["points"].items()}
    lines = ["| quantity | ML | reference | ML / ref - 1 |", "|---|---|---|---|"]

    def row(name, ml, ref, fmt=".3f"):
        rel = f"{100 * (ml / ref - 1):+.1f} %" if ref else ""
        lines.append(f"| {name} | {ml:{fmt}} | {ref:{fmt}} | {rel} |")

    for k in ("SP", "AA"):
        row(f"E({k}) - E(AB), rigid, d = 3.38 A (meV/atom)", s["ml_mev_per_atom"][idx[k]],
            s["reference_mev_per_atom"][idx[k]])
    lines.append(f"| stacking surface MAE / max (meV/atom) | {s['mae_mev_per_atom']:.3f} / "
                 f"{s['max_abs_error_mev_per_atom']:.3f} | | |")
    row("equilibrium d, rigid AB (A)", b["ml_d_eq_a"], b["reference_d_eq_a"], ".4f")
    row("binding energy, AB (meV/atom, vs d = 3.8 A)", b["ml_binding_mev_per_atom"], b["reference_binding_mev_per_atom"])
    row("shear force constant (eV/A^4)", fc["ml"]["shear_ev_per_a4"], fc["reference"]["shear_ev_per_a4"], ".5f")
    row("breathing force constant (eV/A^4)", fc["ml"]["breathing_ev_per_a4"], fc["reference"]["breathing_ev_per_a4"], ".5f")
    row("two-mass shear (cm^-1)", fc["ml"]["shear_cm1"], fc["reference"]["shear_cm1"], ".2f")
    row("two-mass breathing (cm^-1)", fc["ml"]["breathing_cm1"], fc["reference"]["breathing_cm1"], ".2f")
    if "layer_forces_test" in out:
        lf = out["layer_forces_test"]
        for part in ("in_plane", "z"):
            lines.append(f"| test split, layer-summed force per atom, {part}: ML error RMS / reference RMS "
                         f"(meV/A) | {lf[f'layer_force_per_atom_{part}_rmse_mev_per_a']:.2f} | "
                         f"{lf[f'layer_force_per_atom_{part}_rms_reference_mev_per_a']:.2f} | (per-atom force "
                         f"MAE {lf['force_mae_mev_per_a']:.2f}) |")
    lines += ["", "| cell | mode | ML (cm^-1) | reference (cm^-1) | rel. error | within 10 % or 2 cm^-1 |",
              "|---|---|---|---|---|---|"]
    for cell, g in out["gamma"].items():
        for m in g["modes"]:
            if m["character"] == "acoustic":
                continue
            rel = f"{100 * m['rel_error']:+.1f} %" if m["rel_error"] is not None else ""
            lines.append(f"| {cell} | {m['character']} | {m['ml_cm1']:.2f} | {m['reference_cm1']:.2f} | {rel} | "
                         f"{'yes' if m['ok'] else 'no'} |")
        lines.append(f"| {cell} | low-branch RMS / full RMS | {g.get('low_branch_rms_cm1', float('nan')):.2f} / "
                     f"{g.get('rms_cm1', float('nan')):.2f} | | | imaginary: ML {g['ml_n_imaginary']}, "
                     f"ref {g['reference_n_imaginary']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
