"""GFN1-xTB electron reference: Fock labels, real-space blocks, orbital convention."""

import numpy as np
import pytest
import scipy.linalg as sl
from ase import Atoms

from mlepi_core.electrons import bloch_matrices, solve_bands
from mlepi_core.reference.tblite_electrons import P_TO_E3NN, GFN1Reference, TBLiteResult
from mlepi_core.structures import bilayer, supercell


@pytest.fixture(scope="module")
def reference():
    return GFN1Reference()


@pytest.fixture(scope="module")
def solved(reference, displaced_ab6):
    return reference.solve(displaced_ab6)


def test_fock_matrix_reproduces_tblite_orbital_energies(solved):
    # The label is the converged Fock matrix, not tblite's core Hamiltonian H0.
    eps = sl.eigh(solved.fock, solved.overlap, eigvals_only=True)
    assert np.abs(eps - solved.orbital_energies).max() < 1e-8  # eV
    assert solved.fock.shape == (4 * 144, 4 * 144)


def test_blocks_reproduce_tblite_eigenvalues_and_error_grows_as_rc_shrinks(reference, displaced_ab6, solved):
    mae = {}
    for rc in (6.0, 5.0, 4.0):
        blocks = reference.split_blocks(displaced_ab6, solved, r_c=rc)
        e = solve_bands(*bloch_matrices(blocks, [[0, 0, 0]]))[0]
        mae[rc] = np.abs(e - solved.orbital_energies).mean() * 1e3  # meV
    assert mae[6.0] < 0.1, mae  # acceptance: r_c = 6 A within 0.1 meV (design measured 0.03)
    assert mae[6.0] < mae[5.0] < mae[4.0], mae


def test_blocks_are_hermitian(reference, displaced_ab6, solved):
    b = reference.split_blocks(displaced_ab6, solved)
    key = {(i, j, *r): p for p, (i, j, r) in enumerate(zip(b.i, b.j, map(tuple, b.R)))}
    partner = np.array([key[(j, i, *(-np.asarray(r)))] for i, j, r in zip(b.i, b.j, b.R)])
    assert np.array_equal(b.h[partner], b.h.transpose(0, 2, 1))
    assert np.array_equal(b.s[partner], b.s.transpose(0, 2, 1))
    onsite = (b.i == b.j) & np.all(b.R == 0, axis=1)
    assert onsite.sum() == len(displaced_ab6)
    assert np.allclose(b.s[onsite], np.eye(4)[None])  # normalized basis functions


def test_cell_too_small_for_cutoff_is_a_clear_error(reference):
    atoms = supercell(bilayer("AB"), 4)  # 9.84 A < 2 * 6 + 1
    with pytest.raises(ValueError, match="cell too small for r_c"):
        reference.blocks([atoms])


def test_unknown_element_is_refused(reference):
    atoms = supercell(bilayer("AB"), 6)
    atoms.numbers[0] = 26
    with pytest.raises(ValueError, match="supports"):
        reference.solve(atoms)


def test_mos2_takes_the_d_shells_a_longer_cutoff_and_an_overlap_floor(reference):
    """GFN1's S (s, p, d) and Mo (d, s, p) have 9 orbitals each; structures with them are
    split at r_c = 8 A with the floor of canonical orthogonalisation, carbon at 6 A without."""
    from mlepi_core.reference.tblite_electrons import NEAR_DEPENDENT_RC, orbitals_per_atom
    from mlepi_core.structures import build

    mos2 = build("MoS2", 6)
    assert list(orbitals_per_atom(mos2.numbers[:3])) == [9, 9, 9]
    assert reference.cutoff(mos2) == NEAR_DEPENDENT_RC == 8.0 and reference.cutoff(bilayer("AB")) == 6.0
    fake = TBLiteResult(energy=0.0, forces=np.zeros((len(mos2), 3)), fock=np.eye(9 * len(mos2)),
                        overlap=np.eye(9 * len(mos2)), orbital_energies=np.zeros(9 * len(mos2)),
                        occupations=np.zeros(9 * len(mos2)), norb=orbitals_per_atom(mos2.numbers))
    blocks = reference.split_blocks(mos2, fake)
    assert blocks.meta["r_c_A"] == 8.0 and blocks.meta["overlap_floor"] > 0
    with pytest.raises(ValueError, match="cell too small"):
        reference.split_blocks(build("MoS2", 5), fake)  # 15.8 A < 2 r_c + 1


@pytest.mark.parametrize("axis", [0, 1, 2, None])
def test_orbital_order_and_phase_match_e3nn(reference, axis):
    """tblite orders carbon orbitals s, p_y, p_z, p_x with the usual real-harmonic signs.

    For a C2 dimer along direction u, the s(0)-p(1) overlap is a vector along -u
    (the p lobe on atom 1 pointing away from atom 0 is positive). e3nn 0.6 orders
    l = 1 as (x, y, z) with D(R) = R, so tblite's p block maps to e3nn's by the
    permutation P_TO_E3NN = [2, 0, 1] (p_x, p_y, p_z), with no sign change.
    """
    from e3nn import o3
    import torch

    u = np.eye(3)[axis] if axis is not None else np.array([0.3, -0.5, 0.8])
    u = u / np.linalg.norm(u)
    atoms = Atoms("C2", positions=[[10, 10, 10], 10 + 1.3 * u], cell=np.eye(3) * 20, pbc=True)
    s = reference.solve(atoms).overlap
    sp = s[0, 5:8][P_TO_E3NN]  # <s on atom 0 | p on atom 1>, in e3nn order
    y1 = o3.spherical_harmonics(1, torch.tensor(u), normalize=True).numpy()
    cos = sp @ -y1 / (np.linalg.norm(sp) * np.linalg.norm(y1))
    assert cos > 1 - 1e-8, (sp, y1)
    # the component order itself, before permutation: (y, z, x)
    assert np.allclose(s[0, 5:8] / np.linalg.norm(s[0, 5:8]), -u[[1, 2, 0]], atol=1e-8)
