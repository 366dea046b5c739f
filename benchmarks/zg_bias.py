"""Where ZG's 0 K bias in v_F comes from (issue 29): the 6x6 AB bilayer, GFN1-trained electrons.

ZG (special displacements) differs from the Monte Carlo in two ways: every mode moves by
exactly +-sigma (fixed amplitudes, and for a pair (q, -q) a fixed phase), and the signs
follow Walsh rows lowered by sign flips. This script separates them, all on the shipped
HedgeNet-Phonon's phonons at T = 0 and in +-u pairs (odd orders cancel in each pair):

- gauss: the Monte Carlo itself (Gaussian normals, antithetic pairs, seed 7), to set beside
  the 500 plain seed-0 samples cached by benchmarks/zg_vs_mc.py;
- rademacher: ZG's amplitudes with independent random signs per mode (no Walsh structure);
- walsh: ZG's keyed Walsh start without the sign-flip descent;
- zg: the ZG configurations themselves (from the zg_vs_mc.py cache).

Every sign distribution here has E[s_nu s_nu'] = delta, so the four agree to second order in
the displacements: a difference is of fourth or higher order. ``scaling`` measures that order
directly: v_F of three Monte Carlo samples with their displacement scaled by +-eps.
``amplitude_controls``: how much of the Monte Carlo's variance regression on squared mode
amplitudes (|eta|^2 - <|eta|^2>, eta = E^dagger xi the mode amplitudes of the samples' normals,
summed per branch, per q, per frequency octile or in total; mean zero) removes, two-fold
cross-validated on the 500 cached seed-0 samples (the per-mode version of this is the curvature
estimator, mode_curvature.py).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/zg_bias.py    # ~15 min on one core

Writes benchmarks/results/zg_bias.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SCALES = (0.03, 0.1, 0.3, 1.0)


def pair_estimate(values: list[float]) -> dict:
    """Mean and standard error over +-u pair means (``zg_vs_mc.estimate``), and the pairs' spread."""
    from zg_vs_mc import estimate

    mean, se, pairs = estimate(values, "zg")  # consecutive +-u configurations are pairs
    return {"vf": mean, "vf_se": se, "configurations": len(values), "pair_std": se * float(np.sqrt(pairs))}


def amplitude_controls(sampler, vf: np.ndarray) -> dict:
    """Variance of v_F over that of the regression-adjusted v_F, per grouping of the squared
    standard normals of the samples (seed 0, j = 0 .. len(vf) - 1); coefficients fitted on one
    half and applied to the other, both ways."""
    from mlepi_core.mode_curvature import ModeCurvature

    rd = sampler._rd
    n = len(vf)
    modes = ModeCurvature(sampler)
    eta_a, eta_b = modes.amplitudes(np.arange(n), seed=0)  # mode amplitudes, (n, q, b)
    moving = modes.moving
    sq = np.concatenate([eta_a ** 2 - 1, np.abs(eta_b) ** 2 - 2], axis=1) * moving[None]
    freq = rd.frequencies[moving]
    octile = np.searchsorted(np.quantile(freq, np.linspace(0, 1, 9)[1:-1]), rd.frequencies)
    groups = {"total": sq.sum(axis=(1, 2))[:, None], "per_branch": sq.sum(axis=1), "per_q": sq.sum(axis=2),
              "per_frequency_octile": np.stack([(sq * (octile == k)[None]).sum(axis=(1, 2)) for k in range(8)], 1)}
    out = {}
    half = n // 2
    for name, x in groups.items():
        resid = []
        for fit, use in ((slice(0, half), slice(half, n)), (slice(half, n), slice(0, half))):
            beta, *_ = np.linalg.lstsq(np.c_[np.ones(len(vf[fit])), x[fit]], vf[fit], rcond=None)
            resid.append(vf[use] - x[use] @ beta[1:])
        out[name] = {"controls": x.shape[1], "variance_ratio": float(vf.var() / np.concatenate(resid).var())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rademacher", type=int, default=400)
    ap.add_argument("--walsh", type=int, default=32)
    ap.add_argument("--gauss", type=int, default=400)
    ap.add_argument("--controls-only", action="store_true",
                    help="add amplitude_controls to an existing zg_bias.json (no electron solves)")
    args = ap.parse_args()

    import mlepi_core as mlepi
    from mlepi_core.engine import MCSettings, MonteCarloEngine, prepare_lattice
    from mlepi_core.model_names import force_model_from_name, hamiltonian_model_from_name, model_identity

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from zg_vs_mc import load_cache, estimate

    t_start = time.perf_counter()
    forces, electrons = force_model_from_name("phonon"), hamiltonian_model_from_name("electron")
    atoms = mlepi.build("AB")
    lattice = prepare_lattice(atoms, forces, 6)

    def engine(**kw) -> MonteCarloEngine:
        return MonteCarloEngine(atoms, forces, electrons, MCSettings(temperatures=(0.0,), n_samples=2, supercell=6,
                                                                     spectral_every=0, **kw), lattice=lattice)

    probe = engine(sampling="zg")
    zg = probe.sampler.special
    shape = (zg.n_a + zg.n_b, zg.n_bands)

    def vf_of(displacements: np.ndarray) -> float:
        a = probe.sampler.ideal.copy()
        a.positions += displacements
        probe._sample_batch = lambda *_: [a]
        return float(probe.compute_batch(0.0, 0, 1)["vf"][0])

    def signed(signs_of, n: int, gauge: bool) -> list[float]:
        out = []
        for j in range(n):
            s = signs_of(j // 2) * (-1.0 if j % 2 else 1.0)
            out.append(vf_of(zg.displacements(0.0, s[None], gauge=gauge)[0]))
        return out

    cache = load_cache(RESULTS / "zg_vs_mc_samples.jsonl")
    plain_vf = np.array([r["vf"] for r in sorted((r for k, r in cache.items() if k[:4] == ("6x6", "electron", "mc", 0.0)),
                                                  key=lambda r: r["j"])])
    controls = amplitude_controls(probe.sampler, plain_vf)
    print("amplitude controls", controls, flush=True)
    if args.controls_only:
        path = RESULTS / "zg_bias.json"
        out = json.loads(path.read_text())
        out["amplitude_controls"] = controls
        path.write_text(json.dumps(out, indent=1))
        return
    rows = {}
    for sampling in ("mc", "zg"):
        recs = sorted((r for k, r in cache.items() if k[:4] == ("6x6", "electron", sampling, 0.0)), key=lambda r: r["j"])
        m, se, _ = estimate([r["vf"] for r in recs], sampling)
        rows["gauss_plain_seed0" if sampling == "mc" else "zg"] = {"vf": m, "vf_se": se, "configurations": len(recs)}
    t = time.perf_counter()
    rng_signs = lambda p: np.random.default_rng(np.random.SeedSequence([12345, p])).choice([-1.0, 1.0], size=shape)
    rows["rademacher"] = {**pair_estimate(signed(rng_signs, args.rademacher, gauge=False)),
                          "seconds": time.perf_counter() - t}
    print("rademacher", rows["rademacher"], flush=True)
    t = time.perf_counter()
    rows["walsh_no_descent"] = {**pair_estimate(signed(lambda p: zg.start(0, p), args.walsh, gauge=True)),
                                "seconds": time.perf_counter() - t}
    print("walsh", rows["walsh_no_descent"], flush=True)
    t = time.perf_counter()
    gauss = engine(antithetic=True, seed=7)
    values = []
    for first in range(0, args.gauss, 8):
        values += gauss.compute_batch(0.0, first, min(8, args.gauss - first))["vf"]
    rows["gauss_antithetic_seed7"] = {**pair_estimate(values), "seconds": time.perf_counter() - t}
    print("gauss", rows["gauss_antithetic_seed7"], flush=True)

    base = gauss.sampler.displacements(0.0, 0, 3, seed=0)
    v0 = vf_of(np.zeros_like(base[0]))
    scaling = []
    for u in base:
        shifts = {eps: 0.5 * (vf_of(eps * u) + vf_of(-eps * u)) - v0 for eps in SCALES}
        scaling.append({"even_shift": {str(e): s for e, s in shifts.items()},
                        "quartic_part_at_1": shifts[1.0] - shifts[0.3] / 0.3 ** 2})
    plain, anti = rows["gauss_plain_seed0"], rows["gauss_antithetic_seed7"]
    w = np.array([1 / plain["vf_se"] ** 2, 1 / anti["vf_se"] ** 2])
    mc = float((w * [plain["vf"], anti["vf"]]).sum() / w.sum())
    mc_se = float(w.sum() ** -0.5)
    diffs = {name: {"minus_mc": rows[name]["vf"] - mc,
                    "se": float(np.hypot(rows[name]["vf_se"], mc_se))}
             for name in ("rademacher", "walsh_no_descent", "zg")}
    out = {"protocol": "6x6 AB bilayer, T = 0 K, HedgeNet-Phonon phonons, GFN1-trained HedgeNet-Electron; +-u pairs",
           "electrons_identity": model_identity("electron"), "forces_identity": model_identity("phonon"),
           "vf_static": v0, "rows": rows, "monte_carlo_combined": {"vf": mc, "vf_se": mc_se}, "minus_mc": diffs,
           "scaling": scaling, "amplitude_controls": controls, "seconds": time.perf_counter() - t_start, "threads": "OMP_NUM_THREADS=1"}
    (RESULTS / "zg_bias.json").write_text(json.dumps(out, indent=1))
    print(json.dumps({"minus_mc": diffs, "scaling": scaling}, indent=1))


if __name__ == "__main__":
    main()
