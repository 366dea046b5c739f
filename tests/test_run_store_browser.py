"""A run outlives its server (issue 33): start a run in the page, kill the server (SIGKILL)
mid-run, start it again on the same runs directory, open the page's link and press Run:
the run continues from its last batch on disk, and its final v_F equals an uninterrupted
run's to every digit."""

from __future__ import annotations

import json
import signal

from conftest import start_dashboard
from test_dashboard_browser import done_of, pytestmark, text_of, wait_for_text  # noqa: F401  (skipped without Chromium)
from test_dashboard_reliability_browser import results_vf

SETTINGS = "?structure=AB&supercell=6&electrons=slater-koster&T=300&samples=60&seed=3"


def run_page(browser, url: str, tmp_path, name: str, runs_tab: str | None = None) -> tuple[str, float]:
    """Open the settings' page on ``url``, (optionally check the Runs tab lists ``runs_tab``),
    press Run and wait for all 60 samples; (final status line, v_F of the JSON download)."""
    page = browser.new_page(viewport={"width": 1600, "height": 1000}, accept_downloads=True)
    page.goto(url + SETTINGS, wait_until="load", timeout=120_000)
    wait_for_text(page, ".mlepi-summary", lambda t: "atoms" in t)
    if runs_tab:
        page.locator(".mlepi-tabs .bk-tab", has_text="Runs").click()
        wait_for_text(page, ".mlepi-runs", lambda t: all(s in t for s in runs_tab.split("|")), timeout=60)
        page.locator(".mlepi-tabs .bk-tab", has_text="Explore").click()
    page.locator(".mlepi-run button").click()
    done = wait_for_text(page, ".mlepi-message", lambda t: "60 samples at 300 K" in t, timeout=300)
    vf = results_vf(page, tmp_path, name)
    page.close()
    return done, vf


def test_a_killed_server_s_run_continues_to_the_same_numbers(browser, tmp_path):
    runs = tmp_path / "runs"
    proc, url = start_dashboard(runs, tmp_path / "first.log")
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        page.goto(url + SETTINGS, wait_until="load", timeout=120_000)
        wait_for_text(page, ".mlepi-summary", lambda t: "atoms" in t)
        page.locator(".mlepi-run button").click()
        wait_for_text(page, ".mlepi-progress", lambda t: done_of(t) >= 4, timeout=300)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    (folder,) = runs.iterdir()
    on_disk = json.loads((folder / "run.json").read_text())["temperatures"][0]["samples"]
    assert 4 <= on_disk < 60  # the batches finished before the kill, no more

    for name, directory, listed in (("continued", runs, f"seed 3|({on_disk})"), ("straight", tmp_path / "fresh", None)):
        proc, url = start_dashboard(directory, tmp_path / f"{name}.log")  # a new server each, started alike
        try:
            done, vf = run_page(browser, url, tmp_path, f"{name}.json", listed)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        if name == "continued":
            assert f"continued from {on_disk} samples on disk" in done
            continued = vf
    assert continued == vf  # the uninterrupted run's v_F, every digit
    assert len(list(runs.iterdir())) == 1  # the same run, continued
