"""Other materials end to end from the command line: the AA' hBN bilayer with its empirical
force reference (ExTeP + ILP) and GFN1-xTB electrons, through `mlepi phonons` and `mlepi mc`,
which reports the band gap with its error and its change from the static lattice."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest


def mlepi(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "mlepi_core.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_hbn_phonons_from_the_name(tmp_path):
    run = mlepi("phonons", "hBN", "--forces", "empirical", "--supercell", "4", "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert "imaginary modes on the path: 0" in run.stdout
    gamma = sorted(json.loads((tmp_path / "dispersion.json").read_text())["models"]["empirical"]["gamma_freqs"])
    assert max(abs(f) for f in gamma[:3]) < 1.0  # acoustic sum rule: three zero modes at Gamma (cm^-1)
    assert gamma[3] == pytest.approx(gamma[4]) and 20.0 < gamma[3] < 60.0  # the doubly degenerate shear mode
    assert gamma[-1] > 1300.0  # the in-plane optical B-N stretch


@pytest.mark.integration
def test_hbn_monte_carlo_reports_the_gap(tmp_path):
    """GFN1-xTB and the shipped hBN network on the same samples: each reports the gap, its
    change from the static lattice and its error (the progress bar too), and the network's
    static gap is GFN1's within the meV its on-site errors allow."""
    run = mlepi("mc", "hBN", "--forces", "empirical", "--electrons", "reference", "electron_hbn",
                "--temperature", "0", "--samples", "2", "--supercell", "6", "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert "reference gap" in run.stdout and "K -> K" in run.stdout
    assert "gap=" in run.stderr and "vF=" not in run.stderr  # the bar's running estimate is the gap
    result = json.loads((tmp_path / "results.json").read_text())
    row = result["temperatures"][0]["reference"]
    static = result["static"]["gap_reference"]
    assert 3.0 < static < 6.0  # GFN1-xTB's gap of the hBN bilayer (eV)
    assert row["gap_change"] == pytest.approx(row["gap"] - static)
    assert row["gap_se"] > 0
    assert result["static"]["gap_ml"] == pytest.approx(static, abs=0.02)
    assert result["temperatures"][0]["ml"]["gap_change"] == pytest.approx(row["gap_change"], abs=0.01)


def test_graphene_on_hbn_phonons_run_and_gfn1_s_electrons_are_refused_with_the_reason(tmp_path):
    """Graphene on hBN: its forces (LCBOP, ExTeP and the ILP between) give a stable lattice,
    while GFN1-xTB, which misplaces hBN's bands next to graphene's, refuses the stack (the
    CLI says why, before any work); each sheet alone stays GFN1's."""
    from mlepi_core.reference.tblite_electrons import GFN1Reference
    from mlepi_core.structures import bilayer, build

    run = mlepi("phonons", "GhBN", "--forces", "empirical", "--supercell", "3", "--out", str(tmp_path / "ph"))
    assert run.returncode == 0, run.stderr
    assert "imaginary modes on the path: 0" in run.stdout
    refused = mlepi("mc", "GhBN", "--electrons", "reference", "--supercell", "3", "--samples", "2",
                    "--out", str(tmp_path / "mc"))
    assert refused.returncode != 0 and "GFN1-xTB puts hBN's valence band" in refused.stderr
    assert not (tmp_path / "mc" / "results.json").exists()
    gfn1 = GFN1Reference.__new__(GFN1Reference)  # refuses() reads the structure only
    assert gfn1.refuses(build("GhBN")) and not gfn1.refuses(build("hBN")) and not gfn1.refuses(bilayer("AB"))


@pytest.mark.slow
def test_mos2_monte_carlo_runs_on_gfn1_and_reports_its_indirect_gap(tmp_path):
    """The 2H MoS2 bilayer through `mlepi mc` on GFN1-xTB (s, p, d basis, split at r_c = 8 A,
    S(k) by canonical orthogonalisation): the static gap runs from Γ to K, as GFN1 has it in
    the 6x6 cell, and two samples at 0 K give a gap with an error (~15 min on a shared core)."""
    run = mlepi("mc", "MoS2", "--forces", "empirical", "--electrons", "reference", "--temperature", "0",
                "--samples", "2", "--supercell", "6", "--path-points", "0", "--spectral-every", "0",
                "--out", str(tmp_path), timeout=3000)
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["static"]["gap_at_reference"] == "Γ -> K"
    assert 1.0 < result["static"]["gap_reference"] < 2.5
    row = result["temperatures"][0]["reference"]
    assert np.isfinite(row["gap"]) and row["gap_se"] > 0 and row["gap_change"] < 0
