"""Run archives (issue 33): a run folder packed on one machine is added to another runs
directory and opens to the same numbers; archives that are not a run folder are refused with
the reason and leave nothing in the directory; checkpoints are plain arrays, never pickles."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
import zipfile

import numpy as np
import pytest

from mlepi_core.checkpoints import CheckpointError, read_checkpoint
from mlepi_core.cli import main
from mlepi_core.run_archive import MAX_FOLDER_BYTES, pack
from mlepi_core.run_store import MAX_ARCHIVE_BYTES, RunStore


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """An `mlepi mc` folder: two temperatures, 2 samples each (a 3x3 Slater-Koster run, ~2 s)."""
    out = tmp_path_factory.mktemp("elsewhere") / "sweep"
    assert main(["mc", "AB", "--supercell", "3", "--electrons", "slater-koster", "--samples", "2",
                 "--temperature", "0", "300", "--seed", "5", "--out", str(out)]) in (0, None)
    return out


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setattr(RunStore, "root", tmp_path / "store")
    return tmp_path / "store"


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def folder_files(folder) -> dict[str, bytes]:
    return {f"{folder.name}/{p.name}": p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_a_packed_run_opens_in_another_runs_directory_with_its_numbers(cli_run, store):
    name = RunStore.add_archive(pack(cli_run), "sweep.zip")
    assert name == "sweep" and RunStore.add_archive(pack(cli_run), "sweep.zip") == "sweep-2"
    (row, _) = RunStore.listing()
    assert not row.get("unreadable") and row["where"] == "mlepi mc"
    result = json.loads((cli_run / "results.json").read_text())
    opened = RunStore.open("sweep")
    assert [(h["T"], h["vf"], h["vf_se"]) for h in opened["history"]] == \
        [(r["T"], r["ml"]["vf"], r["ml"]["vf_se"]) for r in result["temperatures"]]
    assert (store / "sweep" / "checkpoint_ml.npz").read_bytes() == (cli_run / "checkpoint_ml.npz").read_bytes()


def test_a_tar_gz_archive_is_read_as_well(cli_run, store):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        tf.add(cli_run, arcname="overnight")
    assert RunStore.add_archive(buffer.getvalue(), "overnight.tar.gz") == "overnight"
    assert RunStore.open("overnight")["n"] == 2


def test_archives_that_are_not_run_folders_are_refused_and_leave_nothing(cli_run, store, tmp_path):
    good = folder_files(cli_run)
    checkpoint = "sweep/checkpoint_ml.npz"
    state = read_checkpoint(cli_run / "checkpoint_ml.npz")
    link = io.BytesIO()
    with tarfile.open(fileobj=link, mode="w") as tf:
        entry = tarfile.TarInfo("sweep/run.json")
        entry.type, entry.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(entry)
    bomb = zip_of({**good, "sweep/big.csv": b"0" * (MAX_FOLDER_BYTES + 1)})
    record = json.loads(good["sweep/run.json"])
    cases = {
        "not an archive": (b"hello", "not a zip or tar archive"),
        "leaves its folder": (zip_of({**good, "../evil.json": b"{}"}), "at most in one folder"),
        "a link": (link.getvalue(), "not a plain file"),
        "a pickle": (zip_of({**good, "sweep/checkpoint_ml.pkl": pickle.dumps(state)}), "not a file of a run folder"),
        "a pickle named .npz": (zip_of({**good, checkpoint: pickle.dumps(state)}), "samples cannot be read"),
        "a bomb": (bomb, "unpacks to over 200 MiB"),
        "no record": (zip_of({k: v for k, v in good.items() if not k.endswith("run.json")}), "no run.json"),
        "a foreign record": (zip_of({**good, "sweep/run.json": json.dumps({**record, "temperatures": [{"T": "x"}]})
                                     .encode()}), "a temperature row lacks"),
        "a checkpoint outside": (zip_of({**good, "sweep/run.json": json.dumps({**record, "checkpoint": "../../x.npz"})
                                         .encode()}), r"is not checkpoint_\*\.npz"),
        "two folders": (zip_of({**good, "other/notes.json": b"{}"}), "one folder"),
    }
    assert len(bomb) < MAX_ARCHIVE_BYTES  # small on the wire, large unpacked
    for what, (data, reason) in cases.items():
        with pytest.raises(ValueError, match=reason):
            RunStore.add_archive(data, f"{what}.zip")
    assert not store.exists() or list(store.iterdir()) == []
    with pytest.raises(ValueError, match="over the 14 MiB"):
        RunStore.add_archive(b"0" * (MAX_ARCHIVE_BYTES + 1), "huge.zip")


def test_a_checkpoint_keeps_every_bit_and_is_no_pickle(tmp_path):
    from mlepi_core.checkpoints import write_checkpoint

    rng = np.random.default_rng(0)
    state = {"settings": {"seed": 3}, "per_sample": {300.0: {0: (0.71, 0.12), 3: (0.69, 0.13)}, 0.0: {1: (0.7, 0.1)}},
             "gaps": {}, "near_k": {300.0: {0: rng.normal(size=(5, 4)), 3: rng.normal(size=(5, 4))}, 0.0: {}},
             "spectra": {300.0: {"sum": rng.normal(size=(7, 9)), "samples": [0]}},
             "layer_spectra": {}}
    path = write_checkpoint(tmp_path / "c.npz", state, {"identity": {"structure": "AB"}})
    back = read_checkpoint(path)
    assert back["identity"] == {"structure": "AB"} and back["per_sample"] == state["per_sample"]
    assert (back["near_k"][300.0][3] == state["near_k"][300.0][3]).all()
    assert (back["spectra"][300.0]["sum"] == state["spectra"][300.0]["sum"]).all()
    with np.load(path, allow_pickle=False) as data:
        assert all(data[k].dtype != object for k in data.files)
    (tmp_path / "p.npz").write_bytes(pickle.dumps(state))
    with pytest.raises(CheckpointError, match="not a readable Monte Carlo checkpoint"):
        read_checkpoint(tmp_path / "p.npz")
