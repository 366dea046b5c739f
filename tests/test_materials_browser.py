"""Another material in a real browser: the AA' hBN bilayer from the gallery picks the models
that know boron and nitrogen (the empirical reference, GFN1-xTB), draws its phonons, and a
Monte Carlo run shows the band gap with its error and its change from the static lattice."""

from __future__ import annotations

import re

from test_dashboard_browser import pytestmark, text_of, wait_for_text  # noqa: F401  (skipped without Chromium)

GAP = re.compile(r"⟨E_g⟩ = ([0-9.]+) ± ([0-9.]+) eV \(([-+][0-9.]+) meV vs static ([0-9.]+) eV, K -> K\)")


def test_the_hbn_bilayer_runs_and_shows_its_gap(server, browser):
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.goto(server + "?samples=2&T=0", wait_until="load", timeout=120_000)
    wait_for_text(page, ".mlepi-summary", lambda t: "atoms" in t)
    page.locator(".mlepi-structure select").select_option("AA′ hBN bilayer")
    summary = wait_for_text(page, ".mlepi-summary", lambda t: "B2N2" in t)
    assert "2 layer(s)" in summary
    assert "Empirical potentials" in page.locator(".mlepi-forces select").input_value() or \
        "Empirical" in text_of(page, ".mlepi-forces")
    wait_for_text(page, ".mlepi-phonon-status", lambda t: "force constants" in t, timeout=120)
    page.locator(".mlepi-run button").click()
    progress = wait_for_text(page, ".mlepi-progress", lambda t: t.startswith("2 / 2") and "E_g" in t, timeout=400)
    gap, se, change, static = GAP.search(progress).groups()
    assert 3.0 < float(static) < 6.0 and float(se) > 0  # GFN1-xTB's gap of the bilayer, eV
    assert abs(float(gap) - float(static) - float(change) / 1000) < 2e-4
    assert "v_F" not in progress
    page.close()
