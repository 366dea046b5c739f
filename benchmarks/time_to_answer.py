"""Time to the Fig. 4f curve (issue 29): v_F of the 6x6 AB bilayer at the paper's six
temperatures (0, 60, ..., 300 K), each with at most the standard error of 500 plain Monte
Carlo samples, from the CLI, in one run on one machine:

- plain: ``mlepi mc`` with 500 samples per temperature (the paper's protocol, seed 0);
- curvature: ``mlepi mc --estimator curvature --target-se S`` (seed 1, independent samples),
  S the smallest of the plain run's six standard errors; each temperature stops at its first
  batch with a standard error at or below S.

Both with the shipped HedgeNet-Phonon phonons and GFN1-trained HedgeNet-Electron, the CLI's
defaults otherwise (batches of 4, A(k, E) every 32nd sample at 30 points per segment), the
wall time of each whole command (model loading, phonons, curvatures, samples, writing).
The ZG rows (the method's own +-sigma amplitudes in ``zg_vs_mc``; mlepi's Gauss-Hermite
amplitudes in ``zg_gh_vs_mc``), the loop speeds and the dashboard's time to one
temperature are those measured by benchmarks/zg_vs_mc.py, benchmarks/dashboard_throughput.py
and benchmarks/dashboard_one_temperature.py, copied with their sources.

    .venv/bin/python benchmarks/time_to_answer.py            # ~30 min here, on a quiet machine
    .venv/bin/python benchmarks/time_to_answer.py --reuse-plain   # the plain run already in --work
    .venv/bin/python benchmarks/time_to_answer.py --collect  # keep the timed runs, recopy the rest

Writes benchmarks/results/time_to_answer.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TEMPERATURES = (0.0, 60.0, 120.0, 180.0, 240.0, 300.0)
PLAIN_SAMPLES = 500


def mc(out: Path, *extra: str) -> float:
    """Run ``mlepi mc`` on the 6x6 AB bilayer into ``out``; its wall time in seconds."""
    cmd = [str(ROOT / ".venv" / "bin" / "mlepi"), "mc", "AB", "--forces", "phonon", "--electrons", "electron",
           "--supercell", "6", "--temperature", *[f"{t:g}" for t in TEMPERATURES], "--out", str(out), *extra]
    print(" ".join(cmd), flush=True)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def rows(out: Path) -> dict[float, dict]:
    return {row["T"]: row["ml"] for row in json.loads((out / "results.json").read_text())["temperatures"]}


def timed_runs(args) -> tuple[list[dict], float, float, float]:
    """The plain and the curvature runs, timed: per-temperature rows, both wall times, the target SE."""
    work = Path(args.work)
    plain_dir, curvature_dir = work / "plain", work / "curvature"
    timing = work / "plain_seconds.json"
    if args.reuse_plain and timing.is_file():
        plain_s = json.loads(timing.read_text())["seconds"]
    else:
        plain_s = mc(plain_dir, "--samples", str(PLAIN_SAMPLES), "--seed", "0")
        timing.write_text(json.dumps({"seconds": plain_s}))
    plain = rows(plain_dir)
    target = min(r["vf_se"] for r in plain.values())
    curvature_s = mc(curvature_dir, "--samples", str(PLAIN_SAMPLES), "--seed", "1", "--estimator", "curvature",
                     "--target-se", f"{target:.8f}")
    fast = rows(curvature_dir)
    per_t = []
    for t in TEMPERATURES:
        f, p = fast[t], plain[t]
        per_t.append({"T": t, "vf": f["vf"], "vf_se": f["vf_se"], "samples_or_configs": f["samples"],
                      "vf_plain": p["vf"], "vf_plain_se": p["vf_se"], "plain_samples": p["samples"],
                      "difference_in_combined_se": (f["vf"] - p["vf"]) / (f["vf_se"] ** 2 + p["vf_se"] ** 2) ** 0.5,
                      "gamma1": f["gamma1"], "gamma1_se": f["gamma1_se"],
                      "gamma1_plain": p["gamma1"], "gamma1_plain_se": p["gamma1_se"]})
    return per_t, plain_s, curvature_s, target


def copied(MCSettings, model_identity) -> dict:
    """What other benchmarks measured: ZG against Monte Carlo, the loop speeds, the dashboard's one temperature."""
    zg = json.loads((RESULTS / "zg_vs_mc.json").read_text())
    loop = json.loads((RESULTS / "dashboard_throughput.json").read_text())
    one = RESULTS / "dashboard_one_temperature.json"

    def zg_rows(suffix):
        return [{"cell": r["cell"], "electrons": r["electrons"], "T": r["T"], "vf_zg": r[f"vf_{suffix}"],
                 "vf_zg_se": r[f"vf_{suffix}_se"], "gamma1_zg": r[f"gamma1_{suffix}"],
                 "gamma1_zg_se": r[f"gamma1_{suffix}_se"], "vf_mc": r["vf_mc"], "vf_mc_se": r["vf_mc_se"],
                 "gamma1_mc": r["gamma1_mc"], "gamma1_mc_se": r["gamma1_mc_se"], "n_zg": r[f"n_{suffix}"],
                 "n_mc": r["n_mc"], "seconds_zg": r[f"seconds_{suffix}"]}
                for r in zg["rows"] if r[f"n_{suffix}"] and r["n_mc"]]

    return {"zg_rule": "+-sigma (mlepi mc --sampling zg)", "zg_vs_mc": zg_rows("zg"),
            "zg_gh_vs_mc": zg_rows("zggh"), "zg_source": "benchmarks/results/zg_vs_mc.json",
            # the loop: batches without an averaged map; the whole run: with its maps (every 32nd sample)
            "loop_samples_per_s": {"cli": loop["cli"]["loop_samples_per_s"],
                                   "dashboard": loop["dashboard"]["loop_samples_per_s"],
                                   "cli_whole_run": loop["cli"]["samples_per_s"],
                                   "dashboard_whole_run": loop["dashboard"]["samples_per_s"]},
            "loop_source": "benchmarks/results/dashboard_throughput.json",
            "dashboard_one_temperature": json.loads(one.read_text()) if one.is_file() else None,
            "spectral_points_per_segment": MCSettings().path_points,
            "forces_identity": model_identity("phonon"), "electrons_identity": model_identity("electron")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=str(ROOT / "results" / "time_to_answer"))
    ap.add_argument("--reuse-plain", action="store_true", help="take the plain run (and its time) from --work")
    ap.add_argument("--collect", action="store_true",
                    help="keep the timed runs of the last time_to_answer.json, recopy the other benchmarks' results")
    args = ap.parse_args()
    from mlepi_core.engine import MCSettings
    from mlepi_core.model_names import model_identity

    if args.collect:  # the two timed runs as last measured; the copied parts anew
        out = {**json.loads((RESULTS / "time_to_answer.json").read_text()), **copied(MCSettings, model_identity)}
        per_t, plain_s, curvature_s, target = out["per_T"], out["plain_mc_s"], out["best_s"], out["target_se"]
    else:
        per_t, plain_s, curvature_s, target = timed_runs(args)
        out = {
            "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.platform()}",
            "threads": os.environ.get("OMP_NUM_THREADS", "default"),
            "protocol": "6 T x SE of 500 samples", "temperatures": list(TEMPERATURES),
            "plain_mc_s": plain_s, "best_s": curvature_s, "speedup": plain_s / curvature_s,
            "estimator": "curvature (mlepi mc --estimator curvature --target-se)", "target_se": target,
            "per_T": per_t, **copied(MCSettings, model_identity),
            "commands": {"plain": f"mlepi mc AB --forces phonon --electrons electron --supercell 6 --temperature "
                                  f"{' '.join(f'{t:g}' for t in TEMPERATURES)} --samples 500 --seed 0",
                         "curvature": "... --samples 500 --seed 1 --estimator curvature --target-se <target_se>"},
        }
    (RESULTS / "time_to_answer.json").write_text(json.dumps(out, indent=1))
    lines = ["| T (K) | v_F curvature (10^6 m/s) | samples | v_F plain, 500 samples | difference / combined SE |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['T']:g} | {r['vf']:.5f} ± {r['vf_se']:.5f} | {r['samples_or_configs']} | "
              f"{r['vf_plain']:.5f} ± {r['vf_plain_se']:.5f} | {r['difference_in_combined_se']:+.2f} |" for r in per_t]
    lines += ["", f"Wall time: plain {plain_s:.0f} s, curvature {curvature_s:.0f} s ({plain_s / curvature_s:.1f}x); "
                  f"target standard error {target:.6f}."]
    (RESULTS / "time_to_answer.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
