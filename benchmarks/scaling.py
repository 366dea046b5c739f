"""Scaling in one run: time per force evaluation (HedgeNet-Phonon, the LCBOP+KC reference,
GFN1-xTB) and per H/S prediction (HedgeNet-Electron, tblite's GFN1-xTB) as the cell grows.

AB bilayers 4x4, 6x6, 12x12, 24x24 (64 to 2,304 atoms, 0.03 A random displacements,
seeded) plus optional twisted cells (--twisted m,n). One structure per call; ML and the
empirical reference: median of --repeats after a warm-up (benchmarks/timing.py); GFN1-xTB:
one SCF per cell (no warm-up needed: the SCF dominates), whose time is the GFN1 force
time, and SCF + block split is the reference H/S time (the split needs cells >= 13 A, so
4x4 has none). GFN1 runs only while its time predicted as N^3 from the previous cell stays
under --gfn1-budget-s. Power laws t ~ N^p are fitted by log-log least squares
(electron_timing.exponent). ML models run on --device (CUDA when available) in float32.
Writes benchmarks/results/scaling.json and a table.

    nice .venv/bin/python benchmarks/scaling.py [--phonon-model DIR] [--electron-model DIR]
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP: no spinning threads

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from electron_timing import exponent
from timing import median_time
from mlepi_core.models import load_model
from mlepi_core.reference.lammps_forces import EmpiricalForceReference
from mlepi_core.reference.tblite_electrons import DEFAULT_RC, GFN1Reference, check_cell_for_cutoff
from mlepi_core.structures import bilayer, supercell, twisted_bilayer

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "scaling.json"
SIZES = (4, 6, 12, 24)


def default_phonon_model() -> str:
    """The shipped phonon model once there is one, else the training run's current model."""
    shipped = ROOT / "assets" / "models" / "phonon"
    return str(shipped if shipped.is_dir() else ROOT / "runs" / "phonon_hedgenet" / "model")


def cells(sizes, twisted) -> list[tuple[str, object]]:
    """(name, displaced structure) sorted by atom count, so that GFN1's budget test extrapolates upwards."""
    out = []
    for n in sizes:
        out.append((f"AB {n}x{n}", supercell(bilayer("AB"), n)))
    for spec in twisted:
        m, k = (int(x) for x in spec.split(","))
        out.append((f"tbg {m},{k}", twisted_bilayer(m, k)))
    for i, (_, atoms) in enumerate(out):
        atoms.positions += np.random.default_rng(len(atoms)).normal(0.0, 0.03, atoms.positions.shape)
    return sorted(out, key=lambda x: len(x[1]))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phonon-model", default=default_phonon_model())
    p.add_argument("--electron-model", default=str(ROOT / "assets" / "models" / "electron"))
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="AB bilayer n x n cells")
    p.add_argument("--twisted", action="append", default=[], metavar="M,N", help="also this twisted cell")
    p.add_argument("--gfn1-budget-s", type=float, default=300.0, help="seconds per GFN1 SCF at most (predicted)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1 ...")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" \
        else torch.device(args.device)
    ml_force = load_model(args.phonon_model, kind="phonon", device=device, dtype=torch.float32)
    ml_h = load_model(args.electron_model, kind="electron", device=device, dtype=torch.float32)
    empirical, gfn1 = EmpiricalForceReference(), GFN1Reference()
    keys = ("ml_force_s", "ref_force_s", "gfn1_force_s", "ml_h_s", "ref_h_s")
    rows, last_gfn1 = [], None
    for name, atoms in cells(args.sizes, args.twisted):
        n = len(atoms)
        row = {"cell": name, "atoms": n, **{k: None for k in keys}}
        row["ml_force_s"] = median_time(lambda: ml_force.energies_forces([atoms]), args.repeats)
        row["ref_force_s"] = median_time(lambda: empirical.energies_forces([atoms]), args.repeats)
        row["ml_h_s"] = median_time(lambda: ml_h.blocks([atoms]), args.repeats)
        predicted = None if last_gfn1 is None else last_gfn1[1] * (n / last_gfn1[0]) ** 3
        if predicted is None or predicted <= args.gfn1_budget_s:
            t0 = time.perf_counter()
            result = gfn1.solve(atoms)  # SCF with energy and gradient: a force evaluation
            row["gfn1_force_s"] = time.perf_counter() - t0
            last_gfn1 = (n, row["gfn1_force_s"])
            try:
                check_cell_for_cutoff(atoms.cell, DEFAULT_RC)
                t0 = time.perf_counter()
                gfn1.split_blocks(atoms, result)
                row["ref_h_s"] = row["gfn1_force_s"] + time.perf_counter() - t0
            except ValueError:
                row["ref_h_note"] = f"cell too small for the r_c = {DEFAULT_RC} A block split"
        else:
            row["gfn1_predicted_s"] = predicted
        rows.append(row)
        print(f"{name:>10} {n:>6} atoms: " + ", ".join(
            f"{k[:-2]} {row[k]:.4g} s" if row[k] is not None else f"{k[:-2]} -" for k in keys), flush=True)
    atoms_n = [r["atoms"] for r in rows]
    col = lambda k: [r[k] for r in rows]  # noqa: E731
    fits = {"ml_h": exponent(atoms_n, col("ml_h_s")), "ref_h": exponent(atoms_n, col("ref_h_s")),
            "ml_force": exponent(atoms_n, col("ml_force_s")), "ref_force": exponent(atoms_n, col("ref_force_s")),
            "gfn1_force": exponent(atoms_n, col("gfn1_force_s"))}
    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                         f"{torch.get_num_threads()} torch threads, ML on {device}{gpu}",
              "cells": col("cell"), "atoms": atoms_n, **{k: col(k) for k in keys}, "exponents": fits,
              "rows": rows, "phonon_model": args.phonon_model, "electron_model": args.electron_model,
              "note": "seconds per structure; ML float32, median of repeats after a warm-up; GFN1 one SCF "
                      "(ref_h_s = SCF + block split); null: not measured"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(out)
    show = lambda v, f=".4f": "-" if v is None else format(v, f)  # noqa: E731
    print(f"\n{'cell':>10} {'atoms':>6} {'ML F (s)':>9} {'LCBOP+KC (s)':>13} {'GFN1 F (s)':>11} "
          f"{'ML H/S (s)':>11} {'GFN1 H/S (s)':>13}")
    for r in rows:
        print(f"{r['cell']:>10} {r['atoms']:>6} {show(r['ml_force_s']):>9} {show(r['ref_force_s']):>13} "
              f"{show(r['gfn1_force_s'], '.3g'):>11} {show(r['ml_h_s']):>11} {show(r['ref_h_s'], '.3g'):>13}")
    print("t ~ N^p: " + ", ".join(f"{k} {show(v, '.2f')}" for k, v in fits.items()) + f"\n-> {out}")


if __name__ == "__main__":
    main()
