"""The empirical force reference on other layered materials (reference/lammps_recipes.py):
hBN (ExTeP + ILP), 2H MoS2 and WSe2 (Stillinger-Weber + TMD ILP), graphene on hBN (LCBOP,
ExTeP + ILP). Forces are minus the gradient of the energy, sheets interact only through the
interlayer potential, and the stacking order is the known one."""

from __future__ import annotations

import numpy as np
import pytest

from mlepi_core.reference.lammps_forces import EmpiricalForceReference
from mlepi_core.structures import StructureError, bilayer, graphene_on_hbn, hbn_bilayer, supercell, tmd_bilayer


@pytest.fixture(scope="module")
def reference():
    ref = EmpiricalForceReference()
    yield ref
    ref.close()


MATERIALS = {"hBN": hbn_bilayer, "MoS2": tmd_bilayer, "WSe2": lambda: tmd_bilayer("WSe2", a=3.28, thickness=3.34),
             "graphene/hBN": graphene_on_hbn}


def energy(reference, atoms) -> float:
    return float(reference.energies_forces([atoms])[0][0])


@pytest.mark.parametrize("name", list(MATERIALS))
def test_forces_are_minus_the_energy_gradient(reference, name):
    atoms = supercell(MATERIALS[name](), 2)
    atoms.positions += np.random.default_rng(4).normal(0.0, 0.05, atoms.positions.shape)
    _, (forces,) = reference.energies_forces([atoms])
    assert np.abs(forces.sum(axis=0)).max() < 1e-8  # translation invariance
    h = 1e-4
    for i, axis in [(0, 0), (3, 2), (len(atoms) - 1, 1)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[i, axis] += h
        minus.positions[i, axis] -= h
        numeric = -(energy(reference, plus) - energy(reference, minus)) / (2 * h)
        assert forces[i, axis] == pytest.approx(numeric, abs=2e-5, rel=1e-4)


@pytest.mark.parametrize("name", list(MATERIALS))
def test_sheets_far_apart_are_the_sum_of_the_sheets(reference, name):
    """Beyond the 16 A interlayer cutoff the stack's energy is that of its sheets alone:
    each intralayer potential acts inside its own sheet only."""
    atoms = MATERIALS[name]()
    layer = atoms.arrays["layer"]
    apart = atoms.copy()
    apart.positions[layer == 1, 2] += 17.0
    apart.cell[2, 2] += 17.0
    sheets = [atoms[layer == k] for k in (0, 1)]
    assert energy(reference, apart) == pytest.approx(sum(energy(reference, s) for s in sheets), abs=1e-8)
    assert energy(reference, atoms) < energy(reference, apart)  # the stack binds


def test_stacking_order(reference):
    """AA' (B over N) is below the eclipsed AA (B over B) in hBN; 2H (metal over chalcogen)
    below AA (metal over metal) in MoS2."""
    aa_prime = hbn_bilayer()
    aa = aa_prime.copy()
    aa.set_chemical_symbols(["B", "N", "B", "N"])
    assert energy(reference, aa_prime) < energy(reference, aa)
    two_h = tmd_bilayer()
    eclipsed = two_h.copy()
    top = two_h.arrays["layer"] == 1
    eclipsed.positions[top] = two_h.positions[~top] + [0, 0, two_h.positions[top, 2].mean()
                                                       - two_h.positions[~top, 2].mean()]
    assert energy(reference, two_h) < energy(reference, eclipsed)


def test_graphene_on_hbn_binds_in_its_known_stacking_at_its_known_distance(reference):
    """Graphene on hBN: one C above B and the other above a hexagon's centre is the lowest
    stacking, the eclipsed one (C above B and N) the highest (Giovannetti et al., PRB 76,
    073103 (2007)); the ILP's minimum lies within 0.1 A of the builder's 3.35 A."""
    lowest = graphene_on_hbn()
    a12, top = lowest.cell[:2, :2], lowest.arrays["layer"] == 1
    stacked = {}
    for name, shift in {"C on B and centre": 0.0, "C on B and N": 1 / 3, "C on N and centre": 2 / 3}.items():
        atoms = lowest.copy()
        atoms.positions[top, :2] += shift * (a12[0] + a12[1])
        stacked[name] = energy(reference, atoms)
    assert stacked["C on B and centre"] < stacked["C on N and centre"] < stacked["C on B and N"]
    d = np.linspace(3.15, 3.55, 9)
    e = [energy(reference, graphene_on_hbn(d=x)) for x in d]
    assert abs(d[int(np.argmin(e))] - 3.35) <= 0.1


def test_refuses_what_no_recipe_describes(reference):
    graphene_on_mos2 = tmd_bilayer()
    graphene_on_mos2 = graphene_on_mos2[graphene_on_mos2.arrays["layer"] == 0]
    sheet = bilayer("AB", a=3.16)
    sheet = sheet[sheet.arrays["layer"] == 1]
    sheet.positions[:, 2] = graphene_on_mos2.positions[:, 2].max() + 3.4
    sheet.arrays["layer"][:] = 1
    with pytest.raises(StructureError, match="no interlayer potential.*C, Mo, S"):
        reference.energies_forces([graphene_on_mos2 + sheet])
    mixed = bilayer("AB")
    mixed[1].symbol = "N"  # a sheet of C and N
    with pytest.raises(StructureError, match="no intralayer potential for a sheet of C, N"):
        reference.energies_forces([mixed])
    gold = bilayer("AB")
    gold[0].symbol = "Au"
    with pytest.raises(StructureError, match="element.*Au.*not known"):
        reference.energies_forces([gold])


def test_hbn_layers_carry_the_shielded_coulomb_term_of_their_ilp(reference, monkeypatch):
    """The ILP's B and N pairs come with LAMMPS' coul/shield between layers: the stack's
    energy minus that without the term equals the term summed here over every interlayer
    pair within 16 A, V = Tap(r) k q_i q_j / (r^3 + lambda_ij^-3)^(1/3), charges +-0.42 e."""
    from mlepi_core.reference import lammps_recipes
    from mlepi_core.reference.lammps_forces import EmpiricalForceReference

    atoms = hbn_bilayer()
    atoms.positions[2] += [0.3, -0.2, 0.1]  # off the symmetric site: the sum is not a special case
    term = lammps_recipes.electrostatics(frozenset({"B", "N"}))
    q = np.array([term.charges[s] for s in atoms.get_chemical_symbols()])
    lam = {**term.shielding, **{(b, a): v for (a, b), v in term.shielding.items()}}
    layer, symbols, cell = atoms.arrays["layer"], atoms.get_chemical_symbols(), np.asarray(atoms.cell)
    cut, coulomb = 16.0, 14.399645  # eV A / e^2, LAMMPS' metal units
    expected = 0.0
    for i in range(len(atoms)):
        for j in np.flatnonzero(layer != layer[i]):
            for n1 in range(-8, 9):
                for n2 in range(-8, 9):
                    r = np.linalg.norm(atoms.positions[j] + n1 * cell[0] + n2 * cell[1] - atoms.positions[i])
                    if r < cut:
                        x = r / cut
                        tap = 20 * x ** 7 - 70 * x ** 6 + 84 * x ** 5 - 35 * x ** 4 + 1
                        expected += 0.5 * tap * coulomb * q[i] * q[j] / np.cbrt(r ** 3 + lam[symbols[i], symbols[j]] ** -3)
    with_term = energy(reference, atoms)
    monkeypatch.setattr(lammps_recipes, "electrostatics", lambda *args, **kwargs: None)
    without = EmpiricalForceReference()
    try:
        assert abs(expected) > 1e-4  # eV per cell: the term counts
        assert with_term - energy(without, atoms) == pytest.approx(expected, rel=1e-6, abs=1e-9)
    finally:
        without.close()
