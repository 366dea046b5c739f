"""Monte Carlo samples per second in the dashboard beside `mlepi mc`, same run, same machine.

The 6x6 AB bilayer at 300 K, LCBOP + KC phonons, the shipped GFN1-trained HedgeNet-Electron,
each side with its default batch size and spectral-map schedule: `mlepi mc` as a user
types it (its progress lines are time-stamped as they arrive), then `mlepi dashboard` driven
by Debian's Chromium through Playwright from a link with the same settings (Run clicked,
the progress line read every 0.5 s). Setup (phonons, the static lattice) is left out on
both sides: the rate is counted from the first report of at least ``--from`` finished
samples to the last sample, and the loop's rate over the batches that draw no averaged map. The CPU seconds the computing process and the whole machine
used in that window show where the rest of the machine's time went (the browser). Writes benchmarks/results/dashboard_throughput.json.

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
from attack_dashboard import server_env, start_server  # noqa: E402
from conftest import BROWSER_ARGS, CHROMIUM  # noqa: E402
from test_dashboard_browser import done_of, text_of, wait_for_text  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "dashboard_throughput.json"
POLL_S = 0.5  # the page's progress line is read this often (each read costs the browser a little)
ELECTRONS = ROOT / "assets" / "models" / "electron"


def rate(reports: list[tuple], start: int, total: int) -> dict:
    """Samples/s from the first report with at least ``start`` samples to the one with ``total``;
    reports are (time, finished samples, CPU seconds: whole machine, the computing process).
    ``loop_samples_per_s`` counts only the intervals between reports whose new samples draw
    no averaged A(k, E) (``engine.draws_spectrum``): the Monte Carlo loop itself."""
    from mlepi_core.engine import MCSettings, draws_spectrum

    first = next(r for r in reports if r[1] >= start)
    last = next(r for r in reports if r[1] >= total)
    wall = last[0] - first[0]
    every = MCSettings().spectral_every
    window = [r for r in reports if first[1] <= r[1] <= last[1]]
    loop_n = loop_s = 0.0
    for a, b in zip(window, window[1:]):
        if b[1] > a[1] and not any(draws_spectrum(j, every) for j in range(a[1], b[1])):
            loop_n, loop_s = loop_n + b[1] - a[1], loop_s + b[0] - a[0]
    return {"samples_per_s": (last[1] - first[1]) / wall, "from_sample": first[1], "to_sample": last[1],
            "seconds": wall, "cpu_s_machine": last[2] - first[2], "cpu_s_process": last[3] - first[3],
            "loop_samples_per_s": loop_n / loop_s, "loop_samples": int(loop_n), "loop_seconds": loop_s}


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds used so far by the whole machine (all cores) and by process ``pid``."""
    tick = os.sysconf("SC_CLK_TCK")
    fields = Path("/proc/stat").read_text().split("\n")[0].split()[1:]
    busy = sum(int(x) for i, x in enumerate(fields) if i not in (3, 4))  # all but idle, iowait
    proc = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return busy / tick, (int(proc[11]) + int(proc[12])) / tick  # utime, stime


def cli_reports(samples: int, out: Path) -> list[tuple[float, int]]:
    """(time, finished samples) of each progress line of an `mlepi mc` run."""
    cmd = [sys.executable, "-m", "mlepi_core.cli", "mc", "AB", "--forces", "empirical", "--electrons", str(ELECTRONS),
           "--supercell", "6", "--samples", str(samples), "--temperature", "300", "--out", str(out)]
    env = {**server_env(None), "TQDM_MININTERVAL": "0", "TQDM_MINITERS": "1"}  # a progress line per batch
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    reports, buf = [], b""
    while chunk := proc.stderr.read1(4096):
        now = time.perf_counter()
        buf += chunk
        *lines, buf = re.split(rb"[\r\n]", buf)
        cpu = cpu_seconds(proc.pid)
        # tqdm writes "\r" + line: a line is whole when it arrives, before the next "\r"
        for line in [*lines, buf]:
            m = re.search(rb"\| *(\d+)/\d+ \[", line)
            if m and (not reports or int(m.group(1)) > reports[-1][1]):
                reports.append((now, int(m.group(1)), *cpu))
    if proc.wait() != 0:
        raise SystemExit(f"mlepi mc failed: {buf.decode(errors='replace')[-2000:]}")
    return reports


def dashboard_reports(samples: int, log: Path) -> list[tuple[float, int]]:
    """(time, finished samples) read off the dashboard's progress line during one run."""
    from playwright.sync_api import sync_playwright

    url, proc = start_server(log, wait_policy=None,  # as scripts/start.sh serves it, on an empty runs directory
                             args=("--runs", str(log.parent / "runs")))
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
                    reports.append((time.perf_counter(), done, *cpu_seconds(proc.pid)))
                time.sleep(POLL_S)
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
              "loop_dashboard_over_cli": dash["loop_samples_per_s"] / cli["loop_samples_per_s"],
              "models": {"electrons": model_identity(str(ELECTRONS)), "forces": model_identity("empirical")},
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json.tmp").write_text(json.dumps(result, indent=1))
    OUT.with_suffix(".json.tmp").replace(OUT)
    print(f"{'':<10} {'samples/s':>10} {'samples':>10} {'seconds':>8} {'CPU s: process':>15} {'machine':>8} "
          f"{'loop samples/s':>15}")
    for name, r in (("mlepi mc", cli), ("dashboard", dash)):
        print(f"{name:<10} {r['samples_per_s']:10.3f} {r['from_sample']:>4}-{r['to_sample']:<5} {r['seconds']:8.1f} "
              f"{r['cpu_s_process']:15.1f} {r['cpu_s_machine']:8.1f} {r['loop_samples_per_s']:15.3f}")
    print(f"dashboard / CLI: {result['dashboard_over_cli']:.2f} (loop alone {result['loop_dashboard_over_cli']:.2f}); "
          f"wrote {OUT}")


if __name__ == "__main__":
    main()
