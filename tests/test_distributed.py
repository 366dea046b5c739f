"""Monte Carlo on a Dask LocalCluster gives the single-process numbers."""

import json
from pathlib import Path

import pytest

from mlepi_core.cli import main

MODEL = str(Path(__file__).resolve().parents[1] / "assets" / "models" / "electron")
COMMON = ["mc", "AB", "--supercell", "3", "--temperature", "0", "300", "--samples", "6", "--batch-size", "1",
          "--forces", "empirical", "--electrons", MODEL, "--spectral-every", "2"]


def test_dask_run_equals_the_local_run(tmp_path, capsys):
    pytest.importorskip("distributed")
    assert main(COMMON + ["--out", str(tmp_path / "local")]) == 0
    assert main(COMMON + ["--executor", "dask", "--workers", "2", "--out", str(tmp_path / "dask")]) == 0
    assert "Dask: 2 workers" in capsys.readouterr().out
    local, dask = (json.loads((tmp_path / x / "results.json").read_text()) for x in ("local", "dask"))
    for a, b in zip(local["temperatures"], dask["temperatures"]):
        assert a["T"] == b["T"] and a["ml"]["samples"] == b["ml"]["samples"] == 6
        assert b["ml"]["vf"] == pytest.approx(a["ml"]["vf"], rel=1e-9, abs=0)
        assert b["ml"]["vf_se"] == pytest.approx(a["ml"]["vf_se"], rel=1e-6, abs=0)
    assert dask["provenance"]["executor"] == "dask"


def test_a_dead_worker_loses_no_sample_and_stop_cancels(tmp_path):
    import os
    import signal

    pytest.importorskip("distributed")
    from mlepi_core.cli import force_model_from_name, hamiltonian_model_from_name
    from mlepi_core.distributed import RunSpec, make_client, run_distributed
    from mlepi_core.engine import MCSettings, MonteCarloEngine
    from mlepi_core.structures import bilayer

    settings = MCSettings(temperatures=(300.0,), n_samples=8, batch_size=1, supercell=3, spectral_every=0)
    local = MonteCarloEngine(bilayer("AB"), force_model_from_name("empirical"), hamiltonian_model_from_name(MODEL),
                             settings)
    list(local.run(300.0))
    engine = MonteCarloEngine(bilayer("AB"), force_model_from_name("empirical"), hamiltonian_model_from_name(MODEL),
                              settings)
    spec = RunSpec(bilayer("AB"), "empirical", MODEL, settings)
    client = make_client(workers=2)
    try:
        # Stop after the first batch: outstanding futures are cancelled, the finished sample stays
        run = run_distributed(engine, spec, client, 300.0)
        next(run)
        engine.cancel()
        assert list(run) == [] and 1 <= len(engine.per_sample[300.0]) < 8
        # continue; kill one worker process mid-run: Dask re-runs its tasks elsewhere
        engine.resume()
        run = run_distributed(engine, spec, client, 300.0)
        next(run)
        pids = client.run(os.getpid)  # worker address -> process id
        os.kill(pids[sorted(pids)[0]], signal.SIGKILL)  # the nanny starts a new one
        list(run)
    finally:
        client.close()
    assert sorted(engine.per_sample[300.0]) == list(range(8))
    for j in range(8):
        assert engine.per_sample[300.0][j][0] == pytest.approx(local.per_sample[300.0][j][0], rel=1e-9, abs=0)
