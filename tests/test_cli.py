"""The command line: commands listed, structures built and loaded, clear errors on bad input."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlepi_core.checkpoints import read_checkpoint
from mlepi_core.cli import main
from mlepi_core.observables import GAMMA1_FIT_PRECISION_EV
from mlepi_core.shipped import shipped_models_dir


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mlepi_core.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "build", "info", "data"):
        assert command in out
    with pytest.raises(SystemExit):
        main(["data", "--help"])
    out = capsys.readouterr().out
    assert "phonon" in out and "electron" in out


def test_models_prints_each_models_card(capsys):
    """`mlepi models`: every shipped network with its held-out errors (its metrics.json's
    numbers) and every reference; an unknown name is a clear error."""
    import json

    root = shipped_models_dir()
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for name in ("empirical", "reference", "slater-koster"):
        assert name in lines
    shipped = sorted(p.parent for p in root.glob("*/metadata.json"))
    assert {"phonon", "electron"} <= {folder.name for folder in shipped}
    for folder in shipped:  # each shipped model by the name every command takes
        assert folder.name in lines
    if (root / "phonon" / "metrics.json").is_file():
        m = json.loads((root / "phonon" / "metrics.json").read_text())
        assert f"force MAE {m['test']['force_mae_mev_per_a']:.2f} meV/Å" in " ".join(out.split())
    assert main(["models", "assets/models/none"]) == 2
    assert "no card for 'assets/models/none'" in capsys.readouterr().err


@pytest.mark.integration  # end to end through the engine (minutes on a 2-core CPU)
def test_demo_tour_reports_sound_physics(capsys):
    """`mlepi demo`, the README's one-minute tour: three acoustic zeros at Gamma, GFN1-xTB's
    gamma_1 (0.128 eV) from the split-off levels, the block split reproducing tblite's
    levels, and a static Fermi velocity near graphene's."""
    import re

    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    gamma = [float(x) for x in re.search(r"Gamma phonons.*?: ([-0-9 ]+)\n", out).group(1).split()]
    assert len(gamma) == 12 and sorted(abs(f) for f in gamma)[:3] == [0, 0, 0] and max(gamma) > 1400
    assert float(re.search(r"gamma_1 = ([0-9.]+) eV", out).group(1)) == pytest.approx(0.128, abs=0.003)
    assert float(re.search(r"max ([0-9.]+) meV", out).group(1)) < 5.0
    assert 0.68 < float(re.search(r"static Fermi velocity.*?: ([0-9.]+) x", out).group(1)) < 0.78


def test_build_then_info_roundtrip(tmp_path, capsys):
    path = tmp_path / "tbg.extxyz"
    assert main(["build", "tbg:2,3", "-o", str(path)]) == 0
    assert "76 atoms" in capsys.readouterr().out
    assert main(["info", str(path), "--elements", "C"]) == 0
    out = capsys.readouterr().out
    assert "2 layer(s) of 38, 38 atoms" in out


def test_bad_file_gives_a_clear_error_not_a_traceback(tmp_path):
    bad = tmp_path / "notes.xyz"
    bad.write_text("this is not a structure\n")
    result = run_cli("info", str(bad))
    assert result.returncode == 2
    assert "mlepi: error: cannot read" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_element_and_missing_file_are_clear(tmp_path, capsys):
    from ase.io import write

    from mlepi_core.structures import bilayer, supercell

    atoms = supercell(bilayer("AB"), 2)
    atoms.symbols[0] = "N"
    path = tmp_path / "bn.extxyz"
    write(path, atoms)
    assert main(["info", str(path), "--elements", "C"]) == 2
    assert "element(s) N not known" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "missing.cif")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_unknown_model_names_are_refused_before_any_work(tmp_path, capsys):
    from mlepi_core.model_names import UnknownModelError, force_model_from_name, hamiltonian_model_from_name

    out = tmp_path / "mc"
    assert main(["mc", "monolayer", "--electrons", "reference", "no-such-model", "--out", str(out)]) == 2
    assert "unknown Hamiltonian model 'no-such-model'" in capsys.readouterr().err
    assert not out.exists()  # nothing begun, nothing written
    assert main(["phonons", "AB", "--forces", "no-such-model", "--out", str(tmp_path / "ph")]) == 2
    assert "unknown force model 'no-such-model'" in capsys.readouterr().err
    with pytest.raises(UnknownModelError, match="cannot create ASE calculator 'math:NoSuch'"):
        force_model_from_name("math:NoSuch")
    with pytest.raises(ValueError, match="not a phonon model"):  # a model folder of the other kind
        force_model_from_name(str(Path(__file__).parents[1] / "assets" / "models" / "electron_sk"))
    assert hamiltonian_model_from_name("slater-koster").__class__.__name__ == "SlaterKosterPz"


@pytest.mark.integration  # end to end through the engine (minutes on a 2-core CPU)
def test_mc_command_on_a_monolayer(tmp_path, capsys):
    import json

    out = tmp_path / "mc"
    summary = tmp_path / "summary.json"
    assert main(["mc", "monolayer", "--temperature", "0", "100", "--samples", "1",
                 "--batch-size", "1", "--spectral-every", "1", "--out", str(out), "--summary", str(summary)]) == 0
    result = json.loads((out / "results.json").read_text())
    assert [r["T"] for r in result["temperatures"]] == [0.0, 100.0]
    assert result["temperatures"][0]["reference"]["samples"] == 1
    assert result["provenance"]["electrons"] == ["reference"]
    assert "vs static" in capsys.readouterr().out
    compact = json.loads(summary.read_text())
    assert compact["static"]["vf_ref"] == result["static"]["vf_reference"]
    assert compact["temperatures"][1]["reference"]["vf"] == result["temperatures"][1]["reference"]["vf"]
    spectra = np.load(out / "spectral.npz")
    assert spectra["mean_reference"].shape[0] == 2 and list(spectra["samples_reference"]) == [1, 1]
    assert (out / "spectral.png").is_file()


@pytest.mark.integration  # trains, or runs a subprocess
def test_mc_resume_continues_a_stopped_run_exactly(tmp_path, capsys):
    import json

    model = str(Path(__file__).resolve().parents[1] / "assets" / "models" / "electron")
    common = ["mc", "AB", "--supercell", "3", "--temperature", "300", "--batch-size", "1", "--forces",
              "empirical", "--electrons", model, "--spectral-every", "1"]
    def per_sample(run):
        return read_checkpoint(tmp_path / run / "checkpoint_ml.npz")["per_sample"][300.0]

    assert main(common + ["--samples", "2", "--out", str(tmp_path / "a")]) == 0
    first = per_sample("a")
    assert main(common + ["--samples", "3", "--out", str(tmp_path / "a"), "--resume"]) == 0
    assert "resuming ml: 2 samples already done" in capsys.readouterr().out
    assert main(common + ["--samples", "3", "--out", str(tmp_path / "b")]) == 0  # straight through
    resumed, straight = (json.loads((tmp_path / x / "results.json").read_text())["temperatures"][0]["ml"]
                         for x in ("a", "b"))
    assert resumed["samples"] == straight["samples"] == 3
    # the finished samples are kept bit for bit, and every sample is the straight run's (the
    # same keyed displacements) to rounding. The two runs prepare their lattices separately,
    # so their bands may differ in the last bits (a CI run: v_F 3e-12 relative). v_F is read
    # off the bands directly; gamma_1 is a least-squares fit that turns band changes of 1e-15
    # eV into up to ~1e-8 eV (observables.GAMMA1_FIT_PRECISION_EV), so it is compared at that floor.
    after, ref = per_sample("a"), per_sample("b")
    assert [after[i] for i in (0, 1)] == [first[i] for i in (0, 1)]
    assert sorted(after) == sorted(ref) == [0, 1, 2]
    for i in ref:
        (vf, gamma1), (vf_ref, gamma1_ref) = after[i], ref[i]
        assert vf == pytest.approx(vf_ref, rel=1e-11, abs=0)
        assert gamma1 == pytest.approx(gamma1_ref, rel=0, abs=GAMMA1_FIT_PRECISION_EV)  # eV
    assert resumed["vf"] == pytest.approx(straight["vf"], rel=1e-11)
    # |d se| <= max |d v_F| / sqrt(n - 1): bounded by the per-sample tolerance above
    assert resumed["vf_se"] == pytest.approx(straight["vf_se"], rel=0, abs=1e-11)
    a, b = (np.load(tmp_path / x / "spectral.npz")["mean_ml"] for x in ("a", "b"))
    # the spectral map is a picture solved in complex64 (spectral.SpectralMap): its levels
    # carry ~1e-6 eV of float32 rounding, which shifts a 50 meV Gaussian by ~1e-4 of its peak
    # (stop 21's CI: 6e-5 between these two runs), so it is compared at that precision
    assert np.allclose(a, b, rtol=0, atol=1e-3 * np.abs(b).max())
    # another seed cannot continue these samples
    assert main(common + ["--samples", "3", "--seed", "5", "--out", str(tmp_path / "a"), "--resume"]) == 2
    assert "other settings (seed)" in capsys.readouterr().err
    # nor other weights in the same model folder (checkpoints name models by their weights' hash)
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(model, folder)
    moved = [*common[:-3], str(folder), *common[-2:]]
    assert main(moved + ["--samples", "1", "--out", str(tmp_path / "c")]) == 0
    shutil.rmtree(folder)
    shutil.copytree(Path(model).parent / "electron_sk", folder)
    assert main(moved + ["--samples", "2", "--out", str(tmp_path / "c"), "--resume"]) == 2
    assert "belongs to another run" in capsys.readouterr().err
