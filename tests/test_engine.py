"""The Monte Carlo engine on the reference models: static limit, keyed samples, pause/resume.

The engine's bookkeeping does not depend on which Hamiltonian model it drives, so these
tests drive the Slater-Koster p_z reference (one orbital per atom, a 144-atom solve in
milliseconds). GFN1-xTB through the engine is covered by tests/test_cli.py (``mlepi mc`` on
the monolayer) and the dashboard's reference check, the non-orthogonal s, p basis by every
Monte Carlo test on the shipped HedgeNet-Electron."""

import dataclasses
import threading

import numpy as np
import pytest

from mlepi_core.engine import MCSettings, MonteCarloEngine
from mlepi_core.observables import GAMMA1_FIT_PRECISION_EV
from mlepi_core.statistics import RunningStats
from mlepi_core.reference.lammps_forces import EmpiricalForceReference
from mlepi_core.reference.slater_koster import SlaterKosterPz
from mlepi_core.structures import bilayer


@pytest.fixture(scope="module")
def engine():
    settings = MCSettings(temperatures=(0.0,), n_samples=2, batch_size=2)
    return MonteCarloEngine(bilayer("AB"), EmpiricalForceReference(), SlaterKosterPz(), settings)


def test_no_displacement_returns_the_static_fermi_velocity_exactly(engine):
    engine.settings = dataclasses.replace(engine.settings, displacement_scale=0.0, batch_size=1)
    engine.reset()
    results = list(engine.run(0.0))
    assert len(results) == 2
    assert all(r.vf[0] == engine.static["vf"] for r in results)
    # the averaged spectral function and near-K bands of undisplaced samples are the static ones
    mean, count = engine.spectral_mean(0.0)
    assert count == 2 and np.allclose(mean, engine.static_spectrum, atol=1e-9)
    profile = engine.band_profile(0.0)
    assert np.allclose(profile["mean"], profile["static"], atol=1e-12)
    engine.settings = dataclasses.replace(engine.settings, displacement_scale=1.0)
    engine.reset()


def test_zero_point_motion_renormalises_and_batches_do_not_matter(engine):
    engine.settings = dataclasses.replace(engine.settings, batch_size=2)
    engine.reset()
    (batch,) = list(engine.run(0.0))
    assert batch.n_done == 2 and set(batch.seconds) == {"sampling", "hamiltonian", "bloch", "eig", "unfold", "fit",
                                                               "spectral"}
    # T = 0 is zero-point motion, not the static lattice: v_F drops by a few per cent
    assert np.all(batch.vf < engine.static["vf"]) and np.all(batch.vf > 0.8 * engine.static["vf"])
    first = dict(engine.per_sample[0.0])
    # the same samples one at a time, cancelled after the first and resumed
    engine.settings = dataclasses.replace(engine.settings, batch_size=1)
    engine.reset()
    run = engine.run(0.0)
    next(run)
    engine.cancel()
    assert list(run) == [] and len(engine.per_sample[0.0]) == 1
    list(engine.run(0.0))
    # keyed samples: the same numbers, to rounding (phonopy draws a batch's displacements
    # and one sample's apart by ~1e-15 A on some builds, which moves v_F by ~1e-14; the
    # four-band fit of gamma_1 stops within GAMMA1_FIT_PRECISION_EV of its minimum)
    again = engine.per_sample[0.0]
    assert sorted(again) == sorted(first)
    (vf_a, g_a), (vf_b, g_b) = (np.array([d[j] for j in sorted(first)]).T for d in (again, first))
    assert np.allclose(vf_a, vf_b, rtol=1e-12, atol=0) and np.allclose(g_a, g_b, rtol=0, atol=GAMMA1_FIT_PRECISION_EV)
    stats = engine.statistics(0.0)
    assert stats["samples"] == 2 and stats["vf_rel_change"] < 0


def test_a_batch_runs_its_samples_side_by_side_with_the_same_results(engine, monkeypatch):
    """With two threads a batch's samples run in the sample pool, one torch thread each; every
    observable and A(k, E) equals the one-thread run's."""
    import mlepi_core.engine as engine_module

    settings = dataclasses.replace(engine.settings, temperatures=(300.0,), n_samples=4, batch_size=4,
                                   spectral_every=1)
    lattice = (engine.primitive, engine.phonon)
    serial = MonteCarloEngine(engine.primitive, EmpiricalForceReference(), SlaterKosterPz(), settings,
                              lattice=lattice, threads=1)
    pooled = MonteCarloEngine(engine.primitive, EmpiricalForceReference(), SlaterKosterPz(), settings,
                              lattice=lattice, threads=2)
    used = []
    real_pool = engine_module.sample_pool
    monkeypatch.setattr(engine_module, "sample_pool", lambda n: used.append(n) or real_pool(n))
    one, two = serial.compute_batch(300.0, 0, 4), pooled.compute_batch(300.0, 0, 4)
    assert used == [2]
    for key in ("vf", "gamma1"):
        np.testing.assert_allclose(two[key], one[key], rtol=1e-12, atol=0)
    assert sorted(two["spectra"]) == [0, 1, 2, 3]
    for j in range(4):
        np.testing.assert_allclose(two["spectra"][j], one["spectra"][j], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(two["near_k"][j], one["near_k"][j], rtol=1e-12, atol=1e-12)
    assert {"hamiltonian", "eig", "spectral"} <= set(two["seconds"])


def test_pause_holds_the_run_until_resumed(engine):
    engine.settings = dataclasses.replace(engine.settings, n_samples=1, displacement_scale=0.0)
    engine.reset()
    engine.pause()
    out = []
    worker = threading.Thread(target=lambda: out.extend(engine.run(0.0)))
    worker.start()
    worker.join(timeout=1.0)
    assert worker.is_alive() and not out and engine.held  # paused before its first batch
    engine.resume()
    worker.join(timeout=120)
    assert len(out) == 1 and not engine.held


def test_a_paused_run_in_a_worker_thread_does_not_keep_the_process_alive():
    """An interpreter that exits with a run paused in a (non-daemon) pool thread ends: the
    dashboard's server and the test runner used to hang in the pool's exit-time join."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        from concurrent.futures import ThreadPoolExecutor
        from mlepi_core.engine import MCSettings, MonteCarloEngine
        from mlepi_core.reference.lammps_forces import EmpiricalForceReference
        from mlepi_core.reference.slater_koster import SlaterKosterPz
        from mlepi_core.structures import monolayer
        engine = MonteCarloEngine(monolayer(), EmpiricalForceReference(), SlaterKosterPz(),
                                  MCSettings(temperatures=(0.0,), n_samples=4, batch_size=1, n_bands=2))
        engine.pause()
        ThreadPoolExecutor(1).submit(lambda: list(engine.run(0.0)))
        print("exiting", flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "exiting" in done.stdout, done.stderr


def test_settings_refuse_bad_input():
    with pytest.raises(ValueError, match=">= 0 K"):
        MCSettings(temperatures=(-5.0,))
    with pytest.raises(ValueError, match="even"):
        MCSettings(n_samples=3, antithetic=True)
    with pytest.raises(ValueError, match="multiple of 3"):
        MCSettings(supercell=4)


def test_standard_error_falls_as_one_over_sqrt_m():
    rng = np.random.default_rng(0)
    se = {}
    for m in (100, 400, 1600):
        stats = RunningStats()
        for v in rng.normal(0.7, 0.02, m):
            stats.add(v)
        se[m] = stats.std_error
    assert se[100] / se[400] == pytest.approx(2.0, rel=0.15)
    assert se[400] / se[1600] == pytest.approx(2.0, rel=0.15)


def test_running_error_matches_the_direct_formula():
    from mlepi_core.statistics import running_error

    v = np.random.default_rng(1).normal(0.7, 0.01, 50)
    err = running_error(v)
    assert np.isnan(err[0])
    for m in (2, 10, 50):
        assert err[m - 1] == pytest.approx(v[:m].std(ddof=1) / np.sqrt(m), rel=1e-9)


def test_results_are_written_side_by_side(engine, tmp_path):
    import json

    from mlepi_core.results import write_results

    engine.settings = dataclasses.replace(engine.settings, n_samples=2, displacement_scale=1.0, batch_size=2)
    engine.reset()
    list(engine.run(0.0))
    result = write_results(tmp_path, {"ml": engine, "reference": engine}, provenance={"seed": 0})
    on_disk = json.loads((tmp_path / "results.json").read_text())
    row = on_disk["temperatures"][0]
    assert row["T"] == 0.0 and row["samples"] == 2
    assert row["ml"]["vf"] == row["reference"]["vf"] == result["temperatures"][0]["ml"]["vf"]
    assert on_disk["static"]["vf_ml"] == engine.static["vf"]
    assert (tmp_path / "vf_vs_T.png").stat().st_size > 10_000 and (tmp_path / "vf_vs_T.csv").exists()


def test_a_temperature_stops_at_its_target_standard_error():
    """With ``target_se`` a temperature stops at the first batch boundary where v_F's standard
    error is at or below it, and never before 32 samples; an unreachable target runs all samples."""
    from mlepi_core.engine import TARGET_MIN_SAMPLES

    def samples(target: float) -> tuple[int, float]:
        settings = MCSettings(temperatures=(300.0,), n_samples=48, batch_size=8, supercell=3, spectral_every=0,
                              target_se=target)
        engine = MonteCarloEngine(bilayer("AB"), EmpiricalForceReference(), SlaterKosterPz(), settings)
        for _ in engine.run_all():
            pass
        return len(engine.per_sample[300.0]), engine.statistics(300.0)["vf_se"]

    n, se = samples(1.0)
    assert n == TARGET_MIN_SAMPLES == 32 and se <= 1.0
    n, se = samples(1e-9)
    assert n == 48 and se > 1e-9
    with pytest.raises(ValueError, match="target_se"):
        MCSettings(target_se=-1.0)
