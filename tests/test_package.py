"""mlepi as an installed package: a non-editable install carries its models and runs anywhere."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_a_non_editable_install_runs_monte_carlo_from_another_directory(tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(ROOT)], check=True, timeout=300, capture_output=True)
    assert (site / "mlepi_core" / "shipped_models" / "phonon" / "weights.pt").is_file()
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run(
        [sys.executable, "-c", "import sys, mlepi_core, mlepi_core.cli as c; print(mlepi_core.__file__); "
         "sys.exit(c.main(sys.argv[1:]))", "mc", "AB", "--temperature", "300", "--samples", "8",
         "--out", "OUT"], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.splitlines()[0].startswith(str(site))  # the installed copy, not the checkout
    result = json.loads((work / "OUT" / "results.json").read_text())
    (row,) = result["temperatures"]
    assert row["T"] == 300 and row["samples"] == 8
    assert not any((site / "mlepi_core").rglob("results.json"))  # nothing written into the package


def test_shipped_models_resolve_by_name_from_the_package():
    from mlepi_core import shipped_model, shipped_model_names
    from mlepi_core.model_names import model_identity

    assert {"phonon", "electron", "electron_sk", "electron_hbn"} <= set(shipped_model_names())
    assert shipped_model("electron").parent.name == "shipped_models"
    assert model_identity("phonon") == model_identity(str(shipped_model("phonon")))
    assert model_identity("phonon").startswith("weights sha256 ")
    with pytest.raises(KeyError, match="shipped: "):
        shipped_model("graphite")


def test_importing_mlepi_core_imports_no_engine():
    code = ("import sys, mlepi_core; heavy = [m for m in ('torch', 'phonopy', 'mlepi_core.engine') "
            "if m in sys.modules]; print(heavy); assert not heavy; mlepi_core.MCSettings; "
            "assert 'mlepi_core.engine' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
