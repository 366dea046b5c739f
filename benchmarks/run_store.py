"""Runs that outlive the server, measured (issue 33): writes assets/results/runs.json.

1. Killed and resumed: a server process (a dashboard Session with a runs directory, the
   6x6 AB bilayer, Slater-Koster electrons, 60 samples at 300 K, seed 3) is killed with
   SIGKILL once its folder holds 4 or more samples; a second process with the same
   settings and runs directory continues the run; a third, with an empty runs directory,
   runs it straight. All three are started alike; the v_F of the continued run minus the
   straight one's is reported (tests/test_run_store_browser.py does the same in Chromium).
2. The Runs view with 200 runs in the store (copies of one run under other names): seconds
   to list them (read every run.json and draw the table, as the Runs tab's Refresh does) and
   to open one (overlay it from disk), the best of 3; and in Chromium against a dashboard
   served on that store, from the click on the Runs tab to the table of 200 runs, and from
   loading a link that names one run to the Runs tab showing it opened (page load included).

Run: ``python benchmarks/run_store.py``; prints a table.
"""

from __future__ import annotations

import json
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "assets" / "results" / "runs.json"
N_RUNS = 200
RUN = """
import sys
from mlepi_core.run_store import RunStore
from app.viewmodel import Session
RunStore.configure(sys.argv[1])
label = next(k for k in Session().system.param.electrons.objects if k.startswith("Slater-Koster p_z"))
s = Session(structure="AB bilayer", supercell=6, temperature=300.0, samples=60, seed=3, electrons=label)
s.monte_carlo.run()
s.wait(timeout=1200)
print(repr(s.monte_carlo.snapshot.vf))
"""


def server(runs: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RUN, str(runs)], cwd=ROOT, stdout=subprocess.PIPE, text=True)


def samples_on_disk(runs: Path) -> int:
    for record in runs.glob("*/run.json"):
        try:
            return json.loads(record.read_text())["temperatures"][0]["samples"]
        except (ValueError, KeyError, IndexError):
            return 0
    return 0


def killed_and_resumed(work: Path) -> dict:
    runs = work / "runs"
    first = server(runs)
    while samples_on_disk(runs) < 4:
        if first.poll() is not None:
            raise RuntimeError("the run ended before it could be killed")
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    on_disk = samples_on_disk(runs)
    continued = float(server(runs).communicate()[0].strip())
    straight = float(server(work / "fresh").communicate()[0].strip())
    return {"killed_at_samples": on_disk, "vf_continued": continued, "vf_straight": straight,
            "killed_and_resumed_vf_abs_diff": abs(continued - straight)}


def listing_and_opening(work: Path) -> dict:
    from app.viewmodel import Session
    from mlepi_core.run_store import RunStore

    (source,) = (work / "runs").iterdir()
    store = work / "store"
    for n in range(N_RUNS):
        shutil.copytree(source, store / f"run-{n:03d}")
    RunStore.configure(store)
    session = Session()
    list_s, open_s = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        session.runs.refresh()
        table = session.runs.table()
        list_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        session.runs.opened = [f"run-{len(open_s):03d}"]
        open_s.append(time.perf_counter() - t0)
    assert len(session.runs.listing) == N_RUNS and table.count("\n") >= N_RUNS and session.monte_carlo.pins
    return {"runs_in_store": N_RUNS, "list_s": min(list_s), "open_s": min(open_s)}


def page_timing(work: Path) -> dict:
    """Seconds, in Chromium, from a click on the Runs tab to the table of 200 runs on the page,
    and from loading a link that names one run to its overlay being on (the Runs tab's choice
    shows it), for a dashboard served on the 200-run store."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import BROWSER_ARGS, CHROMIUM, start_dashboard
    from playwright.sync_api import sync_playwright
    from test_dashboard_browser import text_of

    def wait(page, css, predicate, timeout=120.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate(text_of(page, css)):
                return time.perf_counter()
            time.sleep(0.02)
        raise RuntimeError(f"{css} did not show what was waited for")

    proc, url = start_dashboard(work / "store", work / "server.log")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(url, wait_until="load", timeout=120_000)
            wait(page, ".mlepi-summary", lambda t: "atoms" in t)
            t0 = time.perf_counter()
            page.locator(".mlepi-tabs .bk-tab", has_text="Runs").click()
            list_page_s = wait(page, ".mlepi-runs", lambda t: f"run-{N_RUNS - 1:03d}" in t) - t0
            t0 = time.perf_counter()
            page.goto(url + "?runs=run-007", wait_until="load", timeout=120_000)
            page.locator(".mlepi-tabs .bk-tab", has_text="Runs").click()
            open_page_s = wait(page, ".mlepi-runs-open", lambda t: "run-007" in t) - t0
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {"list_page_s": list_page_s, "open_page_s": open_page_s}


def main() -> dict:
    with tempfile.TemporaryDirectory(prefix="mlepi-runs-") as tmp:
        work = Path(tmp)
        result = {"machine": f"{platform.node()}, {platform.processor() or platform.machine()}",
                  **killed_and_resumed(work), **listing_and_opening(work), **page_timing(work)}
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"killed at {result['killed_at_samples']} samples; continued v_F {result['vf_continued']!r}, "
          f"straight {result['vf_straight']!r}, |diff| {result['killed_and_resumed_vf_abs_diff']}")
    print(f"{N_RUNS} runs: list {result['list_s']:.3f} s, open one {result['open_s']:.3f} s (server side); "
          f"in Chromium: the Runs tab's table {result['list_page_s']:.2f} s after the click, a link naming one "
          f"run loaded with it in {result['open_page_s']:.2f} s")
    return result


if __name__ == "__main__":
    main()
