"""The teaching dashboard's view-model without a browser: the view state in the URL,
pinned runs, the offline HTML export (issue 11)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from app.catalogue import GALLERY, electron_choices, force_choices
from mlepi_core.spectral import spectral_peaks
from app.viewmodel import Session

FAST = dict(supercell=3, samples=4, temperature=300.0)


def test_url_round_trip_of_every_parameter():
    a = Session(structure="AA bilayer", supercell=9, temperature=125.5, samples=12, seed=42, antithetic=True,
                unit="thz", show_reference=True, presentation=True, mode=(17, 3), show_layers=True,
                forces=list(force_choices())[-1], electrons=list(electron_choices())[-1])
    query = a.to_query()
    assert set(query) == {"structure", "supercell", "forces", "electrons", "T", "samples", "seed", "antithetic",
                          "unit", "reference", "presentation", "mode", "layers"}
    b = Session()
    assert b.apply_query({k: [v.encode()] for k, v in query.items()}) == []  # as Tornado hands them over
    for name in ("structure", "supercell", "forces", "electrons", "temperature", "samples", "seed",
                 "antithetic", "unit", "show_reference", "presentation", "mode", "show_layers"):
        assert b.setting(name) == a.setting(name), name
    assert b.to_query() == query
    a.close()
    b.close()
    for label in GALLERY:  # every gallery structure has a link
        assert Session.parse_query({"structure": GALLERY[label]}) == ({"structure": label}, [])


def test_bad_link_parameters_are_reported_and_skipped():
    s = Session()
    problems = s.apply_query({"T": "-5", "samples": "abc", "structure": "nonsense", "seed": "9",
                              "electrons": "dft"})
    assert len(problems) == 4 and s.monte_carlo.seed == 9 and s.monte_carlo.temperature == 300.0
    assert "link parameters" in s.ctx.message and "dft" in s.ctx.message


def test_pinned_runs_keep_their_curves_and_peaks():
    s = Session(**FAST)
    with pytest.raises(ValueError, match="nothing to pin"):
        s.monte_carlo.pin()
    s.monte_carlo.run()
    s.wait()
    first = s.monte_carlo.pin()
    assert first["n"] == 4 and len(first["running_mean"]) == 4 and "300 K" in first["label"]
    assert len(first["peaks"]["e"]) > 0 and np.all(first["peaks"]["hwhm"] >= 0.05 * np.sqrt(2 * np.log(2)) * 0.9)
    s.monte_carlo.temperature = 0.0
    s.monte_carlo.run()
    s.wait()
    s.monte_carlo.pin()
    assert [p["T"] for p in s.monte_carlo.pins] == [300.0, 0.0]
    assert [p["label"] for p in s.exports.results_dict()["pinned"]] == [p["label"] for p in s.monte_carlo.pins]
    s.monte_carlo.clear_pins()
    assert s.monte_carlo.pins == []


def test_spectral_peaks_find_gaussian_centres_and_widths():
    e = np.linspace(-3, 3, 601)
    widths = np.array([0.05, 0.1, 0.2])
    a = np.exp(-0.5 * ((e[None, :] - np.array([[-1.0], [0.3], [2.0]])) / widths[:, None]) ** 2)
    k, centre, hwhm = spectral_peaks(a, e, np.arange(3.0))
    assert np.allclose(centre, [-1.0, 0.3, 2.0], atol=0.01)
    assert np.allclose(hwhm, widths * np.sqrt(2 * np.log(2)), rtol=0.02)


def test_export_is_one_self_contained_html_file():
    s = Session(**FAST)
    s.monte_carlo.run()
    s.wait()
    s.monte_carlo.pin()
    page = s.exports.export_html()
    assert "<script" in page and not re.search(r"<script[^>]+src=", page)  # BokehJS inlined
    assert not re.search(r"<link[^>]+href=[\"']https?:", page)
    snap = s.monte_carlo.snapshot
    assert f"{snap.vf:.4f}" in page and f"{snap.vf_se:.4f}" in page  # (JSON-escaped text)


def test_the_lesson_exercises_compute_their_answers():
    from app.lesson import EXERCISES

    s = Session(**FAST)
    s.lesson.solve(0)
    s.lesson.solve(1)
    for f in s.lesson.futures.values():
        f.result(timeout=600)
    zero, need = s.lesson.answers[0], s.lesson.answers[1]
    assert "zero-point RMS displacement" in zero and "%" in zero, zero
    rms = float(re.search(r"\*\*([0-9.]+) Å\*\*", zero).group(1))
    assert 0.03 < rms < 0.2  # graphene: ~0.06 A per Cartesian component at 0 K, ~0.1 A in all
    m = int(re.search(r"\*\*(\d+) samples\*\*", need).group(1))
    assert m >= 1 and len(EXERCISES) == 4


def test_the_phonon_exercise_names_the_interlayer_modes():
    s = Session(**FAST)
    s.lesson.solve(2)
    s.lesson.futures[2].result(timeout=600)
    answer = s.lesson.answers[2]
    shear = float(re.search(r"\*\*shear\*\* mode at \*\*([0-9.]+) cm", answer).group(1))
    breathing = float(re.search(r"\*\*breathing\*\* mode at \*\*([0-9.]+) cm", answer).group(1))
    assert 5 < shear < breathing < 150, answer  # both soft; breathing above shear (c33 > c44)
    mono = Session(**FAST, structure="Monolayer")
    mono.lesson.solve(2)
    mono.lesson.futures[2].result(timeout=600)
    assert "one layer" in mono.lesson.answers[2]


def test_a_click_on_the_dispersion_selects_and_animates_that_mode():
    from mlepi_core.phonons import convert_frequencies

    s = Session(**FAST)
    s.phonons.compute()
    s.wait()
    disp = s.phonons.curves[s.system.forces][0]
    top = convert_frequencies(disp.freq_thz[0], "cm1").max()  # the G mode at Gamma
    iq, band = s.phonons.select_mode_at(0.0, top - 0.2)
    assert iq == 0 and abs(convert_frequencies(disp.freq_thz[0, band], "cm1") - top) < 1.0  # a G mode
    s.phonons.mode_future.result(timeout=120)
    view = s.phonons.mode_view
    assert view["kind"] == "mode" and view["text"].startswith("G mode"), view
    assert view["character"].in_plane > 0.99
    s.phonons.mode_amplitude = 0.5
    f0, f6 = s.phonons.animation_frame(0), s.phonons.animation_frame(6)
    assert not np.allclose(f0, f6)
    assert np.isclose(max(np.linalg.norm(s.phonons.animation_frame(k) - view["atoms"].positions, axis=1).max()
                          for k in range(24)), 0.5, rtol=1e-6)
    s.phonons.mode = (10_000, 0)  # e.g. from a stale link
    s.phonons.mode_future.result(timeout=120)
    assert s.phonons.mode_view["kind"] == "error" and "no mode" in s.phonons.mode_view["text"]


def test_the_newest_sample_is_shown_exaggerated():
    s = Session(**FAST)
    with pytest.raises(ValueError, match="Run first"):
        s.show_sample()
    s.monte_carlo.run()
    s.wait()
    s.show_sample(exaggeration=10.0)
    view = s.phonons.mode_view
    assert view["kind"] == "sample" and "× 10" in view["text"]
    swing = s.phonons.animation_frame(6) - view["atoms"].positions  # sin(2 pi 6/24) = 1: the full sample
    engine = s.monte_carlo.engine
    u = engine.sample_atoms(300.0, 3).positions - engine.sampler.ideal.positions
    assert np.allclose(swing, 10.0 * u, atol=1e-9)


def test_the_reference_check_runs_in_the_background_and_can_be_cancelled():
    import time

    small = Session(**FAST)
    with pytest.raises(ValueError, match="Run first"):
        small.check.check()
    small.monte_carlo.run()
    small.wait()
    small.check.check()
    small.check.future.result(timeout=600)
    assert "6 x 6 or larger" in small.check.result["text"]  # GFN1-xTB's 13 A cutoff
    s = Session(supercell=6, samples=2, temperature=300.0)
    s.monte_carlo.run()
    s.wait()
    t0 = time.perf_counter()
    s.check.check()
    assert time.perf_counter() - t0 < 0.5 and s.check.result["status"] == "running"  # off the UI thread
    s.check.future.result(timeout=600)
    done = s.check.result
    assert done["status"] == "done", done
    diff = done["result"]["max_abs_diff_mev"]
    assert 0 < diff < 1000 and f"{diff:.1f} meV" in done["text"]  # HedgeNet-Electron vs GFN1-xTB on a sample
    assert s.exports.results_dict()["reference_check"]["max_abs_diff_mev"] == diff
    s.check.check(sample=0)
    s.check.cancel()
    s.check.future.result(timeout=600)
    assert s.check.result["status"] == "cancelled"


def test_layer_projections_sum_to_the_spectral_function():
    s = Session(**FAST, show_layers=True)
    s.monte_carlo.run()
    s.wait()
    view = s.layers.spectra()
    total, count = s.monte_carlo.engine.spectral_mean(300.0)
    assert view["layers"].shape[0] == 2 and view["count"] == count == 4
    assert np.abs(view["layers"].sum(axis=0) - total).max() < 1e-10
    assert np.abs(view["static"].sum(axis=0) - s.monte_carlo.engine.static_spectrum).max() < 1e-10
    s.phonons.compute()
    s.wait()
    w = s.phonons.branch_layer_weight()
    assert w.shape[0] == len(s.phonons.curves[s.system.forces][0].distances)
    assert np.allclose(w, 0.5, atol=1e-6)  # AB: inversion x time reversal puts every branch half on each layer
    dos = s.layers.static_dos()
    assert dos["dos"].shape[0] == 2 and np.allclose(dos["dos"].sum(axis=0), dos["total"], atol=1e-10)
    assert Session(**FAST, structure="Monolayer").layers.spectra() is None


def test_model_cards_quote_the_shipped_metrics():
    """The sidebar's card of each model: a shipped network's held-out errors are its
    metrics.json's numbers; every reference says what it is."""
    import json

    from mlepi_core.model_cards import model_card

    for label, name in {**force_choices(), **electron_choices()}.items():
        card = model_card(name)
        if "(ML)" not in label:
            assert "reference" in card or "learnt from" in card, (label, card)
            continue
        m = json.loads((Path(name) / "metrics.json").read_text())
        meta = json.loads((Path(name) / "metadata.json").read_text())
        assert f"{meta['n_parameters']:,} parameters" in card
        if meta["kind"] == "phonon":
            assert f"force MAE {m['test']['force_mae_mev_per_a']:.2f} meV/Å" in card
            assert f"energy MAE {m['test']['energy_mae_mev_per_atom']:.3f} meV/atom" in card
            assert f"RMS {m['phonons_6x6']['rms_cm1']:.1f} cm⁻¹" in card
        else:
            assert f"{m['test']['h_mae_mev']:.3f} meV on" in card and f"{m['twisted']['h_mae_mev']:.3f} meV on" in card
            if "mc_sample_300K" in m:  # the band check of `mlepi evaluate --physics` (graphene's networks)
                assert f"max error {m['mc_sample_300K']['band_max_err_mev']:.1f} meV" in card


def test_the_gap_exercise_on_graphene_points_to_hbn_and_computes_on_a_gapped_toy(monkeypatch):
    """On graphene the gap exercise says where a gap is; on a gapped material it reports the
    static gap, the zero-point renormalisation and the paired 0 -> 300 K shift, the numbers
    of the engine's own statistics."""
    from app.lesson import gap_renormalisation
    from test_band_edges import DELTA, StaggeredPz, hbn_monolayer

    s = Session(**FAST)
    assert "hBN" in gap_renormalisation(s)
    from mlepi_core.engine import MCSettings, MonteCarloEngine
    from mlepi_core.reference.lammps_forces import EmpiricalForceReference

    made = {}

    def toy_engine(temperatures, n_samples, supercell=3):
        made["engine"] = MonteCarloEngine(hbn_monolayer(), EmpiricalForceReference(), StaggeredPz(),
                                          MCSettings(temperatures=temperatures, n_samples=n_samples,
                                                     supercell=supercell, n_bands=2, spectral_every=0))
        return made["engine"]
    import io

    from ase.io import write

    buffer = io.StringIO()
    write(buffer, hbn_monolayer(), format="extxyz")
    assert s.system.load_upload("hbn.extxyz", buffer.getvalue().encode()), s.ctx.message
    monkeypatch.setattr(s.monte_carlo, "quick_engine", toy_engine)
    answer = gap_renormalisation(s)
    zero = made["engine"].statistics(0.0)
    assert f"**{2 * DELTA:.4f} eV** (K -> K)" in answer
    assert f"**{1000 * zero['gap_change']:+.1f} ± {1000 * zero['gap_se']:.1f} meV**" in answer


def test_the_phonon_panel_compares_the_low_branches_with_the_reference():
    """With the reference overlaid, the panel reports the RMS of the branches below 150 cm^-1
    beside the full RMS, and each Gamma mode below 150 cm^-1 against the reference's
    (the interlayer modes a full RMS hides)."""
    import re

    s = Session(**FAST)
    assert s.phonons.comparison() == ""
    s.phonons.show_reference = True
    s.wait(timeout=300)
    text = s.phonons.comparison()
    full, low = (float(x) for x in re.search(r"RMS ([0-9.]+) cm⁻¹ over all branches, \*\*([0-9.]+) cm⁻¹ below", text).groups())
    assert full > 0 and low > 0
    shear = re.search(r"shear ([0-9.]+) vs ([0-9.]+) \(([-+][0-9]+) %\)", text)
    assert shear, text
    ml, ref, rel = float(shear.group(1)), float(shear.group(2)), int(shear.group(3))
    assert abs(100 * (ml - ref) / ref - rel) <= 1  # the relative error is the one shown
    assert "breathing" in text
