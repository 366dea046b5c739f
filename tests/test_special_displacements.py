"""Special displacements (ZG; Zacharias and Giustino, PRB 94, 075125 (2016); PRR 2, 013357 (2020)):
cross terms cancelled, exact zero-point amplitudes, the thermal displacement tensor, keyed pairs.

On the 6x6 AB bilayer with the empirical reference (36 q-points, 12 branches): the ZG error
function falls with the supercell (PRB 2016, Fig. 3), and 3x3 has too few q-points for 5 %."""

import dataclasses

import numpy as np
import pytest
from phonopy.phonon.random_displacements import RandomDisplacements

from mlepi_core.engine import MCSettings, MonteCarloEngine
from mlepi_core.phonons import harmonic_phonons, relax_positions
from mlepi_core.reference.lammps_forces import EmpiricalForceReference
from mlepi_core.reference.slater_koster import SlaterKosterPz
from mlepi_core.sampling import ThermalSampler
from mlepi_core.special_displacements import ERROR_THRESHOLD, walsh_rows
from mlepi_core.structures import bilayer
from mlepi_core.units import HBAR_EV_S, OMEGA2_SI_PER_EV_A2_AMU


@pytest.fixture(scope="module")
def lattice():
    model = EmpiricalForceReference()
    prim = relax_positions(bilayer("AB"), model)
    return prim, harmonic_phonons(prim, model, 6)


@pytest.fixture(scope="module")
def sampler(lattice):
    prim, phonon = lattice
    return ThermalSampler(phonon, prim)


def thermal_tensor(phonon, sampler, temperature):
    """(n_kappa, 3, 3) Angstrom^2: phonopy's analytic <u u^T> per primitive atom (averaged over images)."""
    rd = RandomDisplacements(phonon.supercell, phonon.primitive, phonon.force_constants, dist_func="quantum")
    rd.frequencies = sampler._rd.frequencies
    rd.run_correlation_matrix(temperature)
    blocks = rd.uu[np.arange(len(rd.uu)), np.arange(len(rd.uu))]  # (N, 3, 3)
    kappa = sampler.special.kappa
    return np.array([blocks[kappa == k].mean(axis=0) for k in range(kappa.max() + 1)])


def cell_tensor(u, kappa):
    """(S, n_kappa, 3, 3): <u u^T> over the images of each primitive atom, per configuration."""
    return np.stack([np.einsum("sia,sib->sab", u[:, kappa == k], u[:, kappa == k]) / (kappa == k).sum()
                     for k in range(kappa.max() + 1)], axis=1)


def test_walsh_rows_are_orthogonal_sign_patterns():
    w = walsh_rows(12)
    assert w.shape == (16, 12) and set(np.unique(w)) == {-1.0, 1.0}
    assert np.array_equal(w.T @ w, 16 * np.eye(12))  # every product S_nu S_nu' cancels over the rows
    assert np.array_equal(w[1], np.tile([1.0, -1.0], 6))  # "+,-,+,-"


@pytest.mark.parametrize("temperature", [0.0, 300.0])
def test_zg_cancels_the_cross_terms(lattice, sampler, temperature):
    """The error function, recomputed from the displacements and phonopy's analytic tensor, is
    below ZG.x's bound for three sign patterns; all-plus signs and the undescended Walsh start
    leave cross terms above it."""
    zg = sampler.special
    thermal = np.einsum("kaa->ka", thermal_tensor(lattice[1], sampler, temperature))
    for pair in range(3):
        config = zg.configuration(temperature, seed=0, pair=pair)
        u = sampler.special_displacements(temperature, 2 * pair, 1, seed=0)
        msd = np.einsum("skaa->ska", cell_tensor(u, zg.kappa))[0]
        error = np.abs(msd / thermal - 1.0).mean()
        assert error < ERROR_THRESHOLD, error
        assert error == pytest.approx(config.error, rel=1e-6)  # the search's own bookkeeping
        assert zg.errors(temperature, zg.start(0, pair)[None])[0] > config.error
    all_plus = np.ones((1, zg.n_a + zg.n_b, zg.n_bands))
    assert zg.errors(temperature, all_plus)[0] > ERROR_THRESHOLD
    # the signs are +-1 per mode (frozen acoustic modes aside)
    assert set(np.unique(zg.configuration(temperature, 0, 0).signs)) == {-1.0, 1.0}


def test_zg_at_zero_kelvin_is_exactly_zero_point(lattice, sampler):
    """Projected on the supercell's normal modes (an independent diagonalisation), each degenerate
    subspace carries exactly n hbar / (2 omega) of <Q^2>: every mode at +-sigma(T = 0), no more, no
    less (Monte Carlo has this only on average); the acoustic modes at Gamma are frozen."""
    prim, phonon = lattice
    fc, m = phonon.force_constants, sampler.ideal.get_masses()
    n = len(m)
    d = (fc / np.sqrt(m[:, None, None, None] * m[None, :, None, None])).transpose(0, 2, 1, 3)
    w2, e = np.linalg.eigh(d.reshape(3 * n, 3 * n))
    u = sampler.special_displacements(0.0, 0, 2, seed=4)
    q = (u.reshape(2, -1) * np.sqrt(np.repeat(m, 3))) @ e  # normal coordinates (amu^1/2 A)
    assert np.abs(q[:, :3]).max() < 1e-8  # acoustic at Gamma: frozen
    omega = np.sqrt(w2[3:] * OMEGA2_SI_PER_EV_A2_AMU)  # rad/s
    zero_point = HBAR_EV_S / (2 * omega) * OMEGA2_SI_PER_EV_A2_AMU  # amu A^2, coth = 1
    groups = np.split(np.arange(len(omega)), np.flatnonzero(np.diff(np.sqrt(w2[3:])) > 1e-5) + 1)
    for g in groups:
        for k in range(2):
            assert (q[k, 3 + g] ** 2).sum() == pytest.approx(zero_point[g].sum(), rel=1e-6)
    # not Monte Carlo's: a Gaussian draw misses this by O(1/sqrt(n)) per subspace
    qmc = (sampler.displacements(0.0, 0, 1, seed=4).reshape(1, -1) * np.sqrt(np.repeat(m, 3))) @ e
    ratio = np.array([(qmc[0, 3 + g] ** 2).sum() / zero_point[g].sum() for g in groups])
    assert np.abs(ratio - 1).max() > 0.1


def test_zg_and_monte_carlo_share_the_thermal_displacement_tensor(lattice, sampler):
    """At 300 K the ZG pair's per-atom <u_alpha^2> matches phonopy's analytic tensor (within the
    error function's bound), and the Monte Carlo mean over 400 samples matches the whole tensor
    within its standard error (z < 5): the two estimators sample one tensor. (The off-diagonal
    <u_x u_y> of one ZG configuration is not constrained: a degenerate pair such as the
    interlayer shear mode at Gamma is displaced along one direction of its plane.)"""
    zg = sampler.special
    exact = thermal_tensor(lattice[1], sampler, 300.0)
    zg_tensor = cell_tensor(sampler.special_displacements(300.0, 0, 2, seed=0), zg.kappa)
    assert np.array_equal(zg_tensor[0], zg_tensor[1])  # +u and -u
    diag, exact_diag = np.einsum("kaa->ka", zg_tensor[0]), np.einsum("kaa->ka", exact)
    assert np.abs(diag / exact_diag - 1).mean() < ERROR_THRESHOLD
    # a Gaussian draw of the same phonons misses the diagonal by far more
    one_mc = np.einsum("kaa->ka", cell_tensor(sampler.displacements(300.0, 0, 1, seed=1), zg.kappa)[0])
    assert np.abs(one_mc / exact_diag - 1).mean() > ERROR_THRESHOLD
    mc = cell_tensor(sampler.displacements(300.0, 0, 400, seed=1), zg.kappa)
    z = (mc.mean(axis=0) - exact) / (mc.std(axis=0, ddof=1) / np.sqrt(len(mc)))
    assert np.abs(z).max() < 5.0, z  # 36 components: a 5-sigma miss by chance < 1e-4


def test_zg_configurations_are_keyed_pairs(sampler):
    """Configuration j is the same in any batch; 2p + 1 is -1 times 2p; other pairs differ."""
    batch = sampler.special_displacements(300.0, 0, 6, seed=2)
    for first, count in ((0, 1), (3, 2), (5, 1), (1, 4)):
        part = sampler.special_displacements(300.0, first, count, seed=2)
        np.testing.assert_allclose(part, batch[first:first + count], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(batch[1::2], -batch[0::2])
    assert np.abs(batch[0] - batch[2]).max() > 1e-3
    assert np.abs(sampler.special_displacements(300.0, 0, 1, seed=3)[0] - batch[0]).max() > 1e-3


def test_engine_zg_sampling_mode(lattice):
    """MCSettings(sampling="zg") drives ZG pairs through the engine: v_F below the static lattice,
    the standard error from pair means, other settings refused."""
    prim, phonon = lattice
    settings = MCSettings(temperatures=(300.0,), n_samples=4, batch_size=3, sampling="zg", spectral_every=0)
    engine = MonteCarloEngine(prim, EmpiricalForceReference(), SlaterKosterPz(), settings, lattice=lattice)
    list(engine.run(300.0))
    idx, vf = engine.sample_values(300.0)
    stats = engine.statistics(300.0)
    pairs = vf.reshape(2, 2).mean(axis=1)
    assert stats["vf"] == pytest.approx(vf.mean(), rel=1e-12)
    assert stats["vf_se"] == pytest.approx(pairs.std(ddof=1) / np.sqrt(2), rel=1e-9)
    assert np.all(vf < engine.static["vf"])
    atoms = engine.sample_atoms(300.0, 1)
    np.testing.assert_allclose(atoms.positions - engine.sampler.ideal.positions,
                               engine.sampler.special_displacements(300.0, 1, 1, 0)[0], atol=1e-12)
    # one lone configuration: its value, no error bar
    single = engine.estimator_units(idx[:1], vf[:1])
    assert np.array_equal(single, vf[:1])
    for bad in ({"n_samples": 3}, {"antithetic": True, "n_samples": 4}, {"sampling": "zz"}):
        with pytest.raises(ValueError):
            dataclasses.replace(settings, **bad)


def normal_coordinates(lattice, sampler, u):
    """(S, 3N - 3) mass-weighted normal coordinates of displacements u (an independent
    diagonalisation), the zero-point <Q^2> of each mode, and the degenerate subspaces."""
    prim, phonon = lattice
    fc, m = phonon.force_constants, sampler.ideal.get_masses()
    n = len(m)
    d = (fc / np.sqrt(m[:, None, None, None] * m[None, :, None, None])).transpose(0, 2, 1, 3)
    w2, e = np.linalg.eigh(d.reshape(3 * n, 3 * n))
    q = (u.reshape(len(u), -1) * np.sqrt(np.repeat(m, 3))) @ e
    omega = np.sqrt(w2[3:] * OMEGA2_SI_PER_EV_A2_AMU)
    zero_point = HBAR_EV_S / (2 * omega) * OMEGA2_SI_PER_EV_A2_AMU
    groups = np.split(np.arange(len(omega)), np.flatnonzero(np.diff(np.sqrt(w2[3:])) > 1e-5) + 1)
    return q, zero_point, groups


@pytest.mark.parametrize("temperature", [0.0, 300.0])
def test_gauss_hermite_blocks_have_the_gaussian_moments(sampler, temperature):
    """Over a block of six configurations every moving mode takes +-sqrt(3) once each and 0
    four times: <x^2> = 1, <x^4> = 3 (the Gaussian's; ZG's +-1 signs give 1), odd moments 0;
    each mode moves in exactly one pair of the block."""
    zg = sampler.special
    for block in range(2):
        signs = np.array([zg.configuration(temperature, 0, 3 * block + k, "gauss-hermite").signs for k in range(3)])
        x = np.concatenate([signs, -signs])[:, ~zg.frozen]  # (6, moving modes)
        np.testing.assert_allclose((x ** 2).mean(axis=0), 1.0, rtol=1e-12)
        np.testing.assert_allclose((x ** 4).mean(axis=0), 3.0, rtol=1e-12)
        np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-12)
        np.testing.assert_array_equal((np.abs(signs[:, ~zg.frozen]) > 0).sum(axis=0), 1)
    textbook = zg.configuration(temperature, 0, 0).signs[~zg.frozen]
    assert np.allclose(textbook ** 4, 1.0)


@pytest.mark.parametrize("temperature", [0.0, 300.0])
def test_gauss_hermite_blocks_cancel_the_cross_terms(lattice, sampler, temperature):
    """The block's mean <u_{kappa alpha}^2>, from its displacements against phonopy's analytic
    tensor, is within ZG.x's bound and equals the search's bookkeeping; one pair alone (a third
    of the modes, three times the weight) is far from it."""
    zg = sampler.special
    thermal = np.einsum("kaa->ka", thermal_tensor(lattice[1], sampler, temperature))
    u = sampler.special_displacements(temperature, 6, 6, seed=0, rule="gauss-hermite")  # block 1
    msd = np.einsum("skaa->ska", cell_tensor(u, zg.kappa))
    error = np.abs(msd.mean(axis=0) / thermal - 1.0).mean()
    assert error < ERROR_THRESHOLD, error
    assert error == pytest.approx(zg.configuration(temperature, 0, 3, "gauss-hermite").error, rel=1e-6)
    assert np.abs(msd[0] / thermal - 1.0).mean() > ERROR_THRESHOLD


def test_gauss_hermite_blocks_at_zero_kelvin_carry_the_zero_point_motion(lattice, sampler):
    """Projected on the supercell's normal modes, the block's mean of sum Q^2 over each
    degenerate subspace is exactly its zero-point n hbar / (2 omega); acoustic modes at Gamma
    stay frozen."""
    u = sampler.special_displacements(0.0, 0, 6, seed=4, rule="gauss-hermite")
    q, zero_point, groups = normal_coordinates(lattice, sampler, u)
    assert np.abs(q[:, :3]).max() < 1e-8
    for g in groups:
        assert (q[:, 3 + g] ** 2).sum(axis=1).mean() == pytest.approx(zero_point[g].sum(), rel=1e-6)


def test_gauss_hermite_configurations_are_keyed(sampler):
    """Configuration j is the same in any batch; 2p + 1 = -(2p); another seed differs; an
    unknown rule is refused."""
    batch = sampler.special_displacements(300.0, 0, 12, seed=2, rule="gauss-hermite")
    for first, count in ((0, 1), (5, 3), (7, 5)):
        part = sampler.special_displacements(300.0, first, count, seed=2, rule="gauss-hermite")
        np.testing.assert_allclose(part, batch[first:first + count], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(batch[1::2], -batch[0::2])
    other = sampler.special_displacements(300.0, 0, 1, seed=3, rule="gauss-hermite")
    assert np.abs(other[0] - batch[0]).max() > 1e-3
    with pytest.raises(ValueError, match="rule"):
        sampler.special.configuration(300.0, 0, 0, rule="gauss")


def test_engine_gauss_hermite_sampling_mode(lattice):
    """MCSettings(sampling="zg-gh"): the standard error from the means of whole blocks of six,
    other counts refused."""
    prim, phonon = lattice
    settings = MCSettings(temperatures=(0.0,), n_samples=12, batch_size=5, sampling="zg-gh", spectral_every=0)
    engine = MonteCarloEngine(prim, EmpiricalForceReference(), SlaterKosterPz(), settings, lattice=lattice)
    list(engine.run(0.0))
    idx, vf = engine.sample_values(0.0)
    blocks = vf.reshape(2, 6).mean(axis=1)
    stats = engine.statistics(0.0)
    assert stats["vf"] == pytest.approx(vf.mean(), rel=1e-12)
    assert stats["vf_se"] == pytest.approx(blocks.std(ddof=1) / np.sqrt(2), rel=1e-9)
    assert np.array_equal(engine.estimator_units(idx[:4], vf[:4]), vf[:4])  # no whole block yet
    np.testing.assert_allclose(engine.sample_atoms(0.0, 7).positions - engine.sampler.ideal.positions,
                               engine.sampler.special_displacements(0.0, 7, 1, 0, "gauss-hermite")[0], atol=1e-12)
    for bad in ({"n_samples": 8}, {"antithetic": True}):
        with pytest.raises(ValueError):
            dataclasses.replace(settings, **bad)
