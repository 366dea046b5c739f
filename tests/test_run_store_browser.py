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

from app.viewmodel import Session

SETTINGS = "?structure=AB&supercell=6&electrons=slater-koster&T=300&samples=60&seed=3"


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

    proc, url = start_dashboard(runs, tmp_path / "second.log")
    try:
        again = browser.new_page(viewport={"width": 1600, "height": 1000}, accept_downloads=True)
        again.goto(url + SETTINGS, wait_until="load", timeout=120_000)
        wait_for_text(again, ".mlepi-summary", lambda t: "atoms" in t)
        again.locator(".mlepi-tabs .bk-tab", has_text="Runs").click()  # the killed run is listed
        wait_for_text(again, ".mlepi-runs", lambda t: "seed 3" in t and f"({on_disk})" in t, timeout=60)
        again.locator(".mlepi-tabs .bk-tab", has_text="Explore").click()
        again.locator(".mlepi-run button").click()
        done = wait_for_text(again, ".mlepi-message", lambda t: "60 samples at 300 K" in t, timeout=300)
        assert f"continued from {on_disk} samples on disk" in done
        vf = results_vf(again, tmp_path, "results.json")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    straight = Session(structure="AB bilayer", supercell=6, temperature=300.0, samples=60, seed=3,
                       electrons=next(k for k in Session().system.param.electrons.objects
                                      if k.startswith("Slater-Koster p_z")))
    straight.monte_carlo.run()
    straight.wait(timeout=300)
    assert vf == straight.monte_carlo.snapshot.vf  # every digit
    assert len(list(runs.iterdir())) == 1  # the same run, continued
