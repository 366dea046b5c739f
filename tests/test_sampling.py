"""Thermal sampling (Eq. 2): amplitudes against the analytic quantum harmonic oscillator."""

import numpy as np
import pytest

from mlepi_core.phonons import harmonic_phonons, relax_positions
from mlepi_core.reference.ase_adapter import AseForceModel
from mlepi_core.reference.lammps_forces import EmpiricalForceReference
from mlepi_core.sampling import ThermalSampler
from mlepi_core.structures import bilayer
from mlepi_core.units import HBAR_EV_S, KB_EV_PER_K, OMEGA2_SI_PER_EV_A2_AMU

N_SAMPLES = 4000


@pytest.fixture(scope="module")
def sampler_and_modes():
    """A 3x3 AB bilayer sampler and its modes from an independent diagonalisation."""
    model = EmpiricalForceReference()
    prim = relax_positions(bilayer("AB"), model)
    phonon = harmonic_phonons(prim, model, 3)
    sampler = ThermalSampler(phonon, prim)
    # supercell dynamical matrix at Gamma: D = Phi / sqrt(M_i M_j), eigenvalues omega^2
    fc, m = phonon.force_constants, sampler.ideal.get_masses()
    n = len(m)
    d = (fc / np.sqrt(m[:, None, None, None] * m[None, :, None, None])).transpose(0, 2, 1, 3)
    w2, e = np.linalg.eigh(d.reshape(3 * n, 3 * n))
    return sampler, w2, e, np.repeat(m, 3)


def analytic_variance(w2, temperature):
    """<Q^2> (amu A^2) of each mass-weighted normal coordinate: hbar/(2 omega) coth(hbar omega / 2kT)."""
    omega = np.sqrt(w2 * OMEGA2_SI_PER_EV_A2_AMU)  # rad/s
    hw = HBAR_EV_S * omega  # eV
    coth = 1.0 / np.tanh(hw / (2 * KB_EV_PER_K * temperature)) if temperature > 0 else 1.0
    return HBAR_EV_S * coth / (2 * omega) * OMEGA2_SI_PER_EV_A2_AMU  # eV s^2/(A^2 amu) * ... = amu A^2


@pytest.mark.parametrize("temperature", [0.0, 300.0])
def test_mode_variances_match_quantum_harmonic_oscillator(sampler_and_modes, temperature):
    sampler, w2, e, m3 = sampler_and_modes
    u = sampler.displacements(temperature, 0, N_SAMPLES, seed=11).reshape(N_SAMPLES, -1)
    q = (u * np.sqrt(m3)) @ e  # normal coordinates (amu^1/2 A)
    optical = w2 > 1e-4  # the three acoustic modes at Gamma are excluded
    assert optical.sum() == len(w2) - 3
    assert np.abs(q[:, ~optical]).max() < 1e-10
    expected = analytic_variance(w2[optical], temperature)
    measured = (q[:, optical] ** 2).mean(axis=0)
    # each mode: N <Q^2>/sigma^2 ~ chi^2(N); z-scores of the sample variance
    z = (measured / expected - 1.0) / np.sqrt(2.0 / N_SAMPLES)
    assert np.abs(z).max() < 5.0, z  # 5 sigma over ~100 modes: fails by chance < 1e-4
    assert abs(z.mean()) < 5.0 / np.sqrt(len(z))
    if temperature == 0.0:
        assert measured.min() > 0.5 * expected.min()  # zero-point motion, not zero


def test_samples_are_keyed_not_sequential(sampler_and_modes):
    sampler = sampler_and_modes[0]
    batch = sampler.displacements(300.0, 0, 6, seed=3)
    for j in (0, 4, 5):
        alone = sampler.displacements(300.0, j, 1, seed=3)[0]
        assert np.allclose(alone, batch[j], atol=1e-12)
    # common random numbers: the same sample at another temperature is the same pattern, scaled per mode
    cold = sampler.displacements(10.0, 0, 6, seed=3)
    assert np.corrcoef(cold.ravel(), batch.ravel())[0, 1] > 0.5


def test_antithetic_pairs_cancel_exactly(sampler_and_modes):
    sampler = sampler_and_modes[0]
    u = sampler.displacements(300.0, 0, 10, seed=5, antithetic=True)
    assert np.array_equal(u[0::2], -u[1::2])
    assert np.abs(u.mean(axis=0)).max() < 1e-15
    # odd start: sample 3 is still the partner of sample 2
    assert np.allclose(sampler.displacements(300.0, 3, 1, seed=5, antithetic=True)[0], u[3])


def test_negative_temperature_refused(sampler_and_modes):
    with pytest.raises(ValueError, match=">= 0 K"):
        sampler_and_modes[0].displacements(-1.0, 0, 1, seed=0)


def test_imaginary_modes_are_reported_and_excluded():
    from ase.calculators.emt import EMT

    prim = bilayer("AB")
    phonon = harmonic_phonons(prim, AseForceModel(EMT()), 2)
    with pytest.warns(UserWarning, match="imaginary mode"):
        sampler = ThermalSampler(phonon, prim)
    assert sampler.n_imaginary > 0 and sampler.lowest_cm1 < -5
    u = sampler.displacements(300.0, 0, 20, seed=0).reshape(20, -1)
    fc, m = phonon.force_constants, sampler.ideal.get_masses()
    n = len(m)
    d = (fc / np.sqrt(m[:, None, None, None] * m[None, :, None, None])).transpose(0, 2, 1, 3)
    w2, e = np.linalg.eigh(d.reshape(3 * n, 3 * n))
    q = (u * np.sqrt(np.repeat(m, 3))) @ e
    unstable = w2 < -1e-3
    assert unstable.any() and np.abs(q[:, unstable]).max() < 1e-10  # no amplitude on them
    assert np.abs(q[:, w2 > 1e-3]).max() > 1e-3
