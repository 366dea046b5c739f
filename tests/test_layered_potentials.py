"""The empirical force reference on other layered materials (reference/lammps_recipes.py):
hBN (ExTeP + ILP), 2H MoS2 and WSe2 (Stillinger-Weber + TMD ILP), graphene on hBN (LCBOP,
ExTeP + ILP). Forces are minus the gradient of the energy, sheets interact only through the
interlayer potential, and the stacking order is the known one."""

from __future__ import annotations

import numpy as np
import pytest

from mlepi_core.reference.lammps_forces import EmpiricalForceReference
from mlepi_core.structures import StructureError, bilayer, hbn_bilayer, supercell, tmd_bilayer


@pytest.fixture(scope="module")
def reference():
    ref = EmpiricalForceReference()
    yield ref
    ref.close()


def graphene_on_hbn():
    """Graphene on hBN in one primitive cell (hBN squeezed 1.8 % to graphene's lattice)."""
    atoms = bilayer("AB")
    atoms.set_chemical_symbols(["C", "C", "B", "N"])
    return atoms


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
