"""Single phonon modes: names at Gamma, layer character, commensurate cells, animation frames.

AB bilayer and monolayer graphene with the empirical reference (LCBOP + KC) in a 3x3x1
force-constant supercell: Gamma is commensurate with every supercell, so the Gamma
frequencies are those of the force model itself.
"""

import numpy as np
import pytest

from mlepi_core.modes import (Mode, branch_layer_character, commensurate_supercell,
                              displacement_frames, mode_at, mode_frames)
from mlepi_core.phonons import dispersion, harmonic_phonons, relax_positions
from mlepi_core.reference.lammps_forces import EmpiricalForceReference
from mlepi_core.structures import build

GAMMA = [0.0, 0.0, 0.0]
M = [0.5, 0.0, 0.0]
K = [1 / 3, 1 / 3, 0.0]


@pytest.fixture(scope="module")
def model():
    return EmpiricalForceReference()


@pytest.fixture(scope="module")
def ab(model):
    prim = relax_positions(build("AB"), model)
    return prim, harmonic_phonons(prim, model, 3)


@pytest.fixture(scope="module")
def mono(model):
    prim = build("monolayer")  # flat and force-free by symmetry
    return prim, harmonic_phonons(prim, model, 3)


@pytest.fixture(scope="module")
def ab_gamma(ab):
    prim, phonon = ab
    return [mode_at(phonon, prim, GAMMA, b) for b in range(3 * len(prim))]


def _layer_sums(mode: Mode, prim) -> np.ndarray:
    """Mass-weighted eigenvector sum of each layer, (n_layers, 3): rigid motion of each layer."""
    layer = prim.arrays["layer"]
    mw = mode.eigenvector * np.sqrt(prim.get_masses())[:, None]
    return np.array([mw[layer == ell].sum(axis=0) for ell in range(layer.max() + 1)])


def test_gamma_acoustic_modes_are_za_ta_la(ab, ab_gamma):
    acoustic = [m for m in ab_gamma if abs(m.frequency_cm1) < 1.0]
    assert [m.band for m in acoustic] == [0, 1, 2]
    assert [m.character.name for m in acoustic] == ["ZA", "TA", "LA"]
    assert all(m.character.acoustic for m in acoustic)
    assert not any(m.character.acoustic for m in ab_gamma[3:])
    assert acoustic[0].character.out_of_plane > 0.999
    assert all(m.character.in_plane > 0.999 for m in acoustic[1:])
    # the degenerate zero-frequency set is rotated onto rigid translations of the whole bilayer
    for m in acoustic:
        s = _layer_sums(m, ab[0])
        assert np.allclose(s[0], s[1], atol=1e-6)
        assert m.character.layer_symmetry == "symmetric"


def test_gamma_shear_pair_and_breathing_mode(ab, ab_gamma):
    prim, _ = ab
    shear = [m for m in ab_gamma if m.character.name == "shear"]
    breathing = [m for m in ab_gamma if m.character.name == "breathing"]
    assert len(shear) == 2 and len(breathing) == 1
    f_shear = [m.frequency_cm1 for m in shear]
    assert abs(f_shear[0] - f_shear[1]) < 0.01  # E_g pair, degenerate by the C3 axis
    assert 5 < f_shear[0] < breathing[0].frequency_cm1 < 150
    for m in shear + breathing:
        assert m.character.layer_symmetry == "antisymmetric"
        s = _layer_sums(m, prim)  # the layers move rigidly against each other
        assert np.allclose(s[0], -s[1], atol=1e-6) and np.linalg.norm(s[0]) > 0.5
    assert all(m.character.in_plane > 0.999 for m in shear)
    assert breathing[0].character.out_of_plane > 0.999
    assert breathing[0].describe().startswith("breathing mode: ")


def test_gamma_optical_modes(ab_gamma):
    zo = [m for m in ab_gamma if m.character.name == "ZO"]
    g = [m for m in ab_gamma if m.character.name == "G"]
    assert [m.band for m in zo] == [6, 7] and [m.band for m in g] == [8, 9, 10, 11]
    assert all(m.character.in_plane > 0.999 and m.frequency_cm1 > 1200 for m in g)
    assert all(m.character.out_of_plane > 0.999 and 300 < m.frequency_cm1 < 1200 for m in zo)
    # the layers' G patterns are in phase in one pair (E_g or E_u) and in antiphase in the other
    assert sorted(m.character.layer_symmetry for m in g) == ["antisymmetric"] * 2 + ["symmetric"] * 2
    sym = next(m for m in g if m.character.layer_symmetry == "symmetric")
    assert sym.describe() == f"G mode: {sym.frequency_cm1:.0f} cm^-1, in-plane, layer-symmetric"


def test_fractions_sum_to_one_on_the_path(ab):
    prim, phonon = ab
    q = dispersion(phonon, points_per_segment=11).q_frac
    w = branch_layer_character(phonon, prim, q)
    assert w.shape == (len(q), 12, 2)
    assert np.allclose(w.sum(axis=2), 1.0, atol=1e-10) and w.min() >= 0
    # AB's inversion centre swaps the layers and q -> -q; time reversal brings -q back
    assert np.allclose(w, 0.5, atol=1e-6)
    for qi in q[::4]:
        for b in range(12):
            c = mode_at(phonon, prim, qi, b).character
            assert c.in_plane + c.out_of_plane == pytest.approx(1.0, abs=1e-10)
            assert sum(c.layer_weights) == pytest.approx(1.0, abs=1e-10)


def test_isotope_labelled_layer_carries_its_own_g_modes(ab, model):
    prim, _ = ab
    labelled = prim.copy()
    masses = labelled.get_masses()
    masses[labelled.arrays["layer"] == 1] = 13.0034  # 13C top layer
    labelled.set_masses(masses)
    phonon = harmonic_phonons(labelled, model, 3)
    w = branch_layer_character(phonon, labelled, [GAMMA, M])
    # G splits by sqrt(12/13): the lower pair lives on the 13C layer, the upper on the 12C one
    assert np.all(w[0, 8:10, 1] > 0.99) and np.all(w[0, 10:12, 0] > 0.99)
    # translations share the norm of the mass-weighted eigenvector in proportion to mass
    assert w[0, 0, 1] == pytest.approx(13.0034 / (13.0034 + 12.011), abs=1e-6)
    assert np.allclose(w.sum(axis=2), 1.0)
    top_g = mode_at(phonon, labelled, GAMMA, 11)
    assert top_g.character.layer_weights[0] > 0.99 and "on layer 0" in top_g.describe()


def test_commensurate_supercell():
    assert commensurate_supercell(GAMMA) == (1, 1)
    assert commensurate_supercell(M) == (2, 1)
    assert commensurate_supercell(K) == (3, 3)
    assert commensurate_supercell([0.25, 0.0, 0.0]) == (4, 1)
    assert commensurate_supercell([-0.5, 2 / 3, 0.3]) == (2, 3)  # q_z plays no part
    assert commensurate_supercell([1.0, 0.0, 0.0]) == (1, 1)
    # no n <= 12 makes n * 0.1234 integer; 8 * 0.1234 = 0.987 is the nearest
    assert commensurate_supercell([0.1234, 0.0, 0.0]) == (8, 1)
    assert commensurate_supercell([0.1234, 0.0, 0.0], max_n=7) == (1, 1)  # then n = 1 is nearest


@pytest.mark.parametrize("q, band, size", [(M, 0, (2, 1)), (M, 6, (2, 1)), (K, 0, (3, 3))])
def test_mode_frames_are_one_period_and_match_phonopy_modulation(ab, q, band, size):
    prim, phonon = ab
    mode = mode_at(phonon, prim, q, band)
    n = 16
    ideal, frames = mode_frames(prim, mode, amplitude_a=0.3, n_frames=n)
    cells = size[0] * size[1]
    assert len(ideal) == 4 * cells and frames.shape == (n, 4 * cells, 3)
    assert np.array_equal(ideal.arrays["layer"], np.tile(prim.arrays["layer"], cells))
    u = frames - ideal.positions
    assert np.linalg.norm(u, axis=-1).max() == pytest.approx(0.3, abs=1e-12)
    assert np.abs(u[n // 2] - u[0]).max() > 0.1  # frames move
    # every frame is Re[U exp(-2 pi i t / n)] with U = u(0) + i u(n/4): periodic, frame n = frame 0
    wave = u[0] + 1j * u[n // 4]
    t = np.arange(n + 1)
    expected = (wave[None] * np.exp(-2j * np.pi * t / n)[:, None, None]).real
    assert np.allclose(u, expected[:n], atol=1e-12) and np.allclose(expected[n], u[0], atol=1e-12)
    # phonopy's own modulation of the same mode, atoms matched by position
    mod = phonon.run_modulations([size[0], size[1], 1], [[q, band, 1.0, 0.0]])
    cell = np.asarray(mod.supercell.cell)
    d = (ideal.positions[:, None] - mod.supercell.positions[None]) @ np.linalg.inv(cell)
    d -= np.round(d)
    match = np.argmin(np.linalg.norm(d @ cell, axis=-1), axis=1)
    assert sorted(match) == list(range(len(ideal)))
    theirs = mod.modulations[0][match]
    overlap = abs(np.vdot(theirs, wave)) / (np.linalg.norm(theirs) * np.linalg.norm(wave))
    assert overlap == pytest.approx(1.0, abs=1e-8)  # 0.74 (M) / 0.58 (K) with lattice-only phases


def test_displacement_frames():
    rng = np.random.default_rng(0)
    atoms = build("AB", size=2)
    u = rng.normal(0.0, 0.01, (len(atoms), 3))
    frames = displacement_frames(atoms, u, exaggeration=10.0, n_frames=8)
    assert frames.shape == (8, len(atoms), 3)
    assert np.allclose(frames[0], atoms.positions)
    assert np.allclose(frames[2], atoms.positions + 10.0 * u)
    assert np.allclose(frames[6], atoms.positions - 10.0 * u)
    assert np.allclose(displacement_frames(atoms.positions, u, 10.0, 8), frames)
    with pytest.raises(ValueError, match="do not match"):
        displacement_frames(atoms, u[:-1])


def test_monolayer_has_one_layer_and_no_layer_symmetry(mono):
    prim, phonon = mono
    w = branch_layer_character(phonon, prim, [GAMMA, M, K])
    assert w.shape == (3, 6, 1) and np.allclose(w, 1.0)
    gamma = [mode_at(phonon, prim, GAMMA, b) for b in range(6)]
    assert [m.character.name for m in gamma] == ["ZA", "TA", "LA", "ZO", "G", "G"]
    for q in (GAMMA, M):
        for b in range(6):
            c = mode_at(phonon, prim, q, b).character
            assert c.layer_symmetry is None and c.layer_weights == pytest.approx((1.0,))
    assert "layer" not in gamma[4].describe()


def test_names_away_from_gamma_and_small_q(ab):
    prim, phonon = ab
    # at q = 0.01 b1 the TA (LA) mode moves across (along) q; the shear branch is still shear
    near = [mode_at(phonon, prim, [0.01, 0, 0], b).character.name for b in range(6)]
    assert near == ["ZA", "TA", "shear", "LA", "shear", "breathing"]
    m = mode_at(phonon, prim, M, 0)
    assert m.character.name == "out-of-plane acoustic-like"
    assert m.describe().startswith("Band 0 at q = (0.500, 0.000), out-of-plane acoustic-like: ")


def test_mode_at_checks_its_inputs(ab, mono):
    prim, phonon = ab
    with pytest.raises(ValueError, match="not the phonopy object's primitive"):
        mode_at(phonon, mono[0], GAMMA, 0)
    with pytest.raises(ValueError, match="band must be in 0..11"):
        mode_at(phonon, prim, GAMMA, 12)
    mode = mode_at(phonon, prim, GAMMA, 0)
    with pytest.raises(ValueError):
        mode.eigenvector[0, 0] = 1.0  # read-only: a Mode is a value


def test_twisted_bilayer_uses_rigid_layer_sums(model):
    # no translation maps one twisted layer on the other; Gamma is exact in a 1x1 cell
    tbg = build("tbg:1,2")
    phonon = harmonic_phonons(tbg, model, 1)
    modes = [mode_at(phonon, tbg, GAMMA, b) for b in range(8)]
    names = [m.character.name for m in modes]
    assert names.count("shear") == 2 and names.count("breathing") == 1
    assert sorted(n for n in names if n in ("ZA", "TA", "LA")) == ["LA", "TA", "ZA"]
    for m in modes:
        if m.character.name in ("shear", "breathing"):
            assert m.character.layer_symmetry == "antisymmetric"
        if m.character.acoustic:
            assert m.character.layer_symmetry == "symmetric"
