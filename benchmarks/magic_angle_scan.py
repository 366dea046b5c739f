"""Where is the magic angle of the Slater-Koster p_z model? The width of the four central
bands of rigid commensurate (m, m+1) twisted bilayers over Gamma, M and K of the moire cell
(exact reference, labelled sparse shift-invert; mlepi_core.moire) against the twist, beside
the Bistritzer-MacDonald continuum model built from the same parameters (its central width
at the same three points, and its first magic angle: the first minimum of the K_m
velocity). Writes benchmarks/results/magic_angle_scan.json, a table and a PNG.

    nice .venv/bin/python benchmarks/magic_angle_scan.py [--m 24 25 ... 33] [--distance 3.38]

The layers are flat and ``--distance`` apart: by default the force field's AB equilibrium
(3.38 A, mlepi_core.units.BILAYER_D), the spacing of every bilayer mlepi builds. The
magic angle moves with it (w ~ exp(-d / 0.45 A)): at the parametrisation's 3.35 A the
narrowest cell is (26, 27), 1.248 deg.

Each cell of 7,000-13,000 atoms takes 10-20 s on one core.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before numpy/torch start OpenMP

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from mlepi_core import moire
from mlepi_core.continuum import ContinuumModel, dirac_hbar_v, first_magic_angle, interlayer_w
from mlepi_core.files import write_atomic, write_text_atomic
from mlepi_core.reference.slater_koster import SlaterKosterPz
from mlepi_core.structures import twist_angle, twisted_bilayer
from mlepi_core.units import BILAYER_D

OUT = Path(__file__).parent / "results" / "magic_angle_scan.json"


def continuum_width_mev(theta: float, hv: float, w: float) -> float:
    """Central width (meV) of the continuum model over its moire Gamma, M, K, both valleys
    (the four states nearest the Dirac point at each): the tight-binding definition."""
    model = ContinuumModel(theta, hv, w, w)
    kt = model.k_theta
    points = np.array([[np.sqrt(3) / 2 * kt, kt / 2], [0.0, kt / 2], [0.0, 0.0]])  # Gamma, M, K
    e = np.sort(np.concatenate([model.bands(points, 8), model.bands(2 * points[0] - points, 8)], axis=1), axis=1)
    mid = e.shape[1] // 2
    return float(1e3 * (e[:, mid - 2: mid + 2].max() - e[:, mid - 2: mid + 2].min()))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--m", type=int, nargs="+", default=list(range(24, 34)), help="cells (m, m+1)")
    p.add_argument("--distance", type=float, default=BILAYER_D, help="interlayer distance (A)")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    reference, hv, w = SlaterKosterPz(), dirac_hbar_v(), interlayer_w(args.distance)
    rows = []
    for m in args.m:
        atoms = twisted_bilayer(m, m + 1, d=args.distance)
        theta = twist_angle(m, m + 1)
        k = np.array(list(moire.moire_k_points(atoms.cell).values()))
        t = time.perf_counter()
        e = moire.bands_near_neutrality(reference, atoms, k, 8).relative_mev()
        row = {"mn": [m, m + 1], "angle_deg": theta, "atoms": len(atoms),
               "ref_width_mev": moire.central_width(e), "ref_gaps_mev": list(moire.remote_gaps(e)),
               "continuum_width_mev": continuum_width_mev(theta, hv, w),
               "continuum_k_velocity_1e6_m_s": abs(ContinuumModel(theta, hv, w, w).k_point_velocity()),
               "seconds": time.perf_counter() - t}
        rows.append(row)
        print(f"({m}, {m + 1}) {theta:.4f} deg, {len(atoms)} atoms: reference width {row['ref_width_mev']:.2f} meV, "
              f"continuum {row['continuum_width_mev']:.2f} meV [{row['seconds']:.0f} s]", flush=True)
    magic, v_magic = first_magic_angle(theta_range=(0.9, 1.4), steps=26, d=args.distance)
    best = min(rows, key=lambda r: r["ref_width_mev"])
    result = {"machine": f"{platform.node()} ({os.cpu_count()} cores)", "distance_a": args.distance,
              "reference": repr(reference), "hbar_v_ev_a": hv, "w_ev": w,
              "continuum_magic_angle_deg": magic, "continuum_magic_k_velocity_1e6_m_s": v_magic,
              "reference_narrowest": {"angle_deg": best["angle_deg"], "mn": best["mn"],
                                      "width_mev": best["ref_width_mev"]},
              "magic_angle_difference_deg": abs(best["angle_deg"] - magic), "cells": rows}
    write_text_atomic(args.out, json.dumps(result, indent=1))

    print(f"\n{'(m, n)':>9} {'angle':>7} {'atoms':>6} {'SK width':>9} {'BM width':>9}  (meV, Gamma/M/K)")
    for r in rows:
        print(f"{str(tuple(r['mn'])):>9} {r['angle_deg']:7.4f} {r['atoms']:6d} {r['ref_width_mev']:9.2f} "
              f"{r['continuum_width_mev']:9.2f}")
    print(f"narrowest reference bands at {best['angle_deg']:.4f} deg; continuum first magic angle "
          f"{magic:.4f} deg (|v(K_m)| {v_magic:.4f} 10^6 m/s); difference "
          f"{result['magic_angle_difference_deg']:.3f} deg")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    th = [r["angle_deg"] for r in rows]
    ax.plot(th, [r["ref_width_mev"] for r in rows], "o-", label="Slater-Koster p_z (tight binding)")
    ax.plot(th, [r["continuum_width_mev"] for r in rows], "s--", label="continuum (same parameters)")
    ax.axvline(magic, color="0.5", lw=0.8, ls=":", label=f"continuum magic angle {magic:.3f}°")
    ax.set(xlabel="twist angle (deg)", ylabel="central-band width (meV)",
           title=f"Rigid twisted bilayer (d = {args.distance} Å): four central bands")
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_atomic(Path(args.out).with_suffix(".png"), lambda tmp: fig.savefig(tmp, dpi=130, format="png"))
    print(f"wrote {args.out} and its .png")


if __name__ == "__main__":
    main()
