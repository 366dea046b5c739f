"""Monte Carlo samples per second in the dashboard beside `mlepi mc`, same run, same machine.

The 6x6 AB bilayer at 300 K, LCBOP + KC phonons, the shipped GFN1-trained HedgeNet-Electron,
each side with its default batch size and spectral-map schedule: `mlepi mc` as a user
types it (its progress lines are time-stamped as they arrive), then `mlepi dashboard` driven
by Debian's Chromium through Playwright from a link with the same settings (Run clicked,
the progress line read every 0.1 s). Setup (phonons, the static lattice) is left out on
both sides: the rate is counted from the first report of at least ``--from`` finished
samples to the last sample. Writes benchmarks/results/dashboard_throughput.json.

    .venv/bin/python benchmarks/dashboard_throughput.py [--samples 96]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]
from attack_dashboard import start_server  # noqa: E402
from conftest import BROWSER_ARGS, CHROMIUM  # noqa: E402
from test_dashboard_browser import done_of, text_of, wait_for_text  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "dashboard_throughput.json"
ELECTRONS = ROOT / "assets" / "models" / "electron"


def rate(reports: list[tuple[float, int]], start: int, total: int) -> dict:
    """Samples/s from the first report with at least ``start`` samples to the one with ``total``."""
    first = next((t, k) for t, k in reports if k >= start)
    last = next((t, k) for t, k in reports if k >= total)
    return {"samples_per_s": (last[1] - first[1]) / (last[0] - first[0]), "from_sample": first[1],
            "to_sample": last[1], "seconds": last[0] - first[0]}


def cli_reports(samples: int, out: Path) -> list[tuple[float, int]]:
    """(time, finished samples) of each progress line of an `mlepi mc` run."""
    cmd = [sys.executable, "-m", "mlepi_core.cli", "mc", "AB", "--forces", "empirical", "--electrons", str(ELECTRONS),
           "--supercell", "6", "--samples", str(samples), "--temperature", "300", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    reports, buf = [], b""
    while chunk := proc.stderr.read1(4096):
        now = time.perf_counter()
        buf += chunk
        *lines, buf = re.split(rb"[\r\n]", buf)
        reports += [(now, int(m.group(1))) for line in lines if (m := re.search(rb"\| *(\d+)/\d+ \[", line))]
    if proc.wait() != 0:
        raise SystemExit(f"mlepi mc failed: {buf.decode(errors='replace')[-2000:]}")
    return reports


def dashboard_reports(samples: int, log: Path) -> list[tuple[float, int]]:
    """(time, finished samples) read off the dashboard's progress line during one run."""
    from playwright.sync_api import sync_playwright

    url, proc = start_server(log)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url + f"?structure=AB&supercell=6&forces=empirical&electrons=ml&T=300&samples={samples}",
                      wait_until="load", timeout=180_000)
            wait_for_text(page, ".mlepi-phonon-status", lambda t: "force constants" in t, timeout=600)
            page.locator(".mlepi-run button").click()
            reports, done = [], 0
            deadline = time.time() + 3600
            while done < samples and time.time() < deadline:
                done = done_of(text_of(page, ".mlepi-progress"))
                if not reports or done != reports[-1][1]:
                    reports.append((time.perf_counter(), done))
                time.sleep(0.1)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=96)
    parser.add_argument("--from", dest="start", type=int, default=4,
                        help="count from the first report of at least this many samples (setup excluded)")
    args = parser.parse_args()
    from mlepi_core.model_names import model_identity

    tmp = Path(tempfile.mkdtemp(prefix="mlepi-throughput-"))
    cli = rate(cli_reports(args.samples, tmp / "mc"), args.start, args.samples)
    print(f"mlepi mc: {cli['samples_per_s']:.3f} samples/s", flush=True)
    dash = rate(dashboard_reports(args.samples, tmp / "server.log"), args.start, args.samples)
    print(f"dashboard: {dash['samples_per_s']:.3f} samples/s", flush=True)
    result = {"cell": "6x6 AB bilayer", "T": 300.0, "samples": args.samples, "cli": cli, "dashboard": dash,
              "dashboard_over_cli": dash["samples_per_s"] / cli["samples_per_s"],
              "models": {"electrons": model_identity(str(ELECTRONS)), "forces": model_identity("empirical")},
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json.tmp").write_text(json.dumps(result, indent=1))
    OUT.with_suffix(".json.tmp").replace(OUT)
    print(f"{'':<10} {'samples/s':>10} {'samples':>10} {'seconds':>8}")
    for name, r in (("mlepi mc", cli), ("dashboard", dash)):
        print(f"{name:<10} {r['samples_per_s']:10.3f} {r['from_sample']:>4}-{r['to_sample']:<5} {r['seconds']:8.1f}")
    print(f"dashboard / CLI: {result['dashboard_over_cli']:.2f}; wrote {OUT}")


if __name__ == "__main__":
    main()
