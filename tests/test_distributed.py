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
