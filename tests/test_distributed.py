"""Monte Carlo on a Dask LocalCluster gives the single-process numbers (docs/physics.md#beyond-one-machine)."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mlepi_core.checkpoints import read_checkpoint
from mlepi_core.cli import main
from mlepi_core.observables import GAMMA1_FIT_PRECISION_EV

ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "assets" / "models" / "electron")
COMMON = ["mc", "AB", "--supercell", "3", "--temperature", "0", "300", "--samples", "6", "--batch-size", "1",
          "--forces", "empirical", "--electrons", MODEL, "--spectral-every", "2"]

pytest.importorskip("distributed")

# Rounding floors between processes (as in test_cli's resume test): every process prepares its
# own lattice, and its bands may differ from another's in the last bits (CI has shown v_F
# 3e-12 relative between two runs); gamma_1 is a least-squares fit that turns band changes of
# 1e-15 eV into up to ~1e-8 eV (observables.GAMMA1_FIT_PRECISION_EV); |d se| <= max|d v_F|/sqrt(n-1).
# The displacements themselves are compared bit for bit.
VF_REL = 1e-11
GAMMA1_ABS_EV = GAMMA1_FIT_PRECISION_EV
SE_ABS = 1e-11  # 1e6 m/s


def _engine(settings):
    from mlepi_core.model_names import force_model_from_name, hamiltonian_model_from_name
    from mlepi_core.engine import MonteCarloEngine
    from mlepi_core.structures import bilayer

    return MonteCarloEngine(bilayer("AB"), force_model_from_name("empirical"), hamiltonian_model_from_name(MODEL),
                            settings)


@pytest.fixture(scope="module")
def client():
    """One two-worker LocalCluster for the tests that submit tasks themselves (its start-up
    and each worker's first import of torch and the model are paid once)."""
    from mlepi_core.distributed import make_client

    client = make_client(workers=2)
    yield client
    client.close()


def test_dask_run_equals_the_local_run(tmp_path, capsys):
    # The local run in a process with one BLAS thread, as Dask's nanny gives each worker
    # (OMP_NUM_THREADS=1): another thread count rounds reductions differently, ~1e-13 in the
    # bands and up to ~1e-8 eV in the gamma_1 fit, so "identical" holds at equal threading (floors above).
    import os

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "mlepi_core.cli", *COMMON, "--out", str(tmp_path / "local")],
                   cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    assert main(COMMON + ["--executor", "dask", "--workers", "2", "--out", str(tmp_path / "dask")]) == 0
    assert "Dask: 2 workers" in capsys.readouterr().out
    local, dask = (json.loads((tmp_path / x / "results.json").read_text()) for x in ("local", "dask"))
    for a, b in zip(local["temperatures"], dask["temperatures"]):
        assert a["T"] == b["T"] and a["ml"]["samples"] == b["ml"]["samples"] == 6
        assert b["ml"]["vf"] == pytest.approx(a["ml"]["vf"], rel=VF_REL, abs=0)
        assert b["ml"]["vf_se"] == pytest.approx(a["ml"]["vf_se"], rel=0, abs=SE_ABS)
        assert b["ml"]["gamma1"] == pytest.approx(a["ml"]["gamma1"], rel=0, abs=GAMMA1_ABS_EV)
    assert dask["provenance"]["executor"] == "dask"


@pytest.mark.parametrize("sampling", ["mc", "zg", "zg-gh"])
def test_workers_draw_the_same_displacements_as_one_process(client, sampling):
    """Every sample's displacements on either of two workers equal the local ones (keyed
    streams; Monte Carlo draws and both rules of special displacements): bit for bit with the
    same batches, to 1e-12 A with other batch boundaries (rounding of the batched sampler);
    v_F agrees to the rounding floor (VF_REL) either way."""
    import warnings

    from mlepi_core.distributed import RunSpec, compute_task
    from mlepi_core.engine import MCSettings
    from mlepi_core.structures import bilayer

    warnings.filterwarnings("ignore", message="the ZG error function")  # 3x3: few q-points to cancel with
    settings = MCSettings(temperatures=(300.0,), n_samples=6, batch_size=1, supercell=3, spectral_every=0,
                          sampling=sampling)
    engine = _engine(settings)
    local = {j: engine.compute_batch(300.0, j, 1, displacements=True) for j in range(6)}
    spec = RunSpec(bilayer("AB"), "empirical", MODEL, settings)
    singles = [client.submit(compute_task, spec, 300.0, j, 1, True, pure=False) for j in range(6)]
    mixed = [client.submit(compute_task, spec, 300.0, first, count, True, pure=False)
             for first, count in ((5, 1), (3, 2), (0, 3))]
    singles, mixed = [f.result() for f in singles], [f.result() for f in mixed]
    for part in singles:
        j = part["first"]
        np.testing.assert_array_equal(part["displacements_a"][j], local[j]["displacements_a"][j])
        assert part["vf"][0] == pytest.approx(local[j]["vf"][0], rel=VF_REL, abs=0)
    for part in mixed:  # other batch boundaries
        for k, j in enumerate(range(part["first"], part["first"] + len(part["vf"]))):
            np.testing.assert_allclose(part["displacements_a"][j], local[j]["displacements_a"][j], rtol=0, atol=1e-12)
            assert part["vf"][k] == pytest.approx(local[j]["vf"][0], rel=VF_REL, abs=0)
    assert np.abs(local[0]["displacements_a"][0]).max() > 1e-3  # thermal, not the ideal lattice


def test_a_dead_worker_loses_no_sample_and_stop_cancels(client):
    import os

    from mlepi_core.distributed import RunSpec, run_distributed
    from mlepi_core.engine import MCSettings
    from mlepi_core.structures import bilayer

    settings = MCSettings(temperatures=(300.0,), n_samples=8, batch_size=1, supercell=3, spectral_every=0)
    local = _engine(settings)
    list(local.run(300.0))
    engine = _engine(settings)
    spec = RunSpec(bilayer("AB"), "empirical", MODEL, settings)
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
    assert sorted(engine.per_sample[300.0]) == list(range(8))
    for j in range(8):
        assert engine.per_sample[300.0][j][0] == pytest.approx(local.per_sample[300.0][j][0], rel=VF_REL, abs=0)


def test_ctrl_c_leaves_a_folder_that_resumes_to_the_uninterrupted_result(tmp_path):
    """`mlepi mc --executor dask` stopped by SIGINT exits within seconds with a complete results
    folder of the finished samples; --resume (here on the local executor) completes it to the
    numbers of a run that was never stopped."""
    args = ["mc", "AB", "--supercell", "3", "--temperature", "0", "300", "--samples", "6", "--batch-size", "1",
            "--forces", "empirical", "--electrons", MODEL, "--spectral-every", "3"]
    out = tmp_path / "stopped"
    proc = subprocess.Popen([sys.executable, "-m", "mlepi_core.cli", *args, "--executor", "dask", "--workers", "2",
                             "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checkpoint = out / "checkpoint_ml.npz"
    try:
        deadline = time.time() + 240
        while not checkpoint.is_file() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert checkpoint.is_file(), proc.communicate()[0] if proc.poll() is not None else "no sample in 240 s"
        proc.send_signal(signal.SIGINT)
        t0 = time.time()
        while not (out / "results.json").is_file() and time.time() - t0 < 60 and proc.poll() is None:
            time.sleep(0.05)
        stop_s = time.time() - t0  # to a complete results folder; Dask then winds its workers down
        log, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, log
    assert stop_s < 10, f"took {stop_s:.1f} s to write the results folder"
    assert "--resume continues" in log
    partial = json.loads((out / "results.json").read_text())
    saved = sum(len(v) for v in read_checkpoint(checkpoint)["per_sample"].values())
    assert 1 <= saved < 12 and sum(r["ml"]["samples"] for r in partial["temperatures"]) == saved

    assert main(args + ["--out", str(out), "--resume"]) == 0
    assert main(args + ["--out", str(tmp_path / "straight")]) == 0
    resumed, straight = (json.loads((d / "results.json").read_text()) for d in (out, tmp_path / "straight"))
    assert [r["ml"]["samples"] for r in resumed["temperatures"]] == [6, 6]
    for a, b in zip(straight["temperatures"], resumed["temperatures"]):
        assert b["ml"]["vf"] == pytest.approx(a["ml"]["vf"], rel=VF_REL, abs=0)
        assert b["ml"]["vf_se"] == pytest.approx(a["ml"]["vf_se"], rel=0, abs=SE_ABS)
