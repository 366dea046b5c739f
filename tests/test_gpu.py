"""The GPU paths against the CPU ones (skipped without CUDA; `pytest -m gpu` runs them):
the two trained networks, the near-E_F band solver and a whole Monte Carlo batch.

MLEPI_TEST_DEVICE=cpu runs the same comparisons CPU against CPU, which checks the test
code itself on a machine without a GPU.
"""

import os

import numpy as np
import pytest
import torch

from mlepi_core.electrons import solve_near
from mlepi_core.engine import MCSettings, MonteCarloEngine
from mlepi_core.models import load_model
from mlepi_core.reference.lammps_forces import EmpiricalForceReference
from mlepi_core.reference.slater_koster import SlaterKosterPz
from mlepi_core.structures import bilayer, supercell

DEVICE = os.environ.get("MLEPI_TEST_DEVICE", "cuda")
MODELS = os.path.join(os.path.dirname(__file__), "..", "assets", "models")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                                 reason="no CUDA device")]


@pytest.fixture(scope="module")
def displaced():
    a = supercell(bilayer("AB"), 6)
    a.positions += np.random.default_rng(0).normal(scale=0.03, size=a.positions.shape)
    return a


def test_force_model_on_the_gpu_equals_the_cpu(displaced):
    cpu, gpu = (load_model(os.path.join(MODELS, "phonon"), device=d, kind="phonon") for d in ("cpu", DEVICE))
    assert str(gpu.device).startswith(DEVICE)
    (e_cpu,), (f_cpu,) = cpu.energies_forces([displaced])
    (e_gpu,), (f_gpu,) = gpu.energies_forces([displaced])
    assert abs(e_gpu - e_cpu) < 1e-9 * len(displaced)
    np.testing.assert_allclose(f_gpu, f_cpu, atol=1e-9)


def test_hamiltonian_model_on_the_gpu_equals_the_cpu(displaced):
    cpu, gpu = (load_model(os.path.join(MODELS, "electron"), device=d, kind="electron") for d in ("cpu", DEVICE))
    (b_cpu,), (b_gpu,) = cpu.blocks([displaced]), gpu.blocks([displaced])
    for name in ("i", "j", "R"):
        np.testing.assert_array_equal(getattr(b_gpu, name), getattr(b_cpu, name))
    np.testing.assert_allclose(b_gpu.h, b_cpu.h, atol=1e-9)
    np.testing.assert_allclose(b_gpu.s, b_cpu.s, atol=1e-9)


def test_band_solver_on_the_gpu_equals_the_cpu():
    """The shift-invert solve of 12 states near sigma of a batch of random Hermitian pencils."""
    gen = torch.Generator().manual_seed(1)
    m, k = 300, 4
    a = torch.randn(k, m, m, dtype=torch.complex128, generator=gen)
    h = 0.5 * (a + a.mH)
    b = 0.05 * torch.randn(k, m, m, dtype=torch.complex128, generator=gen)
    s = torch.eye(m, dtype=torch.complex128) + 0.5 * (b @ b.mH) / m
    e_cpu, _ = solve_near(h, s, 0.3, 12)
    e_gpu, _ = solve_near(h.to(DEVICE), s.to(DEVICE), 0.3, 12)
    np.testing.assert_allclose(e_gpu.cpu().numpy(), e_cpu.numpy(), atol=1e-8)


def test_a_monte_carlo_batch_on_the_gpu_equals_the_cpu():
    settings = MCSettings(temperatures=(300.0,), n_samples=2, batch_size=2, supercell=6, spectral_every=1)
    forces, electrons = EmpiricalForceReference(), SlaterKosterPz()
    cpu = MonteCarloEngine(bilayer("AB"), forces, electrons, settings)
    gpu = MonteCarloEngine(bilayer("AB"), forces, electrons, settings, lattice=(cpu.primitive, cpu.phonon),
                           device=DEVICE)
    assert abs(gpu.static["vf"] - cpu.static["vf"]) < 1e-9
    r_cpu, r_gpu = cpu.compute_batch(300.0, 0, 2), gpu.compute_batch(300.0, 0, 2)
    np.testing.assert_allclose(r_gpu["vf"], r_cpu["vf"], rtol=1e-9)
    np.testing.assert_allclose(r_gpu["gamma1"], r_cpu["gamma1"], rtol=1e-7)
    for j in r_cpu["spectra"]:
        np.testing.assert_allclose(r_gpu["spectra"][j], r_cpu["spectra"][j], atol=1e-8)
