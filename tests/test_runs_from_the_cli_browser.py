"""Runs computed elsewhere, compared in a fresh browser (issue 33): three `mlepi mc` folders
(two temperatures each, one on a Dask cluster) in the server's runs directory, overlaid from
one URL; the page's numbers equal the CLI's files. A run folder uploaded as an archive joins
the runs directory, and the Runs tab downloads one as an archive."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

from conftest import ROOT, start_dashboard
from mlepi_core.run_archive import pack
from test_dashboard_browser import pytestmark, wait_for_text  # noqa: F401  (skipped without Chromium)


def test_three_cli_runs_overlaid_from_one_url(browser, tmp_path):
    runs = tmp_path / "runs"
    names = {"seed1": ["--seed", "1"], "seed2": ["--seed", "2"],
             "seed3-dask": ["--seed", "3", "--executor", "dask", "--workers", "1"]}
    for name, extra in names.items():
        done = subprocess.run([sys.executable, "-m", "mlepi_core.cli", "mc", "AB", "--supercell", "3", "--electrons",
                               "slater-koster", "--samples", "4", "--temperature", "0", "300",
                               "--out", str(runs / name), *extra], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    proc, url = start_dashboard(runs, tmp_path / "server.log")
    try:
        page = browser.new_page(viewport={"width": 1600, "height": 1000}, accept_downloads=True)
        page.goto(url + "?runs=" + ",".join(names), wait_until="load", timeout=120_000)
        wait_for_text(page, ".mlepi-summary", lambda t: "atoms" in t)
        page.locator(".mlepi-tabs .bk-tab", has_text="Runs").click()
        listing = wait_for_text(page, ".mlepi-runs", lambda t: all(n in t for n in names), timeout=60)
        assert "mlepi mc on Dask" in listing
        archive = tmp_path / "seed1.zip"  # a run carried from another machine, uploaded
        archive.write_bytes(pack(runs / "seed1"))
        page.locator(".mlepi-runs-upload input[type=file]").set_input_files(str(archive))
        wait_for_text(page, ".mlepi-runs", lambda t: "seed1-2" in t, timeout=60)
        with page.expect_download() as info:  # and downloaded again
            page.locator(".mlepi-runs-download button").click()
        info.value.save_as(tmp_path / "down.zip")
        page.locator(".mlepi-tabs .bk-tab", has_text="Explore").click()
        with page.expect_download() as info:
            page.locator(".mlepi-json button").click()
        info.value.save_as(tmp_path / "page.json")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    with zipfile.ZipFile(tmp_path / "down.zip") as zf:
        assert "run.json" in {n.split("/")[-1] for n in zf.namelist()}
    assert (runs / "seed1-2" / "checkpoint_ml.npz").read_bytes() == (runs / "seed1" / "checkpoint_ml.npz").read_bytes()
    pinned = json.loads((tmp_path / "page.json").read_text())["pinned"]
    assert len(pinned) == 3
    for name, pin in zip(names, pinned):
        cli = json.loads((runs / name / "results.json").read_text())["temperatures"]
        assert [(h["T"], h["vf"], h["vf_se"]) for h in pin["history"]] == \
            [(row["T"], row["ml"]["vf"], row["ml"]["vf_se"]) for row in cli]
