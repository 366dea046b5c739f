"""Peak memory and the largest structures that fit: each job runs as its own process (the
mlepi command line), and its peak resident memory is the kernel's ru_maxrss of that child
(os.wait4, from a bare launcher), so every figure includes the interpreter, torch and the
loaded models.

Two families, each over growing cells, then a power-law fit of the memory above a bare
process that has only imported mlepi and loaded the models (``baseline``):
- ``mc``: one Monte Carlo sample of an n x n AB bilayer at 300 K (ML phonons of the sampling
  cell, HedgeNet-Electron H/S, the v_F probe's eigen-solves): `mlepi mc AB --supercell n`;
- ``bands``: the flat bands of a twisted (m, m+1) cell at Gamma, M, K by the sparse
  shift-invert solver from the Slater-Koster-trained HedgeNet-Electron: `mlepi tbg --mn m,m+1`.
The fit M(N) = baseline + c N^p gives the largest N under a memory budget: this machine's
memory (measured figures up to the largest cell run, extrapolated beyond) and, as an
estimate only, 80 GB (one H100's device memory; the GPU path holds the same arrays).
Writes benchmarks/results/memory.json and a table.

    nice .venv/bin/python benchmarks/memory.py [--mc 6 9 12] [--bands 10 20 30]
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "memory.json"
MLEPI = [sys.executable, "-m", "mlepi_core.cli"]
GIB = 1024 ** 3
H100_BYTES = 80e9


# A bare interpreter (-S) spawns the job and reports its rusage: Linux's ru_maxrss of a child
# also covers the image it was spawned from, so spawning from this process would put a floor
# of our own resident memory under every figure.
LAUNCH = ("import os, sys; pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ, file_actions="
          "[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]); _, st, ru = os.wait4(pid, 0); "
          "print(ru.ru_maxrss, os.waitstatus_to_exitcode(st))")


def run_child(cmd: list[str]) -> tuple[float, float]:
    """(peak resident bytes, wall seconds) of one job, ``cmd[0]`` an absolute path; raises if
    it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-S", "-c", LAUNCH, *cmd], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    try:
        maxrss_kib, code = (int(v) for v in proc.stdout.split())
    except ValueError:
        raise RuntimeError(f"{' '.join(cmd)}: no report from the launcher:\n{proc.stderr[-2000:]}") from None
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}):\n{proc.stderr[-2000:]}")
    return maxrss_kib * 1024.0, wall


def fit_power(n: list[int], mem: list[float], base: float) -> tuple[float, float]:
    """(c, p) of mem - base = c n^p, least squares in log-log."""
    x, y = np.log(np.asarray(n, float)), np.log(np.maximum(np.asarray(mem) - base, 1.0))
    p, logc = np.polyfit(x, y, 1)
    return float(np.exp(logc)), float(p)


def largest(base: float, c: float, p: float, budget: float) -> float:
    return float(((budget - base) / c) ** (1.0 / p)) if budget > base else 0.0


def summary(rows: list[dict], base: float, budget_here: float) -> dict:
    """Power-law fits per job family and the largest structures they predict."""
    fits = {}
    for job in ("mc", "bands"):
        sel = [r for r in rows if r["job"] == job]
        if len(sel) < 2:
            continue
        c, p = fit_power([r["atoms"] for r in sel], [r["peak_bytes"] for r in sel], base)
        fits[job] = {"c_bytes": c, "exponent": p,
                     "largest_atoms_here": largest(base, c, p, budget_here),
                     "largest_atoms_80GB_estimate": largest(base, c, p, H100_BYTES),
                     "largest_measured_atoms": max(r["atoms"] for r in sel)}
    return fits


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mc", type=int, nargs="+", default=[6, 9, 12], help="n x n sampling cells")
    ap.add_argument("--bands", type=int, nargs="+", default=[10, 20, 30], help="twisted cells (m, m+1)")
    ap.add_argument("--forces", default="assets/models/phonon")
    ap.add_argument("--electrons", default="assets/models/electron", help="the Monte Carlo electron model")
    ap.add_argument("--bands-electrons", default="assets/models/electron_sk", help="the flat-band model")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    from mlepi_core.structures import bilayer, supercell, twist_angle, twisted_bilayer

    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    budget_here = total - 2 * GIB  # leave the system 2 GiB
    with tempfile.TemporaryDirectory() as tmp:
        load = ("from mlepi_core.model_names import hamiltonian_model_from_name, force_model_from_name; "
                f"force_model_from_name({args.forces!r}); hamiltonian_model_from_name({args.electrons!r}); "
                f"hamiltonian_model_from_name({args.bands_electrons!r})")
        base, _ = run_child([sys.executable, "-c", load])
        print(f"baseline (imports + models): {base / GIB:.2f} GiB", flush=True)
        rows = []
        for n in args.mc:
            atoms = len(supercell(bilayer("AB"), n))
            cmd = MLEPI + ["mc", "AB", "--supercell", str(n), "--temperature", "300", "--samples", "1",
                           "--forces", args.forces, "--electrons", args.electrons, "--out", f"{tmp}/mc{n}"]
            mem, wall = run_child(cmd)
            rows.append({"job": "mc", "cell": f"AB {n}x{n}", "atoms": atoms, "peak_bytes": mem, "seconds": wall})
            print(f"mc    AB {n}x{n:<3} {atoms:>6} atoms: peak {mem / GIB:6.2f} GiB [{wall:.0f} s]", flush=True)
            write(args, rows, base, budget_here, total, complete=False)
        for m in args.bands:
            atoms = len(twisted_bilayer(m, m + 1))
            cmd = MLEPI + ["tbg", "--mn", f"{m},{m + 1}", "--electrons", args.bands_electrons,
                           "--out", f"{tmp}/tbg{m}.json", "--figure", f"{tmp}/tbg{m}.png"]
            mem, wall = run_child(cmd)
            rows.append({"job": "bands", "cell": f"tbg ({m}, {m + 1}) {twist_angle(m, m + 1):.3f} deg",
                         "atoms": atoms, "peak_bytes": mem, "seconds": wall})
            print(f"bands tbg ({m}, {m + 1}) {atoms:>6} atoms: peak {mem / GIB:6.2f} GiB [{wall:.0f} s]", flush=True)
            write(args, rows, base, budget_here, total, complete=False)
    write(args, rows, base, budget_here, total, complete=True)
    fits = summary(rows, base, budget_here)
    print(f"\n{'job':>6} {'cell':>26} {'atoms':>7} {'peak (GiB)':>11} {'time (s)':>9}")
    for r in rows:
        print(f"{r['job']:>6} {r['cell']:>26} {r['atoms']:>7} {r['peak_bytes'] / GIB:11.2f} {r['seconds']:9.0f}")
    for job, f in fits.items():
        print(f"{job}: peak - baseline ~ N^{f['exponent']:.2f}; largest here ~{f['largest_atoms_here']:,.0f} atoms, "
              f"80 GB (estimate) ~{f['largest_atoms_80GB_estimate']:,.0f} atoms")
    print(f"-> {args.out}")


def write(args, rows, base, budget_here, total, complete: bool) -> None:
    """The JSON so far (atomically; ``complete`` false while jobs remain)."""
    from mlepi_core.files import write_text_atomic

    result = {"complete": complete, "machine": f"{platform.machine()}, {os.cpu_count()} cores, {total / GIB:.1f} GiB",
              "baseline_bytes": base, "budget_here_bytes": budget_here, "rows": rows,
              "fits": summary(rows, base, budget_here),
              "models": {"forces": args.forces, "mc_electrons": args.electrons, "bands_electrons": args.bands_electrons},
              "note": "peak resident memory of each command as a child process (ru_maxrss); fits: "
                      "peak = baseline + c atoms^p; largest_*: where that reaches the budget (this machine: "
                      "its memory less 2 GiB; 80 GB: an estimate for one H100, not measured)"}
    write_text_atomic(args.out, json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
