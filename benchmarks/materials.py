"""Other materials through the pipeline (issue 31): a network against its reference on the
gap and its renormalisation, on the same Monte Carlo samples.

Reads the folder of `mlepi mc MATERIAL --electrons reference MODEL --out DIR` (both models on
the very same displaced cells: the keyed random streams), the network's metrics.json, and
writes one row per material to assets/results/materials.json (merged with the rows already
there) and a Markdown table. The zero-point renormalisation is ZPR = <E_g>(0 K) - E_g(static
lattice), each model's own static gap; the paired error is the standard error of the
per-sample differences (network minus reference) of E_g - E_g(static). Units: eV, meV, K.

    .venv/bin/python benchmarks/materials.py results/mc_hbn_6x6 --material hBN \\
        --model assets/models/electron_hbn
"""

import argparse
import json
from pathlib import Path

import numpy as np

from mlepi_core.checkpoints import read_checkpoint
from mlepi_core.files import write_text_atomic

OUT = Path(__file__).parents[1] / "assets" / "results" / "materials.json"
REFERENCES = {"hBN": ("ExTeP + ILP (LAMMPS)", "GFN1-xTB (tblite)")}
ELEMENTS = {"hBN": ["B", "N"]}


def gaps(folder: Path, run: str) -> dict[float, dict[int, float]]:
    """Per temperature, the gap (eV) of every finished sample of one model's checkpoint."""
    return read_checkpoint(folder / f"checkpoint_{run}.npz")["gaps"]


def mean_se(x: np.ndarray) -> tuple[float, float]:
    return float(np.mean(x)), float(np.std(x, ddof=1) / np.sqrt(len(x)))


def compare(folder: Path, ml_run: str) -> dict:
    """Gap statistics of the network (``ml_run``) and the reference on their common samples."""
    static = json.loads((folder / "results.json").read_text())["static"]
    ref, ml = gaps(folder, "reference"), gaps(folder, ml_run)
    s_ref, s_ml = static["gap_reference"], static[f"gap_{ml_run}"]
    out = {"gap_static_ev": {"ml": s_ml, "reference": s_ref}, "gap_T": [], "paired": []}
    for t in sorted(set(ref) & set(ml)):
        keys = sorted(set(ref[t]) & set(ml[t]))
        g_ref = np.array([ref[t][k] for k in keys])
        g_ml = np.array([ml[t][k] for k in keys])
        row = {"T": t, "samples": len(keys)}
        for name, g in (("ml", g_ml), ("reference", g_ref)):
            row[f"gap_ev_{name}"], row[f"se_{name}"] = mean_se(g)
        out["gap_T"].append(row)
        d = 1e3 * ((g_ml - s_ml) - (g_ref - s_ref))
        m, se = mean_se(d)
        out["paired"].append({"T": t, "ml_minus_reference_renormalisation_mev": m, "paired_se_mev": se})
    zero = next(r for r in out["gap_T"] if r["T"] == 0.0)
    out["gap_zpr_mev"] = {"ml": 1e3 * (zero["gap_ev_ml"] - s_ml), "ml_se": 1e3 * zero["se_ml"],
                          "reference": 1e3 * (zero["gap_ev_reference"] - s_ref),
                          "reference_se": 1e3 * zero["se_reference"],
                          "paired_difference": out["paired"][0]["ml_minus_reference_renormalisation_mev"],
                          "paired_se": out["paired"][0]["paired_se_mev"], "samples": zero["samples"]}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir")
    p.add_argument("--material", default="hBN", choices=sorted(REFERENCES))
    p.add_argument("--model", default="assets/models/electron_hbn")
    p.add_argument("--phonon-model", default=None, help="the material's HedgeNet-Phonon folder (none yet: "
                   "the reference's phonons)")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    folder, model = Path(args.dir), Path(args.model)
    ml_run = next(f.stem.removeprefix("checkpoint_") for f in folder.glob("checkpoint_*.npz")
                  if f.stem != "checkpoint_reference")
    cmp = compare(folder, ml_run)
    metrics = json.loads((model / "metrics.json").read_text())
    force_ref, electron_ref = REFERENCES[args.material]
    row = {"material": args.material, "elements": ELEMENTS[args.material], "force_reference": force_ref,
           "electron_reference": electron_ref, "electron_model": str(model),
           "phonon_model": args.phonon_model or f"none: the phonons of {force_ref}",
           "h_mae_mev": metrics["test"]["h_mae_mev"], "h_mae_mev_held_out": metrics["twisted"]["h_mae_mev"],
           "gap_static_ev": cmp["gap_static_ev"]["reference"], "gap_static_ev_ml": cmp["gap_static_ev"]["ml"],
           "gap_zpr_mev": cmp["gap_zpr_mev"],
           "gap_T": [{"T": r["T"], "gap_ev": r["gap_ev_reference"], "se": r["se_reference"],
                      "gap_ev_ml": r["gap_ev_ml"], "se_ml": r["se_ml"], "samples": r["samples"]}
                     for r in cmp["gap_T"]],
           "paired": cmp["paired"], "mc_folder": str(folder)}
    # phonon_rms_cm1 and force_mae_mev_per_a join the row once the material has a phonon network
    out = Path(args.out)
    rows = json.loads(out.read_text()) if out.is_file() else []
    rows = [r for r in rows if r.get("material") != args.material] + [row]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(rows, indent=1))
    z = row["gap_zpr_mev"]
    print(f"{args.material}: static gap {row['gap_static_ev']:.4f} eV (network {row['gap_static_ev_ml']:.4f}); "
          f"ZPR reference {z['reference']:+.1f} +- {z['reference_se']:.1f} meV, network {z['ml']:+.1f} +- "
          f"{z['ml_se']:.1f} meV, paired difference {z['paired_difference']:+.2f} +- {z['paired_se']:.2f} meV "
          f"({z['samples']} samples)\n")
    print("| T (K) | samples | E_g reference (eV) | E_g network (eV) | network - reference, renormalisation (meV) |")
    print("|---|---|---|---|---|")
    for r, d in zip(cmp["gap_T"], cmp["paired"]):
        print(f"| {r['T']:g} | {r['samples']} | {r['gap_ev_reference']:.4f} +- {r['se_reference']:.4f} | "
              f"{r['gap_ev_ml']:.4f} +- {r['se_ml']:.4f} | {d['ml_minus_reference_renormalisation_mev']:+.2f} +- "
              f"{d['paired_se_mev']:.2f} |")


if __name__ == "__main__":
    main()
