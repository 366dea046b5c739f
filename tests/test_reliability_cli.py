"""The command line's error boundary: one line on stderr and a non-zero exit for every bad
argument, unusable structure and failed write; nothing on disk before the checks pass; a
full disk never loses finished samples."""

import errno
import functools
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlepi_core.checkpoints import read_checkpoint
from mlepi_core.cli import main, monte_carlo
from mlepi_core.cli.common import error_line
from mlepi_core.engine import MonteCarloEngine
from mlepi_core.files import write_retrying_or_rescue

MC = ["mc", "monolayer", "--supercell", "3", "--temperature", "300", "--batch-size", "1",
      "--electrons", "slater-koster", "--spectral-every", "1"]


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "mlepi_core.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def one_line(stderr: str) -> str:
    """The single message line of ``stderr`` (tqdm's progress lines aside)."""
    lines = [line for line in stderr.replace("\r", "\n").splitlines()
             if line.strip() and not line.startswith("MC (")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize("flags, message", [
    (["--temperature", "nan"], "argument --temperature: must be a finite number K, got 'nan'"),
    (["--temperature", "0", "inf"], "argument --temperature: must be a finite number K, got 'inf'"),
    (["--temperature", "-5"], "argument --temperature: must be >= 0 K, got -5"),
    (["--seed", "-1"], "argument --seed: must be >= 0, got -1"),
    (["--samples", "0"], "argument --samples: must be 1 to 10000000, got 0"),
    (["--supercell", "x"], "argument --supercell: expected an integer, got 'x'"),
])
def test_bad_numbers_are_one_line_and_leave_nothing(tmp_path, capsys, flags, message):
    out = tmp_path / "mc"
    with pytest.raises(SystemExit) as exit_:
        main(["mc", "AB", "--out", str(out), *flags])
    assert exit_.value.code == 2
    assert one_line(capsys.readouterr().err) == f"mlepi mc: error: {message} (see mlepi mc --help)"
    assert not out.exists()


def test_huge_supercell_is_refused_at_once(tmp_path):
    """`mlepi mc AB --supercell 999` (4 million atoms) is refused in about the time Python
    takes to start, before any model loads, with the limit and the route named."""
    t = time.perf_counter()
    result = run_cli("mc", "AB", "--supercell", "999", "--out", str(tmp_path / "mc"))
    seconds = time.perf_counter() - t
    assert result.returncode == 2
    assert one_line(result.stderr) == (
        "mlepi: error: AB as 999x999x1 has 3,992,004 atoms, over the 1,296-atom limit for a Monte Carlo sampling "
        "cell (limits.mc_atoms, sized for 24 GB of memory); on a bigger machine: mlepi mc STRUCTURE --supercell n "
        "--max-atoms N")
    assert seconds < 15.0  # a model load alone takes longer on this machine
    assert "torch" not in result.stderr and not (tmp_path / "mc").exists()


def test_other_commands_check_their_cells(tmp_path, capsys):
    assert main(["phonons", "AB", "--supercell", "40", "--out", str(tmp_path / "ph")]) == 2
    assert "6,400 atoms, over the 5,000-atom limit for a phonon supercell" in capsys.readouterr().err
    assert main(["tbg", "--mn", "200,201", "--out", str(tmp_path / "t.json"), "--figure", str(tmp_path / "t.png")]) == 2
    assert "over the 55,000-atom limit for a flat-band cell" in capsys.readouterr().err
    assert main(["build", "AB", "-n", "200", "-o", str(tmp_path / "big.extxyz")]) == 2
    assert "160,000 atoms, over the 55,000-atom limit" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_output_under_a_file_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    assert main([*MC, "--samples", "1", "--out", str(blocker / "out")]) == 1
    line = one_line(capsys.readouterr().err)
    assert line == f"mlepi: error: {blocker} is a file, not a folder: the output folder {blocker / 'out'} cannot be made there"
    assert main(["build", "AB", "-o", str(blocker / "ab.extxyz")]) == 1
    assert "is a file, not a folder" in capsys.readouterr().err


def test_structure_errors_are_one_line(tmp_path):
    folder = tmp_path / "adir.xyz"
    folder.mkdir()
    result = run_cli("info", str(folder))
    assert result.returncode == 2
    assert one_line(result.stderr) == f"mlepi: error: {folder} is a directory, not a structure file"
    cif = tmp_path / "bad.cif"
    cif.write_text("data_bad\nloop_\n_atom_site_label\n_atom_site_fract_x\nC1 0.0\n")
    result = run_cli("info", str(cif))
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "no atom positions" in line and "StopIteration" not in line


def mounted_tmpfs(where, options: str):
    """A tmpfs mounted at ``where`` for the test (needs root and mount); skipped where mounting
    is not permitted."""
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root or no mount permission)")
    yield where
    subprocess.run(["umount", str(where)], check=True)


@pytest.fixture
def readonly_dir(tmp_path):
    """A read-only filesystem."""
    yield from mounted_tmpfs(tmp_path / "ro", "ro,size=64k")


def test_read_only_output_is_one_line(readonly_dir, capsys):
    assert main([*MC, "--samples", "1", "--out", str(readonly_dir / "mc")]) == 1
    assert "is not writable" in one_line(capsys.readouterr().err)


def checkpoint_samples(path: Path) -> dict:
    return read_checkpoint(path)["per_sample"][300.0]


def fail_from(monkeypatch, nth: int, times: int | None, where: Path):
    """Make MonteCarloEngine.save_checkpoint into ``where`` fail with ENOSPC from its
    ``nth`` call on, ``times`` times (None: for ever); other paths (the rescue) work."""
    calls = {"n": 0, "failed": 0}
    real = MonteCarloEngine.save_checkpoint

    def save(self, path, extra=None):
        if Path(path).parent == where:
            calls["n"] += 1
            if calls["n"] >= nth and (times is None or calls["failed"] < times):
                calls["failed"] += 1
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(self, path, extra)

    monkeypatch.setattr(MonteCarloEngine, "save_checkpoint", save)
    monkeypatch.setattr(monte_carlo, "write_retrying_or_rescue", functools.partial(write_retrying_or_rescue,
                                                                                 wait_s=0.0))
    return calls


def test_full_disk_at_a_checkpoint_keeps_every_finished_sample(tmp_path, monkeypatch, capsys):
    """The third checkpoint meets a full disk for good: the run stops with one line, the
    previous checkpoint stays whole (2 samples), all 3 finished samples are in the rescue
    folder, and --resume from them gives the straight run's samples bit for bit."""
    out, rescue = tmp_path / "mc", tmp_path / "rescue"
    rescue.mkdir()
    monkeypatch.setenv("TMPDIR", str(rescue))
    fail_from(monkeypatch, 3, None, out)
    assert main([*MC, "--samples", "5", "--out", str(out)]) == 1
    line = one_line(capsys.readouterr().err)
    rescued = rescue / f"mlepi-rescue-{os.getpid()}" / "checkpoint_ml.npz"
    assert line.startswith(f"mlepi: error: disk full at {out / 'checkpoint_ml.npz'}: the run stopped after 3 "
                           f"finished sample(s), all saved to {rescued}")
    assert sorted(checkpoint_samples(out / "checkpoint_ml.npz")) == [0, 1]
    assert sorted(checkpoint_samples(rescued)) == [0, 1, 2]
    assert not (out / "results.json").exists()

    monkeypatch.undo()
    shutil.copy(rescued, out / "checkpoint_ml.npz")
    assert main([*MC, "--samples", "4", "--out", str(out), "--resume"]) == 0
    assert "resuming ml: 3 samples already done" in capsys.readouterr().out
    assert main([*MC, "--samples", "4", "--out", str(tmp_path / "straight")]) == 0
    resumed, straight = checkpoint_samples(out / "checkpoint_ml.npz"), checkpoint_samples(tmp_path / "straight" / "checkpoint_ml.npz")
    assert sorted(resumed) == sorted(straight) == [0, 1, 2, 3]
    assert [resumed[j][0] for j in range(4)] == [straight[j][0] for j in range(4)]  # v_F, bit for bit


def test_a_passing_full_disk_is_retried_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    out = tmp_path / "mc"
    calls = fail_from(monkeypatch, 2, 1, out)
    assert main([*MC, "--samples", "3", "--out", str(out)]) == 0
    assert calls["failed"] == 1
    assert "a retry wrote it, the run goes on" in capsys.readouterr().err
    assert sorted(checkpoint_samples(out / "checkpoint_ml.npz")) == [0, 1, 2]
    assert (out / "results.json").is_file()


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 200 KB disk that fills up."""
    yield from mounted_tmpfs(tmp_path / "disk", "size=200k")


def test_real_full_disk_on_a_small_tmpfs(small_tmpfs, tmp_path, monkeypatch, capsys):
    """A 200 KB tmpfs filled up after the first checkpoint: the kernel's own ENOSPC at the
    second; the first checkpoint survives on the full disk and both samples are rescued."""
    out, rescue = small_tmpfs / "mc", tmp_path / "rescue"
    rescue.mkdir()
    monkeypatch.setenv("TMPDIR", str(rescue))
    monkeypatch.setattr(monte_carlo, "write_retrying_or_rescue", functools.partial(write_retrying_or_rescue,
                                                                                 wait_s=0.0))
    real = MonteCarloEngine.save_checkpoint

    def save_then_fill(self, path, extra=None):
        real(self, path, extra)
        filler = small_tmpfs / "filler"
        if Path(path).parent == out and not filler.exists():
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # unbuffered: take every remaining block
            try:
                while True:
                    os.write(fd, b"\0" * 4096)
            except OSError as err:
                assert err.errno == errno.ENOSPC
            finally:
                os.close(fd)

    monkeypatch.setattr(MonteCarloEngine, "save_checkpoint", save_then_fill)
    assert main([*MC, "--samples", "3", "--out", str(out)]) == 1
    line = one_line(capsys.readouterr().err)
    assert "disk full at" in line and "after 2 finished sample(s)" in line
    assert sorted(checkpoint_samples(out / "checkpoint_ml.npz")) == [0]
    assert sorted(checkpoint_samples(rescue / f"mlepi-rescue-{os.getpid()}" / "checkpoint_ml.npz")) == [0, 1]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint_ml.npz"]  # no half-written temporary left


@pytest.mark.parametrize("err, expected", [
    (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/results.json"),
     "cannot write or read (/mnt/ro/results.json): the file system is read-only [Read-only file system]"),
    (OSError(errno.ENOSPC, "No space left on device", "/data/x.png"),
     "cannot write or read (/data/x.png): the disk is full [No space left on device]"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/a/file/out"),
     "cannot write or read (/a/file/out): a file stands where a folder must be [Not a directory]"),
])
def test_write_errors_read_as_one_line(err, expected):
    assert error_line(err) == expected


def test_a_write_error_during_a_run_is_one_line(tmp_path, monkeypatch, capsys):
    """An OSError raised anywhere in a command (here: the figure of `mlepi continuum` on a
    file system gone read-only) ends as one line and exit 1."""
    import matplotlib.figure

    def fail(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "continuum_bands.png"))

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", fail)
    assert main(["continuum", "--angle", "5", "--bands", "2", "--points", "3", "--out", str(tmp_path)]) == 1
    assert one_line(capsys.readouterr().err) == (f"mlepi: error: cannot write or read ({tmp_path}/continuum_bands.png): "
                                                 "the file system is read-only [Read-only file system]")


def test_an_internal_error_is_one_line_unless_asked(tmp_path, monkeypatch, capsys):
    def broken(name, size=1):
        raise TypeError("a bug")

    monkeypatch.setattr("mlepi_core.structures.build", broken)
    monkeypatch.delenv("MLEPI_TRACEBACK", raising=False)
    assert main(["build", "AB", "-o", str(tmp_path / "ab.extxyz")]) == 1
    assert one_line(capsys.readouterr().err) == ("mlepi: internal error: TypeError: a bug (MLEPI_TRACEBACK=1 "
                                                 "shows where)")
    monkeypatch.setenv("MLEPI_TRACEBACK", "1")
    with pytest.raises(TypeError, match="a bug"):
        main(["build", "AB", "-o", str(tmp_path / "ab.extxyz")])
