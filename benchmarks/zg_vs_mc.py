"""ZG special displacements against Monte Carlo: v_F and gamma_1 of the AB bilayer (issue 29).

Forces from the shipped HedgeNet-Phonon; electrons from the GFN1-trained HedgeNet-Electron
("electron") and the Slater-Koster p_z reference ("slater-koster"), at 0 and 300 K. Per
(cell, electrons): ZG pairs with amplitudes +-sigma ("zg", the method's own), ZG blocks with
Gauss-Hermite amplitudes ("zg-gh", exact to fourth order) and Monte Carlo samples (seed 0,
keyed), taken in rounds so that a stopped run holds balanced partial results. Every sample
is appended to a cache (JSON lines) as it finishes, with its seconds; a rerun skips what the
cache holds, so the script is resumable:

    OMP_NUM_THREADS=1 nohup .venv/bin/python benchmarks/zg_vs_mc.py > benchmarks/results/zg_vs_mc.log 2>&1 &

It writes benchmarks/results/zg_vs_mc.json and a Markdown table (zg_vs_mc.md) after every round.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def load_cache(path: Path) -> dict:
    """{(cell, electrons, sampling, T, j): record} from the JSON-lines cache."""
    out = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                out[(r["cell"], r["electrons"], r["sampling"], r["T"], r["j"])] = r
    return out


RULE_UNIT = {"zg": 2, "zg-gh": 6}  # configurations per independent unit
SUFFIX = {"zg": "zg", "zg-gh": "zggh", "mc": "mc"}  # sampling -> column suffix


def estimate(values: np.ndarray, sampling: str) -> tuple[float, float, int]:
    """Mean, standard error and number of independent units (the engine's: ZG pair or block means)."""
    from mlepi_core.statistics import estimator_units

    v = estimator_units(np.arange(len(values)), values, sampling=sampling)
    se = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
    return float(np.mean(values)) if len(v) else float("nan"), se, len(v)


def summarise(cache: dict, static: dict) -> list[dict]:
    rows = []
    keys = sorted({k[:2] + (k[3],) for k in cache})
    for cell, electrons, t in keys:
        row = {"cell": cell, "electrons": electrons, "T": t, **static.get(f"{cell}/{electrons}", {})}
        for sampling, suffix in SUFFIX.items():
            recs = sorted((r for k, r in cache.items() if k[:4] == (cell, electrons, sampling, t)),
                          key=lambda r: r["j"])
            for name in ("vf", "gamma1"):
                m, se, n = estimate([r[name] for r in recs], sampling)
                row[f"{name}_{suffix}"], row[f"{name}_{suffix}_se"] = m, se
            row[f"n_{suffix}"] = len(recs)
            row[f"seconds_{suffix}"] = float(sum(r["seconds"] for r in recs))
            if sampling != "mc":
                row[f"{suffix}_error_function"] = [r.get("zg_error") for r in recs[::RULE_UNIT[sampling]]]
        for name in ("vf", "gamma1"):
            for suffix in ("zg", "zggh"):
                d = row[f"{name}_{suffix}"] - row[f"{name}_mc"]
                row[f"{name}_{suffix}_diff_in_mc_se"] = d / row[f"{name}_mc_se"] if row[f"{name}_mc_se"] > 0 else float("nan")
        rows.append(row)
    return rows


def write(rows: list[dict], meta: dict) -> None:
    (RESULTS / "zg_vs_mc.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
    lines = ["| cell | electrons | T (K) | ZG rule | v_F ZG (10^6 m/s) | v_F MC | (ZG-MC)/SE | gamma_1 ZG (eV) | "
             "gamma_1 MC | (ZG-MC)/SE | ZG configs, s | MC samples, s |", "|" + "---|" * 12]
    for r in rows:
        for suffix, rule in (("zg", "+-sigma"), ("zggh", "Gauss-Hermite")):
            if not r[f"n_{suffix}"]:
                continue
            lines.append(f"| {r['cell']} | {r['electrons']} | {r['T']:.0f} | {rule} | "
                         f"{r[f'vf_{suffix}']:.5f} ± {r[f'vf_{suffix}_se']:.5f} | "
                         f"{r['vf_mc']:.5f} ± {r['vf_mc_se']:.5f} | {r[f'vf_{suffix}_diff_in_mc_se']:+.2f} | "
                         f"{r[f'gamma1_{suffix}']:.5f} ± {r[f'gamma1_{suffix}_se']:.5f} | "
                         f"{r['gamma1_mc']:.5f} ± {r['gamma1_mc_se']:.5f} | {r[f'gamma1_{suffix}_diff_in_mc_se']:+.2f} | "
                         f"{r[f'n_{suffix}']}, {r[f'seconds_{suffix}']:.0f} | {r['n_mc']}, {r['seconds_mc']:.0f} |")
    (RESULTS / "zg_vs_mc.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, nargs="+", default=[6, 9])
    ap.add_argument("--electrons", nargs="+", default=["electron", "slater-koster"])
    ap.add_argument("--temperatures", type=float, nargs="+", default=[0.0, 300.0])
    ap.add_argument("--zg", type=int, default=8, help="ZG configurations (4 pairs of sign patterns)")
    ap.add_argument("--zg-gh", type=int, default=48, help="Gauss-Hermite ZG configurations (8 blocks of six)")
    ap.add_argument("--mc", type=int, default=500, help="Monte Carlo samples")
    ap.add_argument("--round", type=int, default=20, help="Monte Carlo samples per (electrons, T) per round")
    ap.add_argument("--cache", default=str(RESULTS / "zg_vs_mc_samples.jsonl"))
    args = ap.parse_args()

    import mlepi_core as mlepi
    from mlepi_core.engine import MCSettings, MonteCarloEngine, prepare_lattice
    from mlepi_core.model_names import force_model_from_name, hamiltonian_model_from_name, model_identity

    cache_path = Path(args.cache)
    cache = load_cache(cache_path)
    forces = force_model_from_name("phonon")
    meta = {"protocol": "issue 29: ZG pairs vs keyed Monte Carlo (seed 0), AB bilayer",
            "forces": "phonon", "forces_identity": model_identity("phonon"),
            "electrons_identity": {e: model_identity(e) for e in args.electrons},
            "threads": "OMP_NUM_THREADS=1", "machine": "2-core CPU shared with other jobs"}
    static = {}

    def record(engine, cell, electrons, sampling, t, j):
        key = (cell, electrons, sampling, t, j)
        if key in cache:
            return
        t0 = time.perf_counter()
        res = engine.compute_batch(t, j, 1)
        r = {"cell": cell, "electrons": electrons, "sampling": sampling, "T": t, "j": j,
             "vf": res["vf"][0], "gamma1": res["gamma1"][0], "seconds": time.perf_counter() - t0}
        if sampling != "mc":
            rule = {"zg": "sign", "zg-gh": "gauss-hermite"}[sampling]
            r["zg_error"] = engine.sampler.special.configuration(t, engine.settings.seed, j // 2, rule).error
        cache[key] = r
        with cache_path.open("a") as fh:
            fh.write(json.dumps(r) + "\n")

    for n in args.cells:
        cell = f"{n}x{n}"
        atoms = mlepi.build("AB")
        t0 = time.perf_counter()
        lattice = prepare_lattice(atoms, forces, n)
        print(f"{cell}: lattice {time.perf_counter() - t0:.0f} s", flush=True)
        engines = {}
        for electrons in args.electrons:
            for sampling in SUFFIX:
                settings = MCSettings(temperatures=tuple(args.temperatures), n_samples=6 * max(args.mc, args.zg, args.zg_gh), supercell=n,
                                      spectral_every=0, sampling=sampling)
                engines[electrons, sampling] = MonteCarloEngine(atoms, forces, hamiltonian_model_from_name(electrons),
                                                                settings, lattice=lattice)
            e = engines[electrons, "mc"]
            static[f"{cell}/{electrons}"] = {"vf_static": e.static["vf"], "gamma1_static": e.static["gamma1"]}
        for electrons in args.electrons:  # ZG first: a few configurations each
            for t in args.temperatures:
                for sampling, count in (("zg", args.zg), ("zg-gh", args.zg_gh)):
                    t0 = time.perf_counter()
                    for j in range(count):
                        record(engines[electrons, sampling], cell, electrons, sampling, t, j)
                    print(f"{cell} {electrons} {t:.0f} K: {sampling} {count} configs "
                          f"({time.perf_counter() - t0:.0f} s)", flush=True)
        write(summarise(cache, static), meta)
        for first in range(0, args.mc, args.round):
            for electrons in args.electrons:
                for t in args.temperatures:
                    for j in range(first, min(first + args.round, args.mc)):
                        record(engines[electrons, "mc"], cell, electrons, "mc", t, j)
            write(summarise(cache, static), meta)
            print(f"{cell}: MC {min(first + args.round, args.mc)} samples per (electrons, T)", flush=True)


if __name__ == "__main__":
    main()
