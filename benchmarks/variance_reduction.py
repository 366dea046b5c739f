"""Variance reduction that counts (issue 29, item 2): samples each estimator needs for the
standard error of 500 plain Monte Carlo samples, v_F and gamma_1 of the 6x6 AB bilayer.

Estimators, all on the same keyed samples (seed 0) that benchmarks/zg_vs_mc.py caches:
- plain: the sample mean;
- cv-gamma: regression on the 12 standard normals at q = Gamma (``ThermalSampler.gamma_normals``),
  whose mean is exactly zero; by crystal momentum they carry the whole first-order response of a
  translation-invariant observable (``statistics.control_variate_mean``);
- cv-gamma2: the same plus z_i^2 - 1 (second order at Gamma, mean zero too);
- curvature: regression on the mode-curvature controls C(T) and L(T) (``mode_curvature.py``,
  the estimator of ``mlepi mc --estimator curvature``), with "variance_ratio_cv": the plain
  variance over that of the residuals with coefficients fitted on the other half (two-fold);
- zg: ZG pairs (special displacements), one unit per pair of configurations.
Samples needed = 500 * var(estimator per sample) / var(plain per sample), each variance from
the n samples at hand (the standard error times sqrt(n)).

    .venv/bin/python benchmarks/variance_reduction.py   # after (or during) benchmarks/zg_vs_mc.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TARGET = 500  # plain samples whose standard error is the target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cell", type=int, default=6)
    ap.add_argument("--cache", default=str(RESULTS / "zg_vs_mc_samples.jsonl"))
    args = ap.parse_args()

    import mlepi_core as mlepi
    from mlepi_core.engine import prepare_lattice
    from mlepi_core.model_names import force_model_from_name
    from mlepi_core.sampling import ThermalSampler
    from mlepi_core.statistics import control_variate_mean

    import sys
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from zg_vs_mc import load_cache

    from mlepi_core.engine import MCSettings, MonteCarloEngine
    from mlepi_core.model_names import hamiltonian_model_from_name

    cache = load_cache(Path(args.cache))
    cell = f"{args.cell}x{args.cell}"
    forces = force_model_from_name("phonon")
    lattice = prepare_lattice(mlepi.build("AB"), forces, args.cell)
    prim, phonon = lattice
    sampler = ThermalSampler(phonon, prim)
    engines = {}

    def curvature_engine(electrons: str) -> MonteCarloEngine:
        """An engine on the cached samples' structure and models, its curvatures measured."""
        if electrons not in engines:
            engines[electrons] = MonteCarloEngine(
                mlepi.build("AB"), forces, hamiltonian_model_from_name(electrons),
                MCSettings(supercell=args.cell, spectral_every=0, estimator="curvature", batch_size=8), lattice=lattice)
            engines[electrons].mode_curvature()
        return engines[electrons]
    rows = []
    for electrons, t in sorted({(k[1], k[3]) for k in cache if k[0] == cell}):
        mc = sorted((r for k, r in cache.items() if k[:4] == (cell, electrons, "mc", t)), key=lambda r: r["j"])
        zg = sorted((r for k, r in cache.items() if k[:4] == (cell, electrons, "zg", t)), key=lambda r: r["j"])
        if len(mc) < 30:
            continue
        idx = np.array([r["j"] for r in mc])
        z = np.concatenate([sampler.gamma_normals(int(j), 1, seed=0) for j in idx])
        for name in ("vf", "gamma1"):
            y = np.array([r[name] for r in mc])
            n = len(y)
            sd_plain = y.std(ddof=1)
            target_se = sd_plain / np.sqrt(TARGET)
            out = {"cell": cell, "electrons": electrons, "T": t, "observable": name, "n_mc": n,
                   "target_se": float(target_se), "estimators": {}}

            def add(label, mean, se, units, per_unit_samples):
                sd = se * np.sqrt(units)
                out["estimators"][label] = {"mean": float(mean), "se": float(se), "units": int(units),
                                            "samples_needed": float(per_unit_samples * (sd / target_se) ** 2)}

            add("plain", y.mean(), sd_plain / np.sqrt(n), n, 1)
            a, se = control_variate_mean(y, z)
            add("cv-gamma", a, se, n, 1)
            a, se = control_variate_mean(y, np.hstack([z, z ** 2 - 1]))
            add("cv-gamma2", a, se, n, 1)
            x = curvature_engine(electrons).controls(t, idx)[name]
            a, se = control_variate_mean(y, x)
            add("curvature", a, se, n, 1)
            half, resid = n // 2, []
            for fit, use in ((slice(0, half), slice(half, n)), (slice(half, n), slice(0, half))):
                beta, *_ = np.linalg.lstsq(np.c_[np.ones(len(y[fit])), x[fit]], y[fit], rcond=None)
                resid.append(y[use] - x[use] @ beta[1:])
            out["estimators"]["curvature"]["variance_ratio_cv"] = float(y.var(ddof=1) / np.concatenate(resid).var(ddof=1))
            if len(zg) >= 4:
                v = np.array([r[name] for r in zg])
                pairs = v[: len(v) // 2 * 2].reshape(-1, 2).mean(axis=1)
                add("zg", pairs.mean(), pairs.std(ddof=1) / np.sqrt(len(pairs)), len(pairs), 2)
            rows.append(out)
            print(f"{cell} {electrons} {t:.0f} K {name}: " + ", ".join(
                f"{k} {e['mean']:.5f}±{e['se']:.5f} ({e['samples_needed']:.0f})" for k, e in out["estimators"].items()),
                flush=True)
    (RESULTS / "variance_reduction.json").write_text(json.dumps(
        {"protocol": f"samples for the SE of {TARGET} plain samples, keyed seed-0 samples of zg_vs_mc.py",
         "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
