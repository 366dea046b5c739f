"""Structures: builders, layer detection, loading and validation (docs/physics.md#structures-and-layers).

Every check is geometric and exact up to float64 round-off, so tolerances are tight
(1e-6 A on positions the builders compute, 1e-4 A after text files that store a
limited number of digits).
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.io import write
from vesin import NeighborList

from mlepi_core.structures import (
    StructureError,
    assign_layers,
    bilayer,
    build,
    detect_layers,
    load,
    monolayer,
    supercell,
    twist_angle,
    twisted_bilayer,
    validate,
)
from mlepi_core.units import BILAYER_D, GRAPHENE_A, HBN_A, HBN_D

BOND_A = GRAPHENE_A / np.sqrt(3)  # C-C bond, 1.420 A
TWISTS = {  # (m, n): twist angle in degrees (Lopes dos Santos et al. 2012, Table I)
    (1, 2): 21.79,
    (2, 3): 13.17,
    (3, 4): 9.43,
    (4, 5): 7.34,
    (6, 7): 5.09,
}


# --- helpers -----------------------------------------------------------------------

def _pairs(atoms: Atoms, cutoff: float):
    """Full periodic neighbour list: i, j, distances, distance vectors."""
    return NeighborList(cutoff=cutoff, full_list=True).compute(
        atoms.positions, np.asarray(atoms.cell), True, quantities="ijdD")


def _assert_honeycomb(atoms: Atoms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every atom has exactly 3 neighbours, all in its own layer at a/sqrt(3).

    The cutoff 1.8 A lies between the bond (1.42 A) and both the second neighbour
    (2.46 A) and any interlayer distance used here, so a missing or duplicated atom at
    a cell edge shows up as a count other than 3 or as a short distance.
    """
    i, j, d, D = _pairs(atoms, 1.8)
    layer = atoms.arrays["layer"]
    np.testing.assert_array_equal(np.bincount(i, minlength=len(atoms)), 3)
    np.testing.assert_allclose(d, BOND_A, atol=1e-6)
    np.testing.assert_array_equal(layer[i], layer[j])
    return i, j, D


def _bond_orientation_deg(D: np.ndarray) -> tuple[float, float]:
    """Orientation of a set of bond vectors modulo 60 degrees, and its coherence.

    Uses the six-fold order parameter <exp(6 i phi)>: its phase / 6 is the common
    orientation, its modulus is 1 when every bond sits on one hexagonal star.
    """
    phi = np.arctan2(D[:, 1], D[:, 0])
    psi = np.mean(np.exp(6j * phi))
    return float(np.degrees(np.angle(psi)) / 6 % 60), float(abs(psi))


def _inplane_min_image(atoms: Atoms, k: int, others: np.ndarray) -> np.ndarray:
    """In-plane minimum-image distances (A) from atom k to the atoms ``others``."""
    cell2 = np.asarray(atoms.cell)[:2, :2]
    dxy = atoms.positions[others, :2] - atoms.positions[k, :2]
    frac = dxy @ np.linalg.inv(cell2)
    frac -= np.round(frac)
    return np.linalg.norm(frac @ cell2, axis=1)


def _n_atoms_stacked(atoms: Atoms, tol: float = 0.01) -> int:
    """Number of atoms with an atom of the other layer directly above or below."""
    layer = atoms.arrays["layer"]
    count = 0
    for k in range(len(atoms)):
        others = np.flatnonzero(layer != layer[k])
        count += bool(np.any(_inplane_min_image(atoms, k, others) < tol))
    return count


def _same_positions(a: Atoms, b: Atoms, atol: float, frame: bool = True) -> None:
    """Same cell and same positions modulo the lattice (atom order kept).

    With ``frame=False`` only the cell's lengths and angles and the fractional
    coordinates are compared: formats such as CIF do not store the cell's orientation.
    """
    if frame:
        np.testing.assert_allclose(np.asarray(a.cell), np.asarray(b.cell), atol=atol)
    else:
        np.testing.assert_allclose(a.cell.cellpar(), b.cell.cellpar(), atol=atol)
    frac = a.get_scaled_positions(wrap=False) - b.get_scaled_positions(wrap=False)
    frac -= np.round(frac)
    np.testing.assert_allclose(frac @ np.asarray(a.cell), 0.0, atol=atol)


def _abc_stack(order: str, d: float = BILAYER_D, vacuum: float = 20.0) -> Atoms:
    """Multilayer graphene built by hand with plain ASE (no mlepi builders)."""
    a = GRAPHENE_A
    a1, a2 = np.array([a, 0, 0]), np.array([a / 2, a * np.sqrt(3) / 2, 0])
    shift = {"A": 0.0, "B": 1 / 3, "C": 2 / 3}
    pos = []
    for ell, s in enumerate(order):
        for site in (0.0, 1 / 3):
            pos.append((site + shift[s]) * (a1 + a2) + [0, 0, vacuum / 2 + ell * d])
    cell = [a1, a2, [0, 0, d * (len(order) - 1) + vacuum]]
    return Atoms(f"C{len(pos)}", positions=pos, cell=cell, pbc=True)


# --- bilayers ----------------------------------------------------------------------

@pytest.mark.parametrize("stacking, n_stacked", [("AA", 4), ("AB", 2), ("BA", 2), ("SP", 0)])
@pytest.mark.parametrize("d", [3.0, BILAYER_D, 3.6])
def test_bilayer_stackings(stacking, n_stacked, d):
    atoms = bilayer(stacking, d=d)
    assert len(atoms) == 4 and atoms.get_chemical_formula() == "C4"
    np.testing.assert_array_equal(atoms.arrays["layer"], [0, 0, 1, 1])
    _assert_honeycomb(atoms)
    z = atoms.positions[:, 2]
    layer = atoms.arrays["layer"]
    np.testing.assert_allclose(z[layer == 1] - z[layer == 0], d, atol=1e-10)
    assert _n_atoms_stacked(atoms) == n_stacked
    assert atoms.cell[2, 2] - d >= 15.0
    validate(atoms, elements={"C"})


def test_ab_puts_top_a_over_bottom_b():
    atoms = bilayer("AB")
    # atom order per layer is (A, B): layer 2's A (index 2) sits over layer 1's B (index 1)
    assert _inplane_min_image(atoms, 2, np.array([1]))[0] < 1e-10
    assert _inplane_min_image(atoms, 2, np.array([0]))[0] > 1.0
    ba = bilayer("BA")  # BA: layer 2's B over layer 1's A
    assert _inplane_min_image(ba, 3, np.array([0]))[0] < 1e-10


def test_bilayer_general_shift():
    s1, s2 = 0.1, 0.25
    atoms = bilayer((s1, s2), d=3.4)
    a1, a2 = np.asarray(atoms.cell)[:2]
    shift = atoms.positions[2:] - atoms.positions[:2] - [0, 0, 3.4]
    expected = s1 * a1 + s2 * a2
    for row in shift:
        frac = (row - expected) @ np.linalg.inv(np.asarray(atoms.cell))
        np.testing.assert_allclose(frac - np.round(frac), 0.0, atol=1e-12)
    _assert_honeycomb(atoms)
    # named stackings are just shifts
    _same_positions(bilayer((1 / 3, 1 / 3)), bilayer("AB"), atol=1e-12)
    _same_positions(bilayer((0.5, 0.5)), bilayer("sp"), atol=1e-12)


def test_monolayer():
    atoms = monolayer()
    assert len(atoms) == 2
    np.testing.assert_array_equal(atoms.arrays["layer"], [0, 0])
    _assert_honeycomb(atoms)
    assert atoms.cell[2, 2] >= 15.0
    assert np.all(np.abs(_pairs(atoms, 4.0)[3][:, 2]) < 1e-12)  # nothing out of plane


@pytest.mark.parametrize("call, match", [
    (lambda: bilayer("ABC"), "unknown stacking"),
    (lambda: bilayer((0.1, 0.2, 0.3)), "two fractional"),
    (lambda: bilayer("AB", d=0.0), "positive"),
    (lambda: twisted_bilayer(2, 2), "m != n"),
    (lambda: twisted_bilayer(0, 1), "m != n"),
    (lambda: twisted_bilayer(2, 4), "share a factor"),
    (lambda: build("tbg:1"), "tbg:m,n"),
    (lambda: build("XY"), "unknown stacking"),
    (lambda: supercell(bilayer("AB"), 0), ">= 1"),
])
def test_builder_errors(call, match):
    with pytest.raises(StructureError, match=match):
        call()


# --- twisted bilayers ---------------------------------------------------------------

def _layer_lattice_sign(atoms: Atoms, ell: int, theta_deg: float) -> list[int]:
    """Signs s for which layer ``ell`` is exactly graphene rotated by s*theta.

    Rotating the layer's atoms back by -s*theta must put every one of them on an
    A site (integer coordinates in a1, a2) or a B site (integer + 1/3, 1/3). Since the
    atoms were wrapped into the cell, this also proves that the cell vectors are
    lattice vectors of that layer (commensurability).
    """
    a12 = GRAPHENE_A * np.array([[1.0, 0.0], [0.5, np.sqrt(3) / 2]])
    xy = atoms.positions[atoms.arrays["layer"] == ell, :2]
    good = []
    for s in (1, -1):
        t = np.radians(-s * theta_deg)
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        frac = (xy @ rot.T) @ np.linalg.inv(a12)
        on_a = np.all(np.abs(frac - np.round(frac)) < 1e-6, axis=1)
        fb = frac - 1 / 3
        on_b = np.all(np.abs(fb - np.round(fb)) < 1e-6, axis=1)
        if np.all(on_a ^ on_b) and on_a.sum() == on_b.sum():
            good.append(s)
    return good


@pytest.mark.parametrize("mn, angle", TWISTS.items())
def test_twisted_bilayer(mn, angle):
    m, n = mn
    atoms = twisted_bilayer(m, n)
    assert len(atoms) == 4 * (m * m + m * n + n * n)
    assert twist_angle(m, n) == pytest.approx(angle, abs=0.005)
    assert atoms.info["twist_deg"] == pytest.approx(angle, abs=0.005)
    layer = atoms.arrays["layer"]
    assert np.sum(layer == 0) == np.sum(layer == 1) == len(atoms) // 2

    # commensurate: a perfect honeycomb in each layer, across every cell edge
    i, _, D = _assert_honeycomb(atoms)

    # the twist measured from the structure: relative rotation of the bond stars
    phi0, coh0 = _bond_orientation_deg(D[layer[i] == 0])
    phi1, coh1 = _bond_orientation_deg(D[layer[i] == 1])
    assert coh0 == pytest.approx(1.0, abs=1e-9) and coh1 == pytest.approx(1.0, abs=1e-9)
    rel = (phi1 - phi0) % 60
    assert min(rel, 60 - rel) == pytest.approx(angle, abs=0.005)

    # layer 1 is unrotated graphene, layer 2 the same rotated by exactly one sign of theta
    assert 1 in _layer_lattice_sign(atoms, 0, 0.0)
    assert len(_layer_lattice_sign(atoms, 1, twist_angle(m, n))) == 1

    # no overlapping atoms, interlayer distance and vacuum as built
    assert len(_pairs(atoms, 1.0)[0]) == 0
    z = atoms.positions[:, 2]
    np.testing.assert_allclose(z[layer == 1] - z[layer == 0].mean(), BILAYER_D, atol=1e-9)
    assert atoms.cell[2, 2] - BILAYER_D >= 15.0
    validate(atoms, elements={"C"})
    np.testing.assert_array_equal(detect_layers(atoms), layer)


def test_twisted_bilayer_m_minus_n_multiple_of_3_gives_primitive_cell():
    # (1, 4) is 60 - 21.79 = 38.21 degrees, the same moire as (1, 2): 28 atoms, not 84
    atoms = twisted_bilayer(1, 4)
    assert len(atoms) == 4 * (1 + 4 + 16) // 3 == 28
    assert twist_angle(1, 4) == pytest.approx(60 - TWISTS[(1, 2)], abs=0.005)
    i, _, D = _assert_honeycomb(atoms)
    layer = atoms.arrays["layer"]
    rel = (_bond_orientation_deg(D[layer[i] == 1])[0]
           - _bond_orientation_deg(D[layer[i] == 0])[0]) % 60
    assert min(rel, 60 - rel) == pytest.approx(TWISTS[(1, 2)], abs=0.005)
    assert len(_layer_lattice_sign(atoms, 1, twist_angle(1, 4))) == 1
    area = abs(np.linalg.det(np.asarray(atoms.cell)[:2, :2]))
    area_12 = abs(np.linalg.det(np.asarray(twisted_bilayer(1, 2).cell)[:2, :2]))
    assert area == pytest.approx(area_12, rel=1e-12)


def test_magic_angle_cell():
    atoms = twisted_bilayer(30, 31)
    assert len(atoms) == 11164
    assert twist_angle(30, 31) == pytest.approx(1.085, abs=0.001)
    i, _, D = _assert_honeycomb(atoms)
    layer = atoms.arrays["layer"]
    rel = (_bond_orientation_deg(D[layer[i] == 1])[0]
           - _bond_orientation_deg(D[layer[i] == 0])[0]) % 60
    assert min(rel, 60 - rel) == pytest.approx(1.085, abs=0.001)
    assert len(_pairs(atoms, 1.0)[0]) == 0


def test_twisted_hbn_alternates_b_and_n_in_each_layer_and_starts_from_aa_prime():
    """thbn:m,n: each sheet is stoichiometric hBN whose every B has three N neighbours (no B-B
    or N-N bond), the top sheet is the bottom one rotated by the twist angle from AA' (an N
    above the B at the origin), at hBN's own lattice constant and distance."""
    atoms = build("thbn:2,3")
    layer = atoms.arrays["layer"]
    symbols = np.array(atoms.get_chemical_symbols())
    assert len(atoms) == 76 and atoms.info["twist_mn"] == (2, 3)
    for ell in (0, 1):
        assert (symbols[layer == ell] == "B").sum() == (symbols[layer == ell] == "N").sum() == 19
    i, j, _, D = _pairs(atoms, 1.1 * HBN_A / np.sqrt(3))
    assert len(i) == 3 * len(atoms)  # three in-plane neighbours each, none across the gap
    assert np.all(symbols[i] != symbols[j]) and np.all(layer[i] == layer[j])
    assert np.linalg.norm(D, axis=1) == pytest.approx(HBN_A / np.sqrt(3), abs=1e-9)
    xy = atoms.positions[:, :2]
    at_origin = [int(np.flatnonzero((layer == ell) & (np.linalg.norm(xy, axis=1) < 1e-6))[0]) for ell in (0, 1)]
    assert list(symbols[at_origin]) == ["B", "N"]
    dz = np.ptp(atoms.positions[:, 2])
    assert dz == pytest.approx(HBN_D, abs=1e-9)
    np.testing.assert_array_equal(detect_layers(atoms), layer)
    with pytest.raises(StructureError, match="twisted bilayers are built of"):
        twisted_bilayer(1, 2, material="MoS2")


def test_build_names():
    assert len(build("monolayer")) == 2
    assert len(build("AB", size=3)) == 36
    assert len(build("tbg:1,2")) == 28
    assert len(build("tbg:2,3", size=2)) == 4 * 76
    assert build("tbg:2,3").info["twist_mn"] == (2, 3)
    aa = build("AA", d=3.6)
    assert aa.positions[2, 2] - aa.positions[0, 2] == pytest.approx(3.6, abs=1e-12)


# --- layer detection -----------------------------------------------------------------

def test_detect_layers_builders():
    for atoms in (bilayer("AB"), bilayer("AA"), bilayer("SP"), twisted_bilayer(2, 3),
                  supercell(bilayer("BA"), 2, 3)):
        np.testing.assert_array_equal(detect_layers(atoms), atoms.arrays["layer"])
    np.testing.assert_array_equal(detect_layers(monolayer()), [0, 0])


def test_detect_layers_trilayer_by_height():
    atoms = _abc_stack("ABA")
    np.testing.assert_array_equal(detect_layers(atoms), [0, 0, 1, 1, 2, 2])
    perm = np.random.default_rng(1).permutation(len(atoms))
    shuffled = atoms[perm]
    np.testing.assert_array_equal(detect_layers(shuffled), np.array([0, 0, 1, 1, 2, 2])[perm])
    assert "layer" not in shuffled.arrays
    assign_layers(shuffled)
    np.testing.assert_array_equal(shuffled.arrays["layer"], np.array([0, 0, 1, 1, 2, 2])[perm])
    # layers are bonded sheets: planes 1.2 A apart are bonded (C-C bonds are 1.42 A), 2.5 A apart not
    np.testing.assert_array_equal(detect_layers(_abc_stack("ABA", d=1.2)), 0)
    np.testing.assert_array_equal(detect_layers(_abc_stack("ABA", d=2.5)), [0, 0, 1, 1, 2, 2])


def _stacked(sheets: list[Atoms], d: float, vacuum: float = 20.0) -> Atoms:
    """Sheets (each centred at z = 0, sharing the first one's in-plane cell) stacked d apart
    between their outermost atomic planes."""
    stack, z = Atoms(cell=sheets[0].cell, pbc=True), vacuum / 2
    for sheet in sheets:
        s = sheet.copy()
        s.positions[:, 2] += z - s.positions[:, 2].min()
        z = s.positions[:, 2].max() + d
        stack += s
    stack.cell[2] = [0, 0, z - d + vacuum / 2]
    return stack


def _tmd(formula: str, a: float, thickness: float) -> Atoms:
    from ase.build import mx2

    sheet = mx2(formula, kind="2H", a=a, thickness=thickness, vacuum=5.0)
    sheet.positions[:, 2] -= sheet.positions[:, 2].mean()
    return sheet


def _hbn(a: float = 2.504) -> Atoms:
    a1, a2 = np.array([a, 0, 0]), np.array([a / 2, a * np.sqrt(3) / 2, 0])
    return Atoms("BN", positions=[[0, 0, 0], (a1 + a2) / 3], cell=[a1, a2, [0, 0, 10]], pbc=True)


@pytest.mark.parametrize("name", ["mos2", "wse2", "hbn", "graphene_hbn", "mos2_on_graphene", "twisted", "pore"])
def test_layers_are_the_bonded_sheets(name):
    """Each covalently bonded sheet is one layer, whatever its thickness (an S-Mo-S sheet
    spans 3.1 A, more than the van der Waals gap), numbered upwards; shuffling the atoms
    permutes the labels with them."""
    if name in ("mos2", "wse2"):
        sheet = _tmd("MoS2", 3.16, 3.17) if name == "mos2" else _tmd("WSe2", 3.28, 3.34)
        atoms, per_layer = _stacked([sheet, sheet], d=3.0), [3, 3]
    elif name == "hbn":
        atoms, per_layer = _stacked([_hbn()] * 3, d=3.33), [2, 2, 2]
    elif name == "graphene_hbn":  # 2 % mismatch squeezed into a common cell: layers, not energies
        atoms, per_layer = _stacked([_abc_stack("A")[:2], _hbn(GRAPHENE_A)], d=3.4), [2, 2]
        atoms.set_cell(atoms.cell, scale_atoms=False)
    elif name == "mos2_on_graphene":  # a 5:4 cell ratio keeps both sheets bonded across the cell
        g = _abc_stack("A").repeat((5, 5, 1))
        m = _tmd("MoS2", 5 * GRAPHENE_A / 4, 3.17).repeat((4, 4, 1))
        m.set_cell(g.cell, scale_atoms=False)
        atoms, per_layer = _stacked([g, m], d=3.3), [50, 48]
    elif name == "twisted":
        atoms = twisted_bilayer(1, 2)
        del atoms.arrays["layer"]
        per_layer = [len(atoms) // 2] * 2
    else:  # a pore cut through the middle sheet of a trilayer leaves it one layer
        atoms = _abc_stack("ABA").repeat((3, 3, 1))
        middle = np.flatnonzero(np.isclose(atoms.positions[:, 2], atoms.positions[:, 2].mean()))
        del atoms[middle[:4]]
        per_layer = [18, 14, 18]
    layers = detect_layers(atoms)
    np.testing.assert_array_equal(np.bincount(layers), per_layer)
    heights = [atoms.positions[layers == k, 2].mean() for k in range(len(per_layer))]
    assert np.all(np.diff(heights) > 0)
    for k in range(len(per_layer)):  # one sheet: no atom of another layer inside its height range
        z = atoms.positions[:, 2]
        inside = (z >= z[layers == k].min()) & (z <= z[layers == k].max())
        assert np.all(layers[inside] == k)
    perm = np.random.default_rng(3).permutation(len(atoms))
    np.testing.assert_array_equal(detect_layers(atoms[perm]), layers[perm])


def test_detect_layers_in_plane_rotation():
    rng = np.random.default_rng(7)
    for atoms in (bilayer("AB"), twisted_bilayer(1, 2), _abc_stack("ABC")):
        ref = detect_layers(atoms)
        rotated = atoms.copy()
        rotated.rotate(float(rng.uniform(0, 360)), "z", rotate_cell=True)
        np.testing.assert_array_equal(detect_layers(rotated), ref)
        validate(rotated, elements={"C"})


def test_detect_layers_across_z_boundary():
    """Translate along z (wrapping) so that every layer in turn crosses z = 0."""
    rng = np.random.default_rng(3)
    atoms = supercell(_abc_stack("ABA"), 3)
    atoms.positions[:, 2] += rng.uniform(-0.1, 0.1, len(atoms))  # rippled layers
    ref = detect_layers(atoms)
    np.testing.assert_array_equal(ref, np.repeat([0, 1, 2], 2)[np.arange(len(atoms)) % 6])
    height = atoms.cell[2, 2]
    z_layer = [atoms.positions[ref == ell, 2].mean() for ell in range(3)]
    shifts = [height - zl for zl in z_layer] + list(np.linspace(0, height, 17))
    for dz in shifts:
        moved = atoms.copy()
        moved.translate([0, 0, dz])
        moved.wrap()
        np.testing.assert_array_equal(detect_layers(moved), ref, err_msg=f"dz = {dz:.3f}")
        # explicit tags on a wrapped structure are ranked by the same unwrapped height
        tagged = moved.copy()
        tagged.set_tags(10 - ref)
        np.testing.assert_array_equal(assign_layers(tagged).arrays["layer"], ref,
                                      err_msg=f"dz = {dz:.3f}")
    straddling = atoms.copy()
    straddling.translate([0, 0, height - z_layer[0]])
    straddling.wrap()
    z0 = straddling.positions[ref == 0, 2]
    assert z0.min() < 0.2 and z0.max() > height - 0.2  # the bottom layer really straddles


def test_explicit_layer_tags_take_precedence():
    close = bilayer("AB", d=1.2)  # closer than the gap threshold: detection sees one layer
    np.testing.assert_array_equal(detect_layers(close), [0, 0, 0, 0])
    assert assign_layers(close.copy()).arrays["layer"].tolist() == [0, 0, 1, 1]  # "layer"

    bare = close.copy()
    del bare.arrays["layer"]
    assert assign_layers(bare.copy()).arrays["layer"].tolist() == [0, 0, 0, 0]
    tagged = bare.copy()
    tagged.set_tags([4, 4, 9, 9])
    assert assign_layers(tagged).arrays["layer"].tolist() == [0, 0, 1, 1]
    tagged = bare.copy()
    tagged.set_tags([9, 9, 4, 4])  # labels are renumbered by height, not by value
    assert assign_layers(tagged).arrays["layer"].tolist() == [0, 0, 1, 1]

    relabelled = bilayer("AB")
    relabelled.arrays["layer"] = np.array([7, 7, 3, 3])
    assert assign_layers(relabelled).arrays["layer"].tolist() == [0, 0, 1, 1]
    both = bilayer("AB")  # a "layer" array wins over ASE tags
    both.set_tags([1, 0, 1, 0])
    assert assign_layers(both).arrays["layer"].tolist() == [0, 0, 1, 1]


# --- loading ---------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, name, atol, frame", [
    ("extxyz", "s.extxyz", 1e-8, True),
    ("vasp", "POSCAR", 1e-6, True),
    # CIF keeps a few digits of fractional coordinates and only the cell's lengths and
    # angles: a twisted cell comes back turned about z so that a1 lies along x
    ("cif", "s.cif", 1e-4, False),
])
@pytest.mark.parametrize("builder", [lambda: supercell(bilayer("AB"), 2),
                                     lambda: twisted_bilayer(1, 2),
                                     lambda: _abc_stack("ABA")])
def test_load_round_trip(tmp_path, fmt, name, atol, frame, builder):
    atoms = builder()
    ref_layers = detect_layers(atoms)
    path = tmp_path / name
    write(path, atoms, format=fmt)
    loaded = load(path, elements={"C"})
    assert len(loaded) == len(atoms)
    assert loaded.get_chemical_symbols() == atoms.get_chemical_symbols()
    _same_positions(loaded, atoms, atol=atol, frame=frame)
    np.testing.assert_array_equal(loaded.arrays["layer"], ref_layers)
    _assert_honeycomb(loaded)


def test_load_keeps_explicit_layer_array(tmp_path):
    atoms = bilayer("AB", d=1.2)  # detection alone would merge these layers
    path = tmp_path / "close.extxyz"
    write(path, atoms, format="extxyz")
    assert load(path).arrays["layer"].tolist() == [0, 0, 1, 1]


def _graphite() -> Atoms:
    a, c = GRAPHENE_A, 6.7
    a1, a2 = np.array([a, 0, 0]), np.array([a / 2, a * np.sqrt(3) / 2, 0])
    b = (a1 + a2) / 3
    pos = [[0, 0, 0], b, [0, 0, c / 2], 2 * b + [0, 0, c / 2]]
    return Atoms("C4", positions=pos, cell=[a1, a2, [0, 0, c]], pbc=True)


def test_load_errors(tmp_path):
    with pytest.raises(StructureError, match="no such file"):
        load(tmp_path / "missing.extxyz")

    garbage = tmp_path / "notes.txt"
    garbage.write_text("hello world\nthis is not a structure\n")
    with pytest.raises(StructureError, match=r"cannot read .*notes\.txt"):
        load(garbage)
    garbage_xyz = tmp_path / "broken.xyz"
    garbage_xyz.write_text("hello world\nthis is not a structure\n")
    with pytest.raises(StructureError, match=r"cannot read .*broken\.xyz"):
        load(garbage_xyz)
    empty = tmp_path / "empty.extxyz"
    empty.write_text("")
    with pytest.raises(StructureError, match="cannot read"):
        load(empty)

    mol = tmp_path / "benzene.xyz"
    write(mol, molecule("C6H6"))
    with pytest.raises(StructureError, match="no in-plane periodicity"):
        load(mol)

    graphite = tmp_path / "graphite.cif"
    write(graphite, _graphite())
    with pytest.raises(StructureError, match="no vacuum"):
        load(graphite)

    overlap = bilayer("AB")
    overlap += Atoms("C", positions=[overlap.positions[0] + [0.1, 0.0, 0.0]])
    path = tmp_path / "overlap.extxyz"
    del overlap.arrays["layer"]
    write(path, overlap)
    with pytest.raises(StructureError, match="overlapping atoms: 0 and 4"):
        load(path)

    doped = supercell(bilayer("AB"), 2)
    doped.symbols[[0, 5]] = ["N", "B"]
    path = tmp_path / "doped.extxyz"
    write(path, doped)
    with pytest.raises(StructureError, match=r"element\(s\) B, N not known"):
        load(path, elements={"C"})
    assert load(path, elements={"B", "C", "N"}).get_chemical_formula() == "C14BN"

    several = tmp_path / "traj.extxyz"
    write(several, [bilayer("AB"), bilayer("AA")])
    with pytest.raises(StructureError, match="several structures"):
        load(several, index=":")
    assert load(several, index=1).positions[2, 0] == pytest.approx(0.0, abs=1e-12)


def test_validate_errors():
    with pytest.raises(StructureError, match="no vacuum"):
        validate(_graphite())
    with pytest.raises(StructureError, match="no in-plane periodicity"):
        validate(molecule("C6H6"))
    slab = bilayer("AB")
    slab.pbc = [True, False, True]
    with pytest.raises(StructureError, match="no in-plane periodicity"):
        validate(slab)
    with pytest.raises(StructureError, match="no atoms"):
        validate(Atoms(cell=np.eye(3) * 10, pbc=True))
    tilted = bilayer("AB")
    tilted.rotate(30, "x", rotate_cell=True)
    with pytest.raises(StructureError, match="xy plane"):
        validate(tilted)
    hbn = bilayer("AB")
    hbn.symbols = ["B", "N", "B", "N"]
    with pytest.raises(StructureError, match=r"element\(s\) B, N not known .*knows C"):
        validate(hbn, elements={"C"})
    # an overlap across the periodic in-plane boundary still counts
    edge = monolayer()
    a1 = np.asarray(edge.cell)[0]
    edge += Atoms("C", positions=[a1 - [0.05, 0.0, 0.0] + [0, 0, edge.positions[0, 2]]])
    with pytest.raises(StructureError, match="overlapping atoms"):
        validate(edge)
    with pytest.raises(StructureError, match="vacuum"):
        validate(bilayer("AB", vacuum=5.0))
    validate(bilayer("AB", vacuum=5.0), min_vacuum=4.0)


# --- supercells ----------------------------------------------------------------------

@pytest.mark.parametrize("n1, n2", [(1, 1), (3, 3), (2, 5)])
def test_supercell_keeps_layers(n1, n2):
    atoms = bilayer("AB")
    big = supercell(atoms, n1, n2)
    assert len(big) == len(atoms) * n1 * n2
    np.testing.assert_array_equal(big.arrays["layer"], np.tile(atoms.arrays["layer"], n1 * n2))
    np.testing.assert_array_equal(detect_layers(big), big.arrays["layer"])
    np.testing.assert_allclose(np.asarray(big.cell)[:2], np.asarray(atoms.cell)[:2] * [[n1], [n2]])
    assert big.cell[2, 2] == atoms.cell[2, 2]
    _assert_honeycomb(big)
    assert _n_atoms_stacked(big) == 2 * n1 * n2


def test_supercell_of_twisted_bilayer():
    tbg = twisted_bilayer(1, 2)
    big = supercell(tbg, 2)
    assert len(big) == 4 * 28
    assert big.info["twist_mn"] == (1, 2)
    np.testing.assert_array_equal(big.arrays["layer"], np.tile(tbg.arrays["layer"], 4))
    _assert_honeycomb(big)


def test_hbn_and_tmd_bilayers():
    """AA' hBN: B above N; 2H MoS2: metal above chalcogen, metal planes d apart; both two layers."""
    hbn = build("hBN")
    assert hbn.get_chemical_formula() == "B2N2"
    np.testing.assert_array_equal(detect_layers(hbn), hbn.arrays["layer"])
    below, above = hbn[hbn.arrays["layer"] == 0], hbn[hbn.arrays["layer"] == 1]
    for atom in below:
        over = above[np.argmin(np.linalg.norm(above.positions[:, :2] - atom.position[:2], axis=1))]
        assert over.symbol != atom.symbol
    mos2 = build("MoS2", 2)
    assert mos2.get_chemical_formula() == "Mo8S16"
    np.testing.assert_array_equal(np.bincount(detect_layers(mos2)), [12, 12])
    one = build("MoS2")
    mo = one.positions[one.symbols == "Mo"]
    assert mo[1, 2] - mo[0, 2] == pytest.approx(6.15)
    s_top = one.positions[(one.symbols == "S") & (one.arrays["layer"] == 1)]
    assert np.allclose(s_top[:, :2], mo[0, :2])  # the upper sheet's chalcogens sit over the lower metal
    with pytest.raises(StructureError, match="not a dichalcogenide"):
        build("MoS3")
