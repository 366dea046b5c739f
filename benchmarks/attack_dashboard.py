"""The dashboard attacked as a careless or hostile user would (issue 32), rerunnable.

Starts `mlepi dashboard` on a free localhost port (or takes --url, with --pid for its
memory) and drives Debian's Chromium through Playwright, only on localhost: 45,000- and
200,000-atom graphene uploads while a second tab runs Monte Carlo, absurd link values,
a file over the upload limit, a MoS2 bilayer, and the server's memory after 20 uploads
in 5 tabs that are then closed. Prints a table and writes
benchmarks/results/attack_dashboard.json.

    .venv/bin/python benchmarks/attack_dashboard.py [--url http://localhost:5006/ --pid PID]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import ase.build
from ase.io import write

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from conftest import BROWSER_ARGS, CHROMIUM  # noqa: E402
from test_dashboard_browser import done_of, text_of, wait_for_text  # noqa: E402
from test_dashboard_reliability import mos2_bilayer  # noqa: E402

from mlepi_core.limits import LIMITS  # noqa: E402

ABSURD = ["T=-5", "T=nan", "T=1e400", "samples=1000000000", "supercell=999", "electrons=/etc", "seed=-1",
          "structure=%3Cscript%3Ealert(1)%3C/script%3E", "mode=999,999", "mode=10,2", "antithetic=7", "unit=%00"]


def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def alive(url: str) -> bool:
    try:
        return urllib.request.urlopen(url, timeout=60).status == 200
    except OSError:
        return False


def graphene(n: int, a: float = 2.46) -> bytes:
    """extxyz of an n x n monolayer (2 n^2 atoms)."""
    buf = io.StringIO()
    write(buf, ase.build.graphene(a=a, size=(n, n, 1), vacuum=10.0), format="extxyz")
    return buf.getvalue().encode()


def server_env(wait_policy: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    return env if wait_policy is None else {**env, "OMP_WAIT_POLICY": wait_policy}


def start_server(log: Path, wait_policy: str | None = "PASSIVE", args: tuple[str, ...] = ()
                 ) -> tuple[str, subprocess.Popen]:
    """`mlepi dashboard` on a free localhost port, its output in ``log``; ``wait_policy``: the
    server's OMP_WAIT_POLICY (None: OpenMP's default, as scripts/start.sh serves it); ``args``:
    more of its flags."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mlepi_core.cli", "dashboard", "--port", str(port), *args], cwd=ROOT,
                            env=server_env(wait_policy), stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}/"
    deadline = time.time() + 180
    while not alive(url):
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit(f"the dashboard did not start: {log.read_text()[-2000:]}")
        time.sleep(0.5)
    return url, proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running dashboard (default: start one)")
    parser.add_argument("--pid", type=int, help="its process id, for the memory check")
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--tabs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "attack_dashboard.json")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="mlepi-attack-"))
    log = tmp / "server.log"
    proc = None
    url, pid = args.url, args.pid
    if url is None:
        url, proc = start_server(log)
        pid = proc.pid
    rows: list[dict] = []

    def row(attack: str, outcome: str, ok: bool, **numbers):
        rows.append({"attack": attack, "outcome": outcome, "ok": bool(ok), **numbers})
        print(f"{'ok ' if ok else 'BAD'}  {attack:<34} {outcome}", flush=True)

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)

            def page_at(query: str = ""):
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(url + query, wait_until="load", timeout=180_000)
                wait_for_text(page, ".mlepi-summary", lambda t: "atoms" in t, timeout=180)
                return page

            def upload(page, name: str, data: bytes, until, timeout: float = 180) -> str:
                path = tmp / name
                path.write_bytes(data)
                page.locator(".mlepi-upload input[type=file]").set_input_files(str(path))
                return wait_for_text(page, ".mlepi-message", until, timeout=timeout)

            first = page_at("?supercell=3")
            wait_for_text(first, ".mlepi-phonon-status", lambda t: "force constants" in t, timeout=300)
            rss_first = rss_mb(pid)
            row("first page", f"server RSS {rss_first} MB", True, rss_mb=rss_first)

            runner = page_at("?supercell=3&samples=2000&T=300")  # a second user's run goes on throughout
            runner.locator(".mlepi-run button").click()
            wait_for_text(runner, ".mlepi-progress", lambda t: done_of(t) >= 2, timeout=300)

            for n_cells in (150, 317):  # 45,000 and 200,978 atoms
                n_atoms = 2 * n_cells ** 2
                before = done_of(text_of(runner, ".mlepi-progress"))
                t0 = time.time()
                name = f"graphene_{n_atoms}.extxyz"
                message = upload(first, name, graphene(n_cells), lambda t, name=name: name in t and "Reading" not in t)
                if "Loaded" in message:  # taken: the page says what it can do with it
                    message += " | " + wait_for_text(first, ".mlepi-phonon-status", lambda t: "phonons" in t.lower())
                seconds = time.time() - t0
                fresh = page_at("?supercell=3")
                fresh.close()
                time.sleep(2.0)
                after = done_of(text_of(runner, ".mlepi-progress"))
                ok = alive(url) and after > before and "Traceback" not in message
                row(f"upload {n_atoms:,}-atom graphene", message[:150], ok, seconds=round(seconds, 1),
                    runner_samples=[before, after])

            problems = []
            for query in ABSURD:
                page = browser.new_page()
                dialogs = []
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                page.goto(url + "?" + query, wait_until="load", timeout=180_000)
                wait_for_text(page, ".mlepi-summary", lambda t: "atoms" in t, timeout=180)
                time.sleep(1.0)
                shown = text_of(page, ".mlepi-message") + " " + text_of(page, ".mlepi-mode-text")
                if dialogs or "Traceback" in shown:
                    problems.append(query)
                page.close()
            row(f"{len(ABSURD)} absurd link values", f"refused with a message; problems: {problems or 'none'}",
                not problems and alive(url))

            sent = []
            huge = browser.new_page()
            huge.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(len(payload))))
            huge.goto(url + "?supercell=3", wait_until="load", timeout=180_000)
            wait_for_text(huge, ".mlepi-summary", lambda t: "atoms" in t, timeout=180)
            message = upload(huge, "huge.xyz", b"x" * (LIMITS.max_file_bytes + 1), lambda t: "huge.xyz" in t, 30)
            row("file over the upload limit", message[:150], "Not sent" in message and max(sent) < 1e6,
                largest_frame_bytes=max(sent))
            huge.close()

            log_mark = len(log.read_text(errors="replace")) if proc else 0
            mos2 = io.StringIO()
            write(mos2, mos2_bilayer(), format="extxyz")
            upload(first, "mos2.extxyz", mos2.getvalue().encode(), lambda t: "mos2" in t and "Reading" not in t)
            summary = wait_for_text(first, ".mlepi-summary", lambda t: "Mo2S4" in t, timeout=60)
            time.sleep(3.0)
            errors = [line for line in log.read_text(errors="replace")[log_mark:].splitlines()
                      if "Error" in line or "Traceback" in line] if proc else []
            row("MoS2 bilayer upload", summary[:120], not errors, server_errors=errors[:5])

            tabs = [page_at("?supercell=3") for _ in range(args.tabs)]
            peak = rss_first
            for k in range(args.uploads):
                page = tabs[k % len(tabs)]
                upload(page, f"mono_{k}.extxyz", graphene(1, a=2.40 + 0.005 * k),
                       lambda t, k=k: f"mono_{k}" in t and "Loaded" in t)
                wait_for_text(page, ".mlepi-phonon-status", lambda t: "force constants" in t or "failed" in t,
                              timeout=300)
                peak = max(peak or 0, rss_mb(pid) or 0)
            for page in tabs:
                page.close()
            runner.locator(".mlepi-stop button").click()
            runner.close()
            first.close()
            settled = None
            for _ in range(24):  # Bokeh ends a closed tab's session within about 30 s
                time.sleep(5)
                settled = rss_mb(pid)
            ok = settled is None or rss_first is None or settled - rss_first <= 200
            row(f"memory: {args.uploads} uploads, {args.tabs} closed tabs",
                f"RSS first page {rss_first} MB, peak {peak} MB, after closing {settled} MB", ok,
                rss_first_mb=rss_first, rss_peak_mb=peak, rss_after_mb=settled)
            browser.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"url": url, "rows": rows}, indent=1, default=str))
    print(f"\n{'attack':<38} ok   outcome")
    for r in rows:
        print(f"{r['attack']:<38} {'yes' if r['ok'] else 'NO ':<4} {r['outcome'][:110]}")
    print(f"-> {args.out}")
    sys.exit(0 if all(r["ok"] for r in rows) else 1)


if __name__ == "__main__":
    main()
