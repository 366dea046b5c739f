"""The dashboard's view-model without a browser: validation, the run state machine,
results equal to the CLI's, uploads, and sessions that share nothing."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.catalogue import UPLOADED
from app.dask_executor import DaskExecutor
from app.components.structure import System
from app.viewmodel import BATCH, Session
from mlepi_core.structures import build

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(supercell=3, samples=4, temperature=300.0)  # a 3x3 cell: ~1 s per batch here


def wait_until(predicate, timeout=300.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_parameters_reject_bad_input():
    s = Session()
    with pytest.raises(ValueError, match="at least 0.0"):
        s.monte_carlo.temperature = -1.0
    for bad in (1, 0, 100_000):
        with pytest.raises(ValueError):
            s.monte_carlo.samples = bad
    with pytest.raises(ValueError):
        s.system.supercell = 4  # K and K' must fold together: multiples of 3 only
    s.monte_carlo.antithetic, s.monte_carlo.samples = True, 5
    with pytest.raises(ValueError, match="even"):
        s.monte_carlo.run()
    assert s.monte_carlo.status == "idle" and not s.monte_carlo.busy


def test_run_pause_stop_and_continue_state_machine():
    s = Session(**{**FAST, "samples": 40})
    assert s.monte_carlo.status == "idle"
    s.monte_carlo.run()
    assert s.monte_carlo.status in ("preparing", "running")
    with pytest.raises(RuntimeError, match="already"):
        s.monte_carlo.run()
    wait_until(lambda: s.monte_carlo.snapshot is not None and s.monte_carlo.snapshot.n_done >= 2)
    s.monte_carlo.pause()
    assert s.monte_carlo.status == "paused"
    wait_until(lambda: s.monte_carlo.held)  # the batch in flight finishes and is shown; then nothing more
    held = s.monte_carlo.snapshot.n_done
    time.sleep(1.5)
    assert s.monte_carlo.snapshot.n_done == held and s.monte_carlo.held
    s.monte_carlo.resume()
    assert s.monte_carlo.status == "running"
    s.monte_carlo.stop()
    s.wait(timeout=120)
    assert s.monte_carlo.status == "stopped" and "Run continues" in s.ctx.message
    stopped_at = s.monte_carlo.snapshot.n_done
    assert 2 <= stopped_at < 40
    # Run again continues from the finished samples (keyed: nothing is recomputed)
    s.monte_carlo.samples = stopped_at + 2
    s.monte_carlo.run()
    s.wait(timeout=300)
    assert s.monte_carlo.status == "done" and s.monte_carlo.snapshot.n_done == stopped_at + 2
    rows = s.exports.results_csv().strip().splitlines()
    assert rows[0] == "T_K,sample,vf_1e6_m_per_s,gamma1_ev" and len(rows) == stopped_at + 3
    # a second temperature adds a point to the session's v_F(T)
    s.monte_carlo.temperature = 0.0
    s.monte_carlo.run()
    s.wait(timeout=300)
    assert [h["T"] for h in s.monte_carlo.history] == [0.0, 300.0]
    assert s.monte_carlo.history[0]["vf"] > s.monte_carlo.history[1]["vf"]  # hotter lattice, slower carriers
    assert json.loads(s.exports.results_json())["vf_vs_T"][1]["samples"] == stopped_at + 2
    assert s.exports.figure_png()[:4] == b"\x89PNG"


def cli_run_of(session, out: Path) -> dict:
    """`mlepi mc` with a page's settings (AB, its models, supercell, samples, T, seed, sampling)
    in a subprocess; the statistics of its one temperature."""
    mc = session.monte_carlo
    forces = (str(ROOT / "assets" / "models" / "phonon") if "HedgeNet-Phonon" in session.system.forces
              else "empirical")
    cmd = [sys.executable, "-m", "mlepi_core.cli", "mc", "AB", "--supercell", str(session.system.supercell),
           "--samples", str(mc.samples), "--temperature", f"{mc.temperature:g}", "--seed", str(mc.seed),
           "--sampling", mc.sampling, "--estimator", mc.estimator, "--forces", forces, "--electrons", str(ROOT / "assets" / "models" / "electron"),
           "--batch-size", str(BATCH), "--out", str(out)]
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
    return json.loads((out / "results.json").read_text())["temperatures"][0]["ml"]


def test_results_equal_the_cli_for_the_same_seed(tmp_path):
    s = Session(**FAST, seed=7)
    s.monte_carlo.run()
    s.wait(timeout=300)
    assert s.monte_carlo.status == "done"
    snap = s.monte_carlo.snapshot
    cli = cli_run_of(s, tmp_path / "mc")
    assert cli["samples"] == snap.n_done == 4
    # the same samples (in the same batches, though the batch size no longer matters), to the
    # rounding floor between processes (test_distributed: VF_REL, SE_ABS)
    assert cli["vf"] == pytest.approx(snap.vf, rel=1e-11, abs=0)
    assert cli["vf_se"] == pytest.approx(snap.vf_se, rel=0, abs=1e-11)


def test_the_spectral_map_at_path_resolution_equals_the_cli_s(tmp_path):
    """'points per segment' 15: the page's averaged A(k, E) has 15 evenly spaced points per
    segment of Gamma-M-K-Gamma (46 in all), travels in the link, and equals the map of
    `mlepi mc --path-points 15` for the same samples."""
    import numpy as np

    s = Session(**FAST, seed=4)
    s.monte_carlo.path_points = 15
    assert s.to_query()["path"] == "15" and Session.parse_query({"path": "15"})[0] == {"path_points": 15}
    s.monte_carlo.run()
    s.wait(timeout=300)
    snap = s.monte_carlo.snapshot
    assert snap.spectral.shape == (46, len(snap.energies)) and len(snap.k_distances) == 46
    assert snap.n_spectral == 4 and list(snap.k_labels) == ["Γ", "M", "K", "Γ"]
    mc = s.monte_carlo
    forces = (str(ROOT / "assets" / "models" / "phonon") if "HedgeNet-Phonon" in s.system.forces else "empirical")
    subprocess.run([sys.executable, "-m", "mlepi_core.cli", "mc", "AB", "--supercell", "3", "--samples", "4",
                    "--temperature", "300", "--seed", "4", "--forces", forces, "--electrons",
                    str(ROOT / "assets" / "models" / "electron"), "--batch-size", str(BATCH), "--path-points", "15",
                    "--out", str(tmp_path / "cli")], check=True, cwd=ROOT, capture_output=True)
    cli = np.load(tmp_path / "cli" / "spectral.npz")
    assert cli["mean_ml"].shape[1:] == snap.spectral.shape and int(cli["samples_ml"][0]) == 4
    assert np.allclose(cli["mean_ml"][0], snap.spectral, rtol=1e-6, atol=1e-6 * snap.spectral.max())
    assert mc.status == "done"


def test_a_run_on_the_dask_executor_equals_the_local_run():
    pytest.importorskip("distributed")
    local = Session(**FAST, seed=3)
    local.monte_carlo.run()
    local.wait(timeout=300)
    DaskExecutor.configure(workers=2)
    try:
        remote = Session(**FAST, seed=3, executor="dask")
        remote.monte_carlo.run()
        wait_until(lambda: "Dask, 2 local workers" in remote.ctx.message or remote.monte_carlo.status == "done")
        remote.wait(timeout=300)
    finally:
        DaskExecutor.shutdown()
    assert local.monte_carlo.status == remote.monte_carlo.status == "done", remote.ctx.message
    a, b = local.monte_carlo.snapshot, remote.monte_carlo.snapshot
    assert a.n_done == b.n_done == 4
    assert b.vf == pytest.approx(a.vf, rel=1e-11, abs=0)  # rounding floor between processes
    assert b.vf_se == pytest.approx(a.vf_se, rel=0, abs=1e-11)
    for t, samples in local.monte_carlo.engine.per_sample.items():  # every sample, v_F and the four-band gamma_1
        for j, (vf, gamma1) in samples.items():
            assert remote.monte_carlo.engine.per_sample[t][j][0] == pytest.approx(vf, rel=1e-11, abs=0)
            # a least-squares fit parameter (SciPy's default tolerances): to its own precision
            assert remote.monte_carlo.engine.per_sample[t][j][1] == pytest.approx(gamma1, rel=1e-7, abs=0)


def test_upload_good_and_bad_files(tmp_path):
    s = Session()
    assert not s.system.load_upload("broken.cif", b"data_x\n_cell_length_a oops\n")
    assert "broken.cif" in s.ctx.message and str(tmp_path) not in s.ctx.message
    assert s.system.structure == "AB bilayer" and len(s.system.atoms) == 4
    assert not s.system.load_upload("boron.xyz", b"1\n\nB 0 0 0\n")  # no cell, wrong element
    good = tmp_path / "mono.extxyz"
    build("monolayer").write(good)
    assert s.system.load_upload("mono.extxyz", good.read_bytes())
    assert s.system.structure == UPLOADED and s.system.summary()["atoms"] == 2 and s.system.summary()["stacking"] == "single layer"


def test_monte_carlo_refuses_a_moire_cell_with_a_message():
    s = Session(structure="Twisted bilayer 21.8°")
    assert s.system.summary()["atoms"] == 28 and s.system.summary()["stacking"].startswith("twisted 1,2")
    s.monte_carlo.run()
    assert s.monte_carlo.status == "error" and "supercells of a primitive cell" in s.ctx.message


def test_two_sessions_share_no_run():
    a, b = Session(**FAST, seed=1), Session(**FAST, seed=2)
    a.monte_carlo.run()
    b.monte_carlo.run()
    a.wait(timeout=300)
    b.wait(timeout=300)
    assert a.monte_carlo.status == b.monte_carlo.status == "done"
    assert a.exports.results_csv() != b.exports.results_csv()
    again = Session(**FAST, seed=1)
    again.monte_carlo.run()
    again.wait(timeout=300)
    assert again.exports.results_csv() == a.exports.results_csv()


def test_the_slater_koster_reference_is_an_electron_choice():
    """The p_z model (one orbital per carbon, S = 1, realistic gamma_1) runs the same pipeline."""
    label = next(k for k in System.param.electrons.objects if k.startswith("Slater-Koster"))
    s = Session(**FAST, electrons=label)
    s.monte_carlo.run()
    s.wait(timeout=300)
    assert s.monte_carlo.status == "done", s.ctx.message
    snap = s.monte_carlo.snapshot
    assert snap.n_done == 4 and 0.4 < snap.vf < 0.9
    assert snap.static["gamma1"] == pytest.approx(0.31, abs=0.03)  # vs 0.13 eV from GFN1-xTB


def test_twisted_gallery_entries_start_with_the_slater_koster_trained_network():
    """Both trained electron networks are choices with their own link codes; a twisted entry
    switches to the Slater-Koster-trained one (GFN1 under-binds the layers), the AB bilayer
    returns to the GFN1-trained one, and a link's explicit choice still wins."""
    from app.catalogue import GFN1_ML, SK_ML

    assert {GFN1_ML, SK_ML} <= set(System.param.electrons.objects)
    s = Session()
    assert s.system.electrons == GFN1_ML
    assert s.to_query()["electrons"] == "ml"
    s.system.structure = "Twisted bilayer 21.8°"
    assert s.system.electrons == SK_ML and s.to_query()["electrons"] == "ml-sk"
    s.system.structure = "AB bilayer"
    assert s.system.electrons == GFN1_ML
    s.system.electrons = "GFN1-xTB (reference, slow)"
    s.system.structure = "Twisted bilayer 13.2°"
    assert s.system.electrons == SK_ML
    linked = Session()
    assert linked.apply_query({"structure": "tbg:1,2", "electrons": "ml"}) == []
    assert linked.system.structure == "Twisted bilayer 21.8°" and linked.system.electrons == GFN1_ML


def test_other_materials_pick_the_models_that_know_them(tmp_path):
    """hBN and MoS2 (gallery or upload) switch to the models that know their elements (hBN's
    own electron network; the references where no network knows them: GFN1-xTB for MoS2's
    electrons), and graphene returns
    to the shipped networks; a model the user picked that knows the elements stays."""
    from app.catalogue import GFN1_ML, HBN_ML

    s = Session()
    first_forces = s.system.forces
    s.system.structure = "AA′ hBN bilayer"
    assert s.system.atoms.get_chemical_formula() == "B2N2"
    assert "reference" in s.system.forces and s.system.electrons == HBN_ML
    assert s.to_query()["electrons"] == "ml-hbn"
    assert s.system.mc_allowed[0] and not s.phonons.no_forces()
    s.system.structure = "AB bilayer"
    assert s.system.forces == first_forces and s.system.electrons == GFN1_ML
    mos2 = tmp_path / "mos2.extxyz"
    build("MoS2").write(mos2)
    assert s.system.load_upload("mos2.extxyz", mos2.read_bytes())
    assert s.system.summary()["layers"] == 2
    assert "reference" in s.system.forces and not s.phonons.no_forces()
    assert s.system.electrons == "GFN1-xTB (reference, slow)"  # no network knows Mo and S: the reference
    assert s.system.mc_allowed[0]
    s.system.structure = "Twisted hBN 21.8°"  # the moire cell picks what knows B and N too
    assert s.system.atoms.get_chemical_formula() == "B14N14" and s.system.summary()["layers"] == 2
    assert "reference" in s.system.forces and s.system.electrons == HBN_ML and not s.phonons.no_forces()
    ok, why = s.system.mc_allowed  # like twisted graphene's: phonons here, bands from `mlepi mc`
    assert not ok and "this cell has 28" in why
    s.system.structure = "Graphene on hBN"  # GFN1 knows C, B and N but not this stack (docs/physics.md)
    assert s.system.summary()["layers"] == 2 and not s.phonons.no_forces()
    ok, why = s.system.mc_allowed
    assert not ok and "graphene's Dirac point" in why
    s.system.structure = "AB bilayer"
    s.system.electrons = "GFN1-xTB (reference, slow)"  # the user's choice, which knows B and N
    s.system.structure = "AA′ hBN bilayer"
    assert s.system.electrons == "GFN1-xTB (reference, slow)"
    s.system.structure = "AB bilayer"
    assert s.system.electrons == "GFN1-xTB (reference, slow)" and s.system.forces == first_forces


def test_a_run_lives_in_the_runs_directory_and_continues_exactly(tmp_path, monkeypatch):
    """With a runs directory, a run is a folder written after every batch (checkpoint and
    run.json with its provenance); a new server's tab with the same settings continues it
    from the last batch, and the final v_F equals an uninterrupted run's, every digit."""
    from mlepi_core.run_store import RunStore

    straight = Session(**{**FAST, "samples": 6}, seed=7)
    straight.monte_carlo.run()
    straight.wait(timeout=300)
    monkeypatch.setattr(RunStore, "root", tmp_path)
    first = Session(**{**FAST, "samples": 2}, seed=7)  # the server dies after two samples
    first.monte_carlo.run()
    first.wait(timeout=300)
    (folder,) = tmp_path.iterdir()
    record = json.loads((folder / "run.json").read_text())
    assert record["identity"]["seed"] == 7 and record["temperatures"][0]["samples"] == 2
    assert record["models"]["forces"] and record["mlepi_version"] and record["machine"]
    from mlepi_core.engine import MonteCarloEngine

    computed = []
    compute = MonteCarloEngine.compute_batch
    monkeypatch.setattr(MonteCarloEngine, "compute_batch",
                        lambda self, t, first, count, **kw: computed.append(count) or compute(self, t, first, count, **kw))
    later = Session(**{**FAST, "samples": 6}, seed=7)  # a new server, the same settings
    later.monte_carlo.run()
    later.wait(timeout=300)
    assert sum(computed) == 4  # the two on disk are not computed again
    assert later.monte_carlo.snapshot.n_done == 6
    assert later.monte_carlo.snapshot.vf == straight.monte_carlo.snapshot.vf
    assert later.exports.results_csv() == straight.exports.results_csv()
    assert len(list(tmp_path.iterdir())) == 1
    other = Session(**{**FAST, "samples": 2}, seed=8)  # another seed: another run, another folder
    other.monte_carlo.run()
    other.wait(timeout=300)
    assert len(list(tmp_path.iterdir())) == 2


def test_runs_of_the_directory_are_listed_overlaid_and_named_in_the_link(tmp_path, monkeypatch):
    """The Runs panel lists the directory's runs; opening one overlays it from disk (no
    engine, no model: its running v_F and v_F(T) equal the run's own), and the link names it."""
    from mlepi_core.run_store import RunStore

    monkeypatch.setattr(RunStore, "root", tmp_path)
    first = Session(**FAST, seed=4)
    first.monte_carlo.run()
    first.wait(timeout=300)
    snap = first.monte_carlo.snapshot
    viewer = Session()
    (row,) = viewer.runs.listing
    assert row["temperatures"][0]["vf"] == snap.vf and "seed 4" in row["label"]
    assert "seed 4" in viewer.runs.table()
    viewer.runs.filter = "AB seed 4"
    assert [r["name"] for r in viewer.runs.shown()] == [row["name"]]
    viewer.runs.filter = "MoS2"
    assert viewer.runs.shown() == [] and "seed 4" not in viewer.runs.table()
    viewer.runs.filter = ""
    viewer.runs.opened = [row["name"]]
    (pin,) = viewer.monte_carlo.pins
    assert pin["vf"] == snap.vf and pin["n"] == snap.n_done and pin["run"] == row["name"]
    assert list(pin["running_mean"]) == list(snap.running_mean)
    assert len(pin["peaks"]["k"]) > 0
    assert viewer.to_query()["runs"] == row["name"]
    page = viewer.exports.export_html()  # the self-contained page carries the opened runs
    assert "seed 4" in page and f"{snap.vf:.4f}" in page
    linked = Session()
    assert linked.apply_query({"runs": row["name"]}) == []
    assert [p["run"] for p in linked.monte_carlo.pins] == [row["name"]]
    assert RunStore.continuable(row) and "view only" not in viewer.runs.table()
    record = json.loads((tmp_path / row["name"] / "run.json").read_text())
    record["models"]["electrons"]["identity"] = "weights sha256 0000"  # weights replaced since the run
    (tmp_path / row["name"] / "run.json").write_text(json.dumps(record))
    viewer.runs.refresh()
    assert not RunStore.continuable(viewer.runs.listing[0]) and "view only" in viewer.runs.table()
    assert RunStore.open(row["name"])["vf"] == snap.vf  # its numbers still open
    (tmp_path / "empty").mkdir()  # foreign and corrupt folders are listed with the reason
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("{not json")
    (tmp_path / "stray.txt").write_text("x")
    viewer.runs.refresh()
    reasons = {r["name"]: r.get("unreadable", "") for r in viewer.runs.listing}
    assert "no run.json" in reasons["empty"] and "cannot be read" in reasons["broken"]
    assert reasons["stray.txt"] == "not a folder" and reasons[row["name"]] == ""
    assert "unreadable: run.json cannot be read" in viewer.runs.table()
    with pytest.raises(ValueError, match="cannot be opened"):
        RunStore.open("broken")
    missing = Session()
    missing.apply_query({"runs": "no-such-run"})
    assert "could not be opened" in missing.ctx.message and not missing.monte_carlo.pins


def test_a_folder_of_mlepi_mc_in_the_runs_directory_is_listed_and_opens(tmp_path, monkeypatch):
    """`mlepi mc --out RUNS/NAME` leaves the record the dashboard lists (where: mlepi mc) and
    opens: its v_F(T) points and running v_F from the CLI's own checkpoint."""
    from mlepi_core.cli import main
    from mlepi_core.run_store import RunStore

    out = tmp_path / "sweep"
    assert main(["mc", "AB", "--supercell", "3", "--electrons", "slater-koster", "--samples", "4",
                 "--temperature", "0", "300", "--seed", "2", "--out", str(out)]) in (0, None)
    result = json.loads((out / "results.json").read_text())
    monkeypatch.setattr(RunStore, "root", tmp_path)
    s = Session()
    (row,) = s.runs.listing
    assert row["name"] == "sweep" and row["where"] == "mlepi mc" and len(row["temperatures"]) == 2
    s.runs.opened = ["sweep"]
    (pin,) = s.monte_carlo.pins
    assert [h["T"] for h in pin["history"]] == [0.0, 300.0]
    assert pin["vf"] == result["temperatures"][1]["ml"]["vf"]


def test_a_run_shown_from_the_runs_tab_fills_the_live_plots_and_continues(tmp_path, monkeypatch):
    """Show: the run's settings go to the controls and Run continues it from disk with
    nothing sampled again (the spectral map and v_F are the run's); more samples continue it."""
    from mlepi_core.engine import MonteCarloEngine
    from mlepi_core.run_store import RunStore

    monkeypatch.setattr(RunStore, "root", tmp_path)
    first = Session(**{**FAST, "temperature": 150.0}, seed=6)
    first.monte_carlo.run()
    first.wait(timeout=300)
    snap = first.monte_carlo.snapshot
    computed = []
    compute = MonteCarloEngine.compute_batch
    monkeypatch.setattr(MonteCarloEngine, "compute_batch",
                        lambda self, t, first, count, **kw: computed.append(count) or compute(self, t, first, count, **kw))
    s = Session()
    (row,) = s.runs.listing
    s.runs.show(row["name"])
    s.wait(timeout=300)
    assert s.monte_carlo.seed == 6 and s.monte_carlo.temperature == 150.0 and s.system.supercell == 3
    assert sum(computed) == 0 and s.monte_carlo.snapshot.vf == snap.vf
    assert (s.monte_carlo.snapshot.spectral == snap.spectral).all()
    s.monte_carlo.samples = 6
    s.monte_carlo.run()
    s.wait(timeout=300)
    assert sum(computed) == 2 and s.monte_carlo.snapshot.n_done == 6


def test_an_mlepi_mc_folder_is_shown_in_the_live_plots_from_its_files(tmp_path, monkeypatch):
    """Show on an `mlepi mc` folder: the page's v_F(T) with its errors, running v_F, the
    averaged spectral map and the static lattice's values are the CLI's files, no model run."""
    import numpy as np

    from app import plots
    from mlepi_core.cli import main
    from mlepi_core.run_store import RunStore

    out = tmp_path / "sweep"
    assert main(["mc", "AB", "--supercell", "3", "--electrons", "slater-koster", "--samples", "4",
                 "--temperature", "0", "300", "--seed", "2", "--out", str(out)]) in (0, None)
    result = json.loads((out / "results.json").read_text())
    spectra = np.load(out / "spectral.npz")
    monkeypatch.setattr(RunStore, "root", tmp_path)
    s = Session()
    s.runs.show("sweep")
    snap = s.monte_carlo.snapshot
    assert snap.T == 300.0 and snap.n_done == 4 and snap.vf == result["temperatures"][1]["ml"]["vf"]
    assert (snap.spectral == spectra["mean_ml"][1]).all() and snap.static["vf"] == result["static"]["vf_ml"]
    assert [(h["T"], h["vf"], h["vf_se"]) for h in s.monte_carlo.history] == \
        [(r["T"], r["ml"]["vf"], r["ml"]["vf_se"]) for r in result["temperatures"]]
    for figure in (plots.SpectralFunction(), plots.RunningFermiVelocity(), plots.NearKBands()):
        figure.update(snap.as_dict())  # the live figures draw it
    assert "from `mlepi mc`" in s.ctx.message


def test_an_mlepi_mc_run_shown_in_the_page_continues_its_keyed_streams(tmp_path, monkeypatch):
    """Show on an `mlepi mc` folder whose structure and models are the page's: its settings go
    to the controls, and Run with more samples continues its samples (the four on disk are
    not computed again) to the numbers of a CLI run of eight that never stopped; a run whose
    structure is a file says why it cannot be continued."""
    from mlepi_core.cli import main
    from mlepi_core.engine import MonteCarloEngine
    from mlepi_core.run_store import RunStore

    common = ["mc", "AB", "--supercell", "3", "--electrons", "slater-koster", "--temperature", "0", "300",
              "--seed", "2", "--batch-size", str(BATCH)]
    assert main(common + ["--samples", "4", "--out", str(tmp_path / "store" / "sweep")]) in (0, None)
    assert main(common + ["--samples", "8", "--out", str(tmp_path / "straight")]) in (0, None)
    straight = json.loads((tmp_path / "straight" / "results.json").read_text())["temperatures"][1]["ml"]
    monkeypatch.setattr(RunStore, "root", tmp_path / "store")
    computed = []
    compute = MonteCarloEngine.compute_batch
    monkeypatch.setattr(MonteCarloEngine, "compute_batch",
                        lambda self, t, first, count, **kw: computed.append(first) or compute(self, t, first, count, **kw))
    s = Session()
    s.runs.show("sweep")
    mc = s.monte_carlo
    assert (mc.seed, mc.temperature, s.system.supercell) == (2, 300.0, 3) and "slater" in s.system.electrons.lower()
    assert "Run continues it" in s.ctx.message and mc.snapshot.n_done == 4
    mc.samples = 8
    mc.run()
    s.wait(timeout=300)
    assert mc.status == "done", s.ctx.message
    assert "continued from 4 samples on disk" in s.ctx.message and min(computed) == 4
    assert mc.snapshot.n_done == 8 and mc.snapshot.vf == pytest.approx(straight["vf"], rel=1e-12, abs=0)
    assert mc.snapshot.vf_se == pytest.approx(straight["vf_se"], rel=0, abs=1e-12)
    assert [h["T"] for h in mc.history] == [0.0, 300.0]  # the CLI's other temperature came along

    record = json.loads((tmp_path / "store" / "sweep" / "run.json").read_text())
    record["identity"]["structure"] = "/data/my_bilayer.xyz"
    (tmp_path / "store" / "sweep" / "run.json").write_text(json.dumps(record))
    other = Session()
    other.runs.show("sweep")
    assert "cannot be continued here" in other.ctx.message and other.monte_carlo.continue_from is None


@pytest.mark.parametrize("sampling, samples, refused, reason", [
    ("zg", 2, 3, "ZG"),  # ZG pairs (+u, -u)
    ("zg-gh", 6, 8, "multiple of 6"),  # whole Gauss-Hermite blocks
])
def test_special_displacements_run_in_the_page_as_in_the_cli(tmp_path, sampling, samples, refused, reason):
    """Special displacements: the page runs them, names them in its link, and gives the CLI's
    `mlepi mc --sampling ...` numbers for the same settings; a count the method cannot take is
    refused with its reason."""
    s = Session(**{**FAST, "samples": samples}, seed=1)
    s.monte_carlo.sampling = sampling
    assert s.to_query()["sampling"] == sampling
    s.monte_carlo.run()
    s.wait(timeout=300)
    assert s.monte_carlo.status == "done", s.ctx.message
    snap = s.monte_carlo.snapshot
    cli = cli_run_of(s, tmp_path / sampling)
    assert cli["samples"] == snap.n_done == samples
    assert cli["vf"] == pytest.approx(snap.vf, rel=1e-11, abs=0)
    linked = Session()
    assert linked.apply_query({"sampling": sampling}) == [] and linked.monte_carlo.sampling == sampling
    odd = Session(**{**FAST, "samples": refused})
    odd.monte_carlo.sampling = sampling
    odd.monte_carlo._act(odd.monte_carlo.run)  # the Run button: refused with the method's reason
    assert odd.monte_carlo.status == "idle" and reason in odd.ctx.message


def test_the_curvature_estimator_runs_in_the_page_as_in_the_cli(tmp_path):
    """Estimator "curvature": the page measures the mode curvatures first (its status says so),
    names the estimator in its link, and gives the CLI's `mlepi mc --estimator curvature`
    v_F and error for the same samples, an error other than the plain mean's."""
    s = Session(**{**FAST, "samples": 12}, seed=2)
    s.monte_carlo.estimator = "curvature"
    assert s.to_query()["estimator"] == "curvature"
    seen = []
    s.ctx.param.watch(lambda e: seen.append(e.new), "message")
    s.monte_carlo.run()
    s.wait(timeout=300)
    assert s.monte_carlo.status == "done", s.ctx.message
    assert any("mode curvatures" in (m or "") for m in seen)
    snap = s.monte_carlo.snapshot
    cli = cli_run_of(s, tmp_path / "curvature")
    assert cli["samples"] == snap.n_done == 12
    assert cli["vf"] == pytest.approx(snap.vf, rel=1e-9, abs=0)
    assert cli["vf_se"] == pytest.approx(snap.vf_se, rel=1e-6, abs=0)
    engine = s.monte_carlo.engine
    engine.settings = dataclasses.replace(engine.settings, estimator="plain")
    assert engine.statistics(300.0)["vf_se"] != pytest.approx(snap.vf_se, rel=1e-3)
    linked = Session()
    assert linked.apply_query({"estimator": "curvature"}) == [] and linked.monte_carlo.estimator == "curvature"
    assert linked.apply_query({"estimator": "magic"}) != []
    both = Session(**FAST)
    both.monte_carlo.param.update(estimator="curvature", antithetic=True)
    both.monte_carlo._act(both.monte_carlo.run)  # refused with the reason
    assert both.monte_carlo.status == "idle" and "curvature" in both.ctx.message


@pytest.mark.integration  # starts a Dask cluster
def test_a_stored_run_continues_on_the_dask_cluster(tmp_path, monkeypatch):
    """The run store works with 'Run on: dask': a page run of 2 samples on the cluster is on
    disk, a new tab continues it to 4 on the cluster from there, and the result equals a
    local run of 4 (to the rounding floor between processes)."""
    pytest.importorskip("distributed")
    from mlepi_core.run_store import RunStore

    local = Session(**FAST, seed=9)
    local.monte_carlo.run()
    local.wait(timeout=300)
    monkeypatch.setattr(RunStore, "root", tmp_path)
    DaskExecutor.configure(workers=2)
    try:
        first = Session(**{**FAST, "samples": 2}, seed=9, executor="dask")
        first.monte_carlo.run()
        first.wait(timeout=300)
        assert first.monte_carlo.status == "done", first.ctx.message
        (folder,) = tmp_path.iterdir()
        assert json.loads((folder / "run.json").read_text())["temperatures"][0]["samples"] == 2
        later = Session(**FAST, seed=9, executor="dask")
        later.monte_carlo.run()
        later.wait(timeout=300)
    finally:
        DaskExecutor.shutdown()
    assert later.monte_carlo.status == "done" and "continued from 2 samples on disk" in later.ctx.message
    a, b = local.monte_carlo.snapshot, later.monte_carlo.snapshot
    assert b.n_done == 4 and b.vf == pytest.approx(a.vf, rel=1e-11, abs=0)
    assert json.loads((folder / "run.json").read_text())["temperatures"][0]["samples"] == 4


def test_a_run_folder_from_elsewhere_is_added_and_its_provenance_shown(tmp_path, monkeypatch):
    """A folder of `mlepi mc` elsewhere on the machine is copied into the runs directory
    (validated first: a folder that is no run is refused with the reason), listed with its
    models' identities and mlepi's version, and opens."""
    from mlepi_core.cli import main
    from mlepi_core.run_store import RunStore

    elsewhere = tmp_path / "elsewhere" / "sweep"
    assert main(["mc", "AB", "--supercell", "3", "--electrons", "slater-koster", "--samples", "2",
                 "--temperature", "300", "--out", str(elsewhere)]) in (0, None)
    store = tmp_path / "store"
    store.mkdir()
    monkeypatch.setattr(RunStore, "root", store)
    s = Session()
    assert s.runs.add_folder(str(elsewhere)) == "sweep" and s.runs.add_folder(str(elsewhere)) == "sweep-2"
    with pytest.raises(ValueError, match="not a run folder: no run.json"):
        s.runs.add_folder(str(tmp_path / "elsewhere"))
    table = s.runs.table()
    assert "electrons: slater-koster" in table and "mlepi 0." in table and "mlepi mc on" in table
    s.runs.opened = ["sweep-2"]
    assert s.monte_carlo.pins[0]["n"] == 2
