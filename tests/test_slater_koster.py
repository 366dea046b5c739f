"""The Slater-Koster p_z reference (docs/physics.md#twisted-bilayers-the-slater-koster-p_z-model): gamma_1, the Dirac cone, symmetry."""

import numpy as np
import pytest

from mlepi_core.electrons import bloch_matrices, solve_bands
from mlepi_core.reference.slater_koster import (SlaterKosterPz, hoppings, local_normals, switch, v_pi,
                                                v_sigma)
from mlepi_core.structures import bilayer, monolayer, supercell, twisted_bilayer
from mlepi_core.units import VELOCITY_1E6_M_PER_S_PER_EV_A

SK = SlaterKosterPz()
K_FRAC = np.array([2 / 3, 1 / 3, 0.0])  # K of mlepi's primitive cells (a1 = a (1, 0), a2 = a (1/2, sqrt3/2))


def bands(atoms, k_frac):
    (b,) = SK.blocks([atoms])
    h, s = bloch_matrices(b, np.atleast_2d(k_frac))
    return solve_bands(h, s)


def test_ab_bilayer_gamma1_is_the_literature_value():
    """The split-off levels at K of AB bilayer at the parametrisation's d = 3.35 A sit at +-gamma_1
    about the Dirac point: gamma_1 = 0.34 eV (GFN1-xTB gives 0.14 eV, DFT 0.38-0.40 eV)."""
    e = bands(bilayer("AB", d=3.35), K_FRAC)[0]
    assert e[1] == pytest.approx(e[2], abs=1e-9)  # the two low-energy states touch at K
    gamma1 = 0.5 * (e[3] - e[0])
    assert gamma1 == pytest.approx(0.34, abs=0.01)


def test_monolayer_dirac_cone_velocity_from_its_hoppings():
    """A Dirac point at K, and v_F from the bands equals (1/hbar)|grad f(K)|, f(k) the A->B
    structure factor of the model's own hoppings (second neighbours, A->A, add no slope at K)."""
    atoms = monolayer()
    e_k = bands(atoms, K_FRAC)[0]
    assert e_k[1] - e_k[0] < 1e-9
    recip = 2 * np.pi * np.linalg.inv(np.asarray(atoms.cell)).T
    k_cart = K_FRAC @ recip
    q = 1e-4  # 1/A
    slopes = []
    for angle in np.radians([0.0, 37.0, 90.0]):
        dk = q * np.array([np.cos(angle), np.sin(angle), 0.0])
        e = bands(atoms, (k_cart + dk) @ np.linalg.inv(recip))[0]
        slopes.append(0.5 * (e[1] - e[0]) / q)  # eV A
    i, j, shift, t = hoppings(atoms)
    ab = (i == 0) & (j == 1)
    d = atoms.positions[1] + shift[ab] @ np.asarray(atoms.cell) - atoms.positions[0]
    grad = (1j * d * (t[ab] * np.exp(1j * d @ k_cart))[:, None]).sum(axis=0)
    # |f(K + q)| = |grad f . q| with grad f = g_r + i g_i, g_r _|_ g_i, |g_r| = |g_i|: an isotropic cone
    v_expected = np.linalg.norm(grad) / np.sqrt(2) * VELOCITY_1E6_M_PER_S_PER_EV_A
    for s in slopes:
        assert s * VELOCITY_1E6_M_PER_S_PER_EV_A == pytest.approx(v_expected, rel=0.02)
    # the nearest-neighbour value 3 a_cc |t1| / (2 hbar), corrected by the third-neighbour term
    t1, t3 = v_pi(1.42028), v_pi(2 * 1.42028)
    v_nn13 = 1.5 * 1.42028 * abs(t1 - 2 * t3) * VELOCITY_1E6_M_PER_S_PER_EV_A
    assert v_expected == pytest.approx(v_nn13, rel=0.02)


def test_spectrum_is_invariant_under_in_plane_rotations_and_translations():
    rng = np.random.default_rng(3)
    atoms = supercell(bilayer("AB"), 3)
    atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
    ref = bands(atoms, [0.0, 0.0, 0.0])
    moved = atoms.copy()
    angle = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    moved.set_cell(np.asarray(atoms.cell) @ rot.T, scale_atoms=False)
    moved.positions = atoms.positions @ rot.T + rng.normal(0.0, 2.0, 3)
    np.testing.assert_allclose(bands(moved, [0.0, 0.0, 0.0]), ref, atol=1e-10)


def test_hermitian_and_sparse_equals_blocks():
    rng = np.random.default_rng(4)
    atoms = supercell(bilayer("AB"), 3)
    atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
    k = np.array([0.13, -0.27, 0.0])
    (b,) = SK.blocks([atoms])
    h, s = bloch_matrices(b, k[None])
    np.testing.assert_allclose(h[0], h[0].conj().T, atol=1e-14)
    np.testing.assert_array_equal(s[0], np.eye(len(atoms)))
    np.testing.assert_allclose(SK.sparse_hk(atoms, k).toarray(), h[0], atol=1e-14)


def test_local_normals_reduce_to_the_flat_layer_formula():
    flat = bilayer("AB")
    np.testing.assert_allclose(local_normals(flat), np.tile([0.0, 0.0, 1.0], (len(flat), 1)), atol=1e-14)
    i, j, shift, t = hoppings(flat)
    d = flat.positions[j] + shift @ np.asarray(flat.cell) - flat.positions[i]
    r = np.linalg.norm(d, axis=1)
    cos2 = (d[:, 2] / r) ** 2
    np.testing.assert_allclose(t, (v_pi(r) * (1 - cos2) + v_sigma(r) * cos2) * switch(r), atol=1e-15)
    # a rippled layer: normals tilt, and stay unit vectors along +z
    rippled = supercell(monolayer(), 6)
    x = rippled.positions[:, 0]
    rippled.positions[:, 2] += 0.3 * np.sin(2 * np.pi * x / rippled.cell[0, 0])
    n = local_normals(rippled)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-12)
    assert (n[:, 2] > 0).all() and np.abs(n[:, 0]).max() > 0.1


def test_twisted_cell_blocks_and_refusals():
    atoms = twisted_bilayer(1, 2)
    (b,) = SK.blocks([atoms])
    assert b.meta["orbital"] == "p_z along the local normal" and b.meta["valence_electrons"] == len(atoms)
    assert (b.norb == 1).all() and b.h.shape[1:] == (1, 1)
    boron = monolayer()
    boron.numbers[:] = 5
    with pytest.raises(ValueError, match="carbon only"):
        SK.blocks([boron])
