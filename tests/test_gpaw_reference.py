"""The GPAW LCAO reference (PBE, dzp) on small cells: blocks, their symmetry and GPAW's own bands.

Small and coarse on purpose (grid 0.25 A, 12 A cell height): these tests check the
mapping from GPAW's matrices to blocks, which does not depend on convergence.
"""

import numpy as np
import pytest
from ase import Atoms
from scipy.spatial.transform import Rotation

from mlepi_core.data.deeph import read_deeph, write_deeph
from mlepi_core.electrons import bloch_matrices, solve_bands
from mlepi_core.moire import moire_k_points
from mlepi_core.orbitals import block_rotation, to_e3nn, wigner_d
from mlepi_core.reference.gpaw_electrons import GPAWReference
from mlepi_core.seams import HamiltonianModel
from mlepi_core.structures import bilayer


COARSE = dict(h_a=0.25, cell_height_a=12.0)
CARBON_DZP = [0, 1, 0, 1, 2]


@pytest.fixture(scope="module")
def monolayer():
    """Primitive graphene on a 6x6 mesh: its mesh supercell (14.8 A) holds r_c = 6.5 A uniquely."""
    ref = GPAWReference(**COARSE, kpts=(6, 6), r_c_a=6.5)
    atoms = bilayer("AB")[:2]
    solved = ref.solve(atoms)
    return ref, atoms, solved, ref.split_blocks(atoms, solved)


def test_is_a_hamiltonian_model_with_13_carbon_orbitals(monolayer):
    ref, _, solved, blocks = monolayer
    assert isinstance(ref, HamiltonianModel)
    assert solved.orbital_types == [CARBON_DZP, CARBON_DZP]
    assert blocks.norb.tolist() == [13, 13]
    assert blocks.orbital_order == "s,py,pz,px,s,py,pz,px,dxy,dyz,dz2,dxz,dx2-y2"


def test_blocks_are_hermitian_and_overlap_positive_definite(monolayer):
    _, _, _, b = monolayer
    index = {(int(i), int(j), *map(int, r)): p for p, (i, j, r) in enumerate(zip(b.i, b.j, b.R))}
    for p, (i, j, r) in enumerate(zip(b.i, b.j, b.R)):
        q = index[(int(j), int(i), *map(int, -r))]
        np.testing.assert_allclose(b.h[q], b.h[p].T, atol=1e-10)
        np.testing.assert_allclose(b.s[q], b.s[p].T, atol=1e-12)
    h_k, s_k = bloch_matrices(b, [[0, 0, 0], [1 / 3, 2 / 3, 0], [0.21, 0.07, 0]])
    np.testing.assert_allclose(h_k, np.conj(np.swapaxes(h_k, 1, 2)), atol=1e-10)
    # dzp is nearly linearly dependent (GPAW's own S(k) has eigenvalues down to ~1e-4), so
    # positive definiteness is a real condition on the blocks kept within r_c
    assert np.linalg.eigvalsh(s_k).min() > 0


def test_bands_from_blocks_equal_gpaw_at_a_mesh_k_and_at_k(monolayer):
    """On the mesh and at K (not on a 6x6 mesh, so nothing there is interpolated for free),
    the Bloch sum of the blocks gives GPAW's own eigenvalues within 3 eV of E_F. Tolerance
    5 meV: the blocks beyond r_c = 6.5 A are left out. With r_c = 5.5 A the truncated
    overlap of this nearly linearly dependent basis puts a spurious state 0.9 eV below E_F."""
    ref, atoms, solved, blocks = monolayer
    k_mesh = solved.k_frac[7]
    k_point = moire_k_points(atoms.cell)["K"]
    own = np.vstack([solved.eigenvalues[7], ref.band_energies(solved, [k_point])])
    mine = solve_bands(*bloch_matrices(blocks, [k_mesh, k_point]))
    near = np.abs(own - solved.fermi_level) < 3.0
    assert near[1].sum() >= 2  # the Dirac point's two bands
    err = np.abs(mine - own)[near]
    assert err.max() < 5e-3, err.max()
    # the Dirac cone: the two bands at K are degenerate at E_F (to 5 meV: the grid is not hexagonal)
    e_k = np.sort(own[1][near[1]])
    assert len(e_k) == 2 and abs(e_k[1] - e_k[0]) < 5e-3 and abs(e_k.mean() - solved.fermi_level) < 0.05


def test_a_mesh_too_small_for_r_c_is_refused(monolayer):
    ref, atoms, solved, _ = monolayer
    with pytest.raises(ValueError, match="two images"):
        ref.split_blocks(atoms, solved, r_c=7.5)


def _dimer(rotation=np.eye(3)):
    bond = rotation @ np.array([0.3, 0.5, 1.1])  # 1.25 A, no axis special
    centre = np.array([5.0, 5.0, 6.0])
    return Atoms("C2", positions=[centre - bond / 2, centre + bond / 2], cell=[10, 10, 12], pbc=True)


def test_dimer_blocks_transform_as_real_harmonics():
    """Rotating a C2 dimer turns its blocks into D(R) H D(R)^T with mlepi's real harmonics
    (``mlepi_core.orbitals``): GPAW's orbital order and signs are the ones the Blocks declare.
    Tolerance 15 meV: the real-space grid (0.25 A) is not rotation invariant, while a
    wrong order or sign of any shell moves elements by tenths of an eV to eV."""
    ref = GPAWReference(**COARSE)
    rot = Rotation.from_rotvec([0.4, -0.9, 0.6]).as_matrix()
    b0, b1 = ref.blocks([_dimer(), _dimer(rot)])
    d = block_rotation(CARBON_DZP, rot)
    for b in (b0, b1):
        assert b.R[:, :2].tolist() == [[0, 0]] * 4
    for p in range(4):
        assert np.abs(b1.h[p] - d @ b0.h[p] @ d.T).max() < 0.03
        np.testing.assert_allclose(b1.s[p], d @ b0.s[p] @ d.T, atol=2e-3)
    # the inverse rotation, as a mislabelled order or sign would, misses by far more
    assert np.abs(b1.h[1] - d.T @ b0.h[1] @ d).max() > 0.3


def test_wigner_d_is_a_representation_and_e3nn_change_of_basis_orthogonal():
    a = Rotation.from_rotvec([0.3, 0.2, -0.5]).as_matrix()
    b = Rotation.from_rotvec([-0.7, 0.1, 0.4]).as_matrix()
    for l in range(4):
        np.testing.assert_allclose(wigner_d(l, a @ b), wigner_d(l, a) @ wigner_d(l, b), atol=1e-10)
        u = to_e3nn(l)
        np.testing.assert_allclose(u @ u.T, np.eye(2 * l + 1), atol=1e-10)
    np.testing.assert_allclose(wigner_d(1, a), a[[1, 2, 0]][:, [1, 2, 0]], atol=1e-12)


def test_gpaw_is_a_hamiltonian_model_name():
    from mlepi_core.model_names import hamiltonian_model_from_name

    model = hamiltonian_model_from_name("gpaw")
    assert isinstance(model, GPAWReference) and model.settings.basis == "dzp" and "C" in model.elements


def test_unknown_element_is_a_clear_error():
    ref = GPAWReference(**COARSE)
    atoms = Atoms("CX", positions=[[0, 0, 6], [1.3, 0, 6]], cell=[10, 10, 12], pbc=True)
    with pytest.raises(ValueError, match="no PBE setup with a 'dzp' basis for X"):
        ref.blocks([atoms])


def test_blocks_survive_the_deeph_round_trip(monolayer, tmp_path):
    _, atoms, _, blocks = monolayer
    read_atoms, back = read_deeph(write_deeph(tmp_path / "mono", atoms, blocks))
    assert back.orbital_order == blocks.orbital_order
    key = {(int(i), int(j), *map(int, r)): p for p, (i, j, r) in enumerate(zip(back.i, back.j, back.R))}
    for p, (i, j, r) in enumerate(zip(blocks.i, blocks.j, blocks.R)):
        q = key[(int(i), int(j), *map(int, r))]
        np.testing.assert_array_equal(back.h[q], blocks.h[p])
        np.testing.assert_array_equal(back.s[q], blocks.s[p])


@pytest.mark.integration  # trains, or runs a subprocess
def test_labelling_in_worker_processes_equals_labelling_in_process(tmp_path):
    """``--workers``: the structures labelled in spawned single-threaded processes are the
    files the in-process run writes, bit for bit, and a second run skips them all (the
    cheap p_z reference stands in for GPAW, which takes minutes per cell)."""
    import filecmp

    from mlepi_core.data.generate import ElectronSetConfig, generate_electron_set
    from mlepi_core.reference.lammps_forces import EmpiricalForceReference
    from mlepi_core.reference.slater_koster import SlaterKosterPz

    cfg = ElectronSetConfig(n_configs=2, size=3, seed=2, twisted=(), fractions=(0.5, 0.5, 0.0))
    forces, sk = EmpiricalForceReference(), SlaterKosterPz()
    here = generate_electron_set(tmp_path / "here", cfg, forces, sk, progress=False)
    pool = generate_electron_set(tmp_path / "pool", cfg, forces, sk, progress=False, workers=2)
    for name in ("ab3_00000", "ab3_00001"):
        cmp = filecmp.dircmp(here / name, pool / name)
        assert sorted(cmp.common) == sorted(p.name for p in (here / name).iterdir())
        assert not cmp.left_only and not cmp.right_only
        text = [f for f in cmp.common if not f.endswith(".h5")]  # HDF5 files carry their write times
        _, mismatch, errors = filecmp.cmpfiles(here / name, pool / name, text, shallow=False)
        assert not mismatch and not errors
        a_here, b_here = read_deeph(here / name)
        a_pool, b_pool = read_deeph(pool / name)
        np.testing.assert_array_equal(a_here.positions, a_pool.positions)
        np.testing.assert_array_equal(b_here.h, b_pool.h)
        np.testing.assert_array_equal(b_here.s, b_pool.s)
    stamp = (pool / "ab3_00000" / "info.json").stat().st_mtime_ns
    generate_electron_set(tmp_path / "pool", cfg, forces, sk, progress=False, workers=2)
    assert (pool / "ab3_00000" / "info.json").stat().st_mtime_ns == stamp
