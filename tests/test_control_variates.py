"""Control variates (statistics.control_variate_mean) and the Gamma normals they regress on."""

import numpy as np

from mlepi_core.phonons import harmonic_phonons, relax_positions
from mlepi_core.reference.lammps_forces import EmpiricalForceReference
from mlepi_core.sampling import ThermalSampler
from mlepi_core.statistics import control_variate_mean
from mlepi_core.structures import bilayer


def test_control_variate_estimator_is_unbiased_with_an_honest_error():
    """y = 1 + x.b + 0.1 eps with E[x] = 0: over 2,000 repetitions of 100 samples the estimate
    centres on 1, its quoted standard error matches the spread of the estimates (within 10 %,
    3 sigma of the spread's own sampling error), and it is ~10x below the plain mean's."""
    rng = np.random.default_rng(0)
    b = np.array([1.0, -0.5, 0.3])
    est, se, plain = [], [], []
    for _ in range(2000):
        x = rng.standard_normal((100, 3))
        y = 1.0 + x @ b + 0.1 * rng.standard_normal(100)
        a, s = control_variate_mean(y, x)
        est.append(a), se.append(s), plain.append(y.std(ddof=1) / 10)
    est = np.array(est)
    assert abs(est.mean() - 1.0) < 4 * est.std() / np.sqrt(len(est))
    assert abs(np.mean(se) / est.std() - 1.0) < 0.1
    assert np.mean(plain) / np.mean(se) > 8


def test_gamma_normals_fix_the_uniform_part_of_the_displacement():
    """The cell average of each atom's displacement (the q = 0 part) is a linear function of the
    Gamma normals alone: a least-squares fit over 60 samples is exact to rounding, keyed, and
    antithetic pairs carry opposite normals."""
    model = EmpiricalForceReference()
    prim = relax_positions(bilayer("AB"), model)
    phonon = harmonic_phonons(prim, model, 3)
    sampler = ThermalSampler(phonon, prim)
    z = sampler.gamma_normals(0, 60, seed=5)
    assert z.shape == (60, 12)
    np.testing.assert_array_equal(sampler.gamma_normals(7, 3, seed=5), z[7:10])
    u = sampler.displacements(300.0, 0, 60, seed=5)
    _, kappa = np.unique(phonon.primitive.s2p_map, return_inverse=True)
    uniform = np.stack([u[:, kappa == k].mean(axis=1) for k in range(4)], axis=1).reshape(60, -1)
    coef, *_ = np.linalg.lstsq(z, uniform, rcond=None)
    assert np.abs(z @ coef - uniform).max() < 1e-12 * np.abs(uniform).max() + 1e-15
    assert np.abs(uniform).max() > 1e-4  # a real signal, not zero
    anti = sampler.gamma_normals(0, 4, seed=5, antithetic=True)
    np.testing.assert_array_equal(anti[1], -anti[0])
