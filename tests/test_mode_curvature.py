"""Mode curvatures and the curvature estimator (mode_curvature.py, MCSettings.estimator).

The harmonic potential energy E(u) = 1/2 u.Phi.u is diagonal in the phonon modes, so its
finite-difference curvatures are exact, and so are the slopes of the interlayer distance,
linear in u and translation invariant. For O = E + a (mean z of layer 1 - mean z of layer 0)
the control variates C(T) + L(T) must reproduce every sample's O - <O> to rounding: that checks
the modes, the set-B pairs (one curvature for the cos and sin modes), the slopes at Gamma and
the map from the Monte Carlo's normals to mode amplitudes. The thermal mean of E is the virial
theorem's sum_nu hbar omega_nu (n_B + 1/2) / 2."""

import dataclasses

import numpy as np
import pytest

from mlepi_core.engine import MCSettings, MonteCarloEngine
from mlepi_core.mode_curvature import ModeCurvature
from mlepi_core.phonons import harmonic_phonons, relax_positions
from mlepi_core.reference.lammps_forces import EmpiricalForceReference
from mlepi_core.reference.slater_koster import SlaterKosterPz
from mlepi_core.sampling import ThermalSampler
from mlepi_core.structures import bilayer
from mlepi_core.units import KB_EV_PER_K, THZ_TO_MEV


@pytest.fixture(scope="module")
def harmonic():
    model = EmpiricalForceReference()
    prim = relax_positions(bilayer("AB"), model)
    phonon = harmonic_phonons(prim, model, 3)
    sampler = ThermalSampler(phonon, prim)
    n = len(sampler.ideal)
    phi = phonon.force_constants.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n)  # eV/A^2

    layer = sampler.ideal.arrays["layer"]
    assert set(np.unique(layer)) == {0, 1}

    def observable(u: np.ndarray) -> np.ndarray:
        flat = u.reshape(len(u), -1)
        energy = 0.5 * np.einsum("si,ij,sj->s", flat, phi, flat)
        return energy + 3.0 * (u[:, layer == 1, 2].mean(axis=1) - u[:, layer == 0, 2].mean(axis=1))

    curvature = ModeCurvature(sampler)
    curvature.fit({"E": 0.0}, {"E": observable(curvature.displacements(curvature.probes()))})
    return sampler, curvature, observable


def test_quadratic_plus_linear_observable_is_its_own_control_variate(harmonic):
    sampler, curvature, observable = harmonic
    for t in (0.0, 300.0):
        o = observable(sampler.displacements(t, 0, 40, seed=3))
        mean = curvature.second_order_shift(t)["E"]
        c = curvature.controls(t, np.arange(40), seed=3)["E"]
        assert np.abs(c[:, 1]).max() > 0.1 * np.abs(c[:, 0]).max()  # both parts matter
        np.testing.assert_allclose(o - mean, c.sum(axis=1), atol=1e-9 * np.abs(o).max())
        assert o.std() > 10 * 1e-9 * np.abs(o).max()  # the samples do scatter


def test_harmonic_energy_mean_is_the_virial_theorem(harmonic):
    _, curvature, _ = harmonic
    f = curvature.frequencies_thz[curvature.moving]
    hw = f * THZ_TO_MEV * 1e-3  # eV
    # a set-B row is the pair (q, -q): two real modes, cos(q.R) and sin(q.R)
    modes = np.where(np.arange(len(curvature.moving))[:, None] < curvature.n_a, 1, 2) * np.ones_like(curvature.moving)
    modes = modes[curvature.moving]
    assert modes.sum() == 3 * len(curvature.sampler.ideal) - 3
    for t in (0.0, 300.0, 1000.0):
        n_b = 0.0 if t == 0 else 1.0 / np.expm1(hw / (KB_EV_PER_K * t))
        expected = float((modes * hw * (n_b + 0.5) / 2).sum())
        assert curvature.second_order_shift(t)["E"] == pytest.approx(expected, rel=1e-6)


def test_controls_are_keyed_and_mean_zero(harmonic):
    _, curvature, _ = harmonic
    c = curvature.controls(300.0, np.arange(2000), seed=1)["E"]
    np.testing.assert_array_equal(curvature.controls(300.0, np.array([17, 5]), seed=1)["E"], c[[17, 5]])
    assert np.all(np.abs(c.mean(axis=0)) < 4 * c.std(axis=0) / np.sqrt(len(c)))


def test_curvature_estimator_agrees_with_the_plain_mean_at_a_smaller_error():
    """6x6 AB bilayer, Slater-Koster electrons, 96 samples: at 300 K the curvature estimator's
    v_F and gamma_1 agree with the plain means of the same samples within their errors, at
    smaller errors (measured: 0.64x for v_F, 0.43x for gamma_1; with the GFN1-trained network
    0.3x, benchmarks/results/variance_reduction.json), and so does the paired difference to 0 K."""
    settings = MCSettings(temperatures=(0.0, 300.0), n_samples=96, batch_size=16, supercell=6,
                          spectral_every=0, estimator="curvature")
    engine = MonteCarloEngine(bilayer("AB"), EmpiricalForceReference(), SlaterKosterPz(), settings)
    done = []
    assert engine.mode_curvature(progress=lambda k, n: done.append((k, n))) is engine.mode_curvature()
    assert done[-1][0] == done[-1][1] == len(engine._curvature.probes())
    for _ in engine.run_all():
        pass
    cv = engine.statistics(300.0)
    plain = dataclasses.replace(settings, estimator="plain")
    engine.settings = plain
    ref = engine.statistics(300.0)
    for name in ("vf", "gamma1"):
        assert abs(cv[name] - ref[name]) < 2 * ref[name + "_se"]
    assert cv["vf_se"] < 0.85 * ref["vf_se"]
    assert cv["gamma1_se"] < 0.6 * ref["gamma1_se"]
    engine.settings = settings
    d = engine.paired_difference(0.0, 300.0)
    engine.settings = plain
    d_plain = engine.paired_difference(0.0, 300.0)
    assert abs(d["dvf"] - d_plain["dvf"]) < 2 * d_plain["dvf_se"]
    assert d["dvf_se"] < d_plain["dvf_se"]


def test_curvature_estimator_refuses_samples_it_cannot_use():
    with pytest.raises(ValueError, match="curvature"):
        MCSettings(estimator="curvature", antithetic=True)
    with pytest.raises(ValueError, match="curvature"):
        MCSettings(estimator="curvature", sampling="zg", n_samples=2)
    with pytest.raises(ValueError, match="estimator"):
        MCSettings(estimator="magic")


def test_a_checkpoint_keeps_the_curvatures(tmp_path):
    """A continued run takes the curvatures from its checkpoint (no solve) and gives the same
    estimate as the run that wrote it."""
    settings = MCSettings(temperatures=(300.0,), n_samples=16, batch_size=8, supercell=3, spectral_every=0,
                          estimator="curvature")
    first = MonteCarloEngine(bilayer("AB"), EmpiricalForceReference(), SlaterKosterPz(), settings)
    for _ in first.run_all():
        pass
    first.save_checkpoint(tmp_path / "run.npz")
    second = MonteCarloEngine(bilayer("AB"), EmpiricalForceReference(), SlaterKosterPz(), settings)
    assert second.load_checkpoint(tmp_path / "run.npz") == 16
    solves = []
    second.mode_curvature(progress=lambda done, n: solves.append(done))
    assert solves == []
    for name in ("vf", "gamma1"):
        np.testing.assert_array_equal(second._curvature.curvature[name], first._curvature.curvature[name])
        np.testing.assert_array_equal(second._curvature.slope[name], first._curvature.slope[name])
    assert second.statistics(300.0) == first.statistics(300.0)
