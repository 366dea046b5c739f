"""Shared fixtures: small synthetic structures, float64, fixed seeds."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from mlepi_core.structures import bilayer, supercell


@pytest.fixture(scope="session")
def displaced_ab6():
    """A 6x6 AB bilayer with 0.05 A Gaussian displacements (seed 0): wide enough for r_c = 6 A."""
    atoms = supercell(bilayer("AB"), 6)
    atoms.positions += np.random.default_rng(0).normal(0.0, 0.05, atoms.positions.shape)
    return atoms


# --- the dashboard in a browser (tests/test_dashboard_*browser.py) -------------------------------
# One server and one browser for the whole run: each page is a Session of its own, as for
# several users of one server, and the server's caches (models, phonons) are built once.

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-gpu",
                "--no-first-run", "--disable-sync"]


SERVER_LOG: dict = {}  # "path": the session server's log (tests read what it printed)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dashboard(runs: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    """`mlepi dashboard` on a free port with runs directory ``runs``; (process, URL) once it answers."""
    port = _free_port()
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mlepi_core.cli", "dashboard", "--port", str(port),
                                 "--runs", str(runs)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}/"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=30).read()
            return proc, url
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"dashboard exited: {log_path.read_text()}") from None
            if time.time() > deadline:
                proc.kill()
                raise RuntimeError("dashboard did not start within 120 s") from None
            time.sleep(0.5)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """URL of `mlepi dashboard` served for the session (its log in a temporary file; its runs
    directory a temporary one, none in the repository)."""
    log_path = tmp_path_factory.mktemp("dashboard") / "server.log"
    SERVER_LOG["path"] = log_path
    proc, url = start_dashboard(tmp_path_factory.mktemp("runs"), log_path)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield b
        b.close()


def _check_resume_continues_identically(make_config, tmp_path, **other_settings):
    """Seven steps straight, and four then three more after a resume, give the same weights and
    EMA bit for bit; a checkpoint refuses to continue under ``other_settings``."""
    import torch

    from mlepi_core.training import Trainer

    straight = Trainer(make_config(tmp_path / "a", max_steps=7))
    straight.run()
    Trainer(make_config(tmp_path / "b", max_steps=4)).run()
    resumed = Trainer(make_config(tmp_path / "b", max_steps=7))
    assert resumed.resumed and resumed.state["step"] == 4
    resumed.run()
    for name, p in straight.model.state_dict().items():
        assert torch.equal(p, resumed.model.state_dict()[name]), name
    for name, p in straight.ema.shadow.items():
        assert torch.equal(p, resumed.ema.shadow[name]), name
    with pytest.raises(ValueError, match="other settings"):
        Trainer(make_config(tmp_path / "b", **other_settings))


@pytest.fixture
def check_resume():
    """``check_resume(make_config, tmp_path, **other_settings)``: the training loop's resume
    test, shared by the phonon and electron tasks."""
    return _check_resume_continues_identically


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: threads only add overhead (and stall on a busy machine). A module of tiny
    networks asks for it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --- test tiers ----------------------------------------------------------------------------------
# Whole files that run servers, browsers, clusters or installs belong to the integration tier
# (scripts/test.sh runs it after the unit and physics tier); single tests carry the marker themselves.
INTEGRATION_FILES = ("_browser.py", "test_distributed.py", "test_package.py")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name.endswith(INTEGRATION_FILES):
            item.add_marker(pytest.mark.integration)


# --- leaving the process -------------------------------------------------------------------------
# A closed dashboard Session cancels its queued jobs, but a phonon job already inside phonopy runs
# to its end (the server keeps it; nothing waits on it). The interpreter would join that worker
# thread before exiting, so a test run ends here once its summary is printed.
_EXIT_STATUS = {"code": 0}


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS["code"] = int(exitstatus)


def pytest_unconfigure(config):
    import threading

    if any(t.name.startswith("mlepi-session") and t.is_alive() for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS["code"])
