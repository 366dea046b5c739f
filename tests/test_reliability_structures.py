"""Reliability of structure input: the overlap check at any size (vesin's divide trap avoided),
input limits, and reading untrusted files in a child process (``load_isolated``)."""

import signal
import subprocess
import sys
import time
from itertools import product

import numpy as np
import pytest
from ase import Atoms
from ase.build import graphene
from ase.io import write

from mlepi_core import isolated_load
from mlepi_core.isolated_load import load_isolated
from mlepi_core.limits import LIMITS, InputLimits, check_atoms, check_supercell
from mlepi_core.neighbours import periodic_pairs, vesin_grid_is_safe
from mlepi_core.structures import StructureError, bilayer, supercell, validate

VESIN_CHILD = """
import sys
import numpy as np
from vesin import NeighborList
length, cutoff = float(sys.argv[1]), float(sys.argv[2])
cell = np.array([[length, 0, 0], [length / 2, length * np.sqrt(3) / 2, 0], [0, 0, 20.0]])
frac = np.random.default_rng(0).random((50, 3)); frac[:, 2] = 0.5
NeighborList(cutoff=cutoff, full_list=True).compute(frac @ cell, cell, [True, True, False], quantities="ij")
"""


def hexagonal_cell(length: float, height: float = 20.0) -> np.ndarray:
    return np.array([[length, 0, 0], [length / 2, length * np.sqrt(3) / 2, 0], [0, 0, height]])


def test_guard_predicts_every_vesin_trap():
    """vesin traps (SIGFPE) on large flat cells; ``vesin_grid_is_safe`` must call every cell
    that traps unsafe, and the mlepi sizes (6 A graph of 200,000 atoms) safe."""
    cases = [(369.0, 0.5), (1000.0, 0.5), (2300.0, 6.0), (300.0, 0.5), (1500.0, 6.0)]
    died = {}
    for length, cutoff in cases:
        run = subprocess.run([sys.executable, "-c", VESIN_CHILD, str(length), str(cutoff)], capture_output=True,
                             timeout=120)
        died[(length, cutoff)] = run.returncode == -signal.SIGFPE
    assert died[(369.0, 0.5)], "the 45,000-atom graphene cell no longer traps vesin: the guard may be relaxed"
    frac = np.random.default_rng(0).random((50, 3))
    frac[:, 2] = 0.5
    for (length, cutoff), trapped in died.items():
        cell = hexagonal_cell(length)
        if trapped:
            assert not vesin_grid_is_safe(frac @ cell, cell, [True, True, False], cutoff), (length, cutoff)
    sheet = graphene(a=2.46, size=(317, 317, 1), vacuum=10.0)  # 200,978 atoms
    assert vesin_grid_is_safe(sheet.positions, np.asarray(sheet.cell), [True, True, False], 6.0)


def brute_force_pairs(pos, cell, periodic, cutoff, reach=8):
    """Every (i, j, shift) within the cutoff by trying all shifts up to ``reach`` cells."""
    found = set()
    ranges = [range(-reach, reach + 1) if p else range(1) for p in periodic]
    for s in product(*ranges):
        d = np.linalg.norm(pos[None, :, :] + np.asarray(s) @ cell - pos[:, None, :], axis=-1)
        for i, j in zip(*np.nonzero(d < cutoff)):
            if i != j or any(s):
                found.add((int(i), int(j), s))
    return found


@pytest.mark.parametrize("periodic", [(True, True, False), (True, True, True)])
def test_periodic_pairs_equal_brute_force_in_a_skewed_cell(periodic):
    """The k-d tree search finds exactly the pairs of a brute-force search over shifts, in a
    strongly non-orthogonal cell with atoms outside it and a cutoff longer than a face distance."""
    rng = np.random.default_rng(3)
    cell = np.array([[6.0, 0.0, 0.0], [-4.5, 3.2, 0.0], [0.0, 0.0, 9.0]])  # 125 degrees between a1, a2
    pos = rng.random((25, 3)) @ cell + rng.normal(0.0, 4.0, (25, 3))
    for cutoff in (0.8, 3.5):  # 3.5 A exceeds the 2.6 A between the a2 faces
        i, j, s, d = periodic_pairs(pos, cell, periodic, cutoff)
        assert {(int(a), int(b), tuple(int(x) for x in c)) for a, b, c in zip(i, j, s)} == \
            brute_force_pairs(pos, cell, periodic, cutoff)
        np.testing.assert_allclose(d, np.linalg.norm(pos[j] + s @ cell - pos[i], axis=1), rtol=1e-12)


def test_overlap_found_only_through_a_diagonal_image():
    """Two atoms near opposite corners of a 60-degree cell are 0.2 A apart through the a2 - a1
    image and ~8 A apart inside the cell: validate reports them; along z likewise."""
    cell = hexagonal_cell(10.0)
    atoms = Atoms("C2", scaled_positions=[[0.01, 0.99, 0.5], [0.99, 0.01, 0.5]], cell=cell, pbc=True)
    assert np.linalg.norm(atoms.positions[0] - atoms.positions[1]) > 8.0
    with pytest.raises(StructureError, match=r"overlapping atoms: \d and \d are 0\.200 A apart"):
        validate(atoms)
    atoms = Atoms("C2", positions=[[1.0, 1.0, 0.1], [1.0, 1.0, 19.9]], cell=cell, pbc=True)
    with pytest.raises(StructureError, match="are 0.200 A apart"):
        validate(atoms)
    atoms.positions[1, 0] += 1.0  # now 1.02 A apart: fine
    validate(atoms)


def test_validate_large_sheets_without_trapping():
    """The 45,000-atom sheet that killed the process passes validation (in a child, so a
    regression cannot take the test run down), and a duplicated atom in it is found."""
    code = """
import time
import numpy as np
from ase.build import graphene
from mlepi_core.structures import StructureError, validate
atoms = graphene(a=2.46, size=(150, 150, 1), vacuum=10.0)
t = time.perf_counter(); validate(atoms); print(f"{time.perf_counter() - t:.2f}")
atoms += atoms[[12345]]
try:
    validate(atoms)
except StructureError as err:
    print(err)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-500:]
    seconds, message = run.stdout.strip().splitlines()
    assert float(seconds) < 20.0
    assert message == "overlapping atoms: 12345 and 45000 are 0.000 A apart (minimum 0.5 A)"


def test_limits_refuse_at_once_and_name_the_route():
    """A 999 x 999 supercell is refused from integers alone, naming the limit and the
    command line; within the limit nothing is raised; --max-atoms raises every atom limit."""
    t = time.perf_counter()
    with pytest.raises(StructureError, match=r"3,992,004 atoms, over the 1,296-atom limit .* "
                                             r"mlepi mc STRUCTURE --supercell n --max-atoms N"):
        check_supercell(4, 999, "mc")
    assert time.perf_counter() - t < 0.1
    check_supercell(4, 18, "mc")  # 1,296 atoms: the limit itself
    with pytest.raises(StructureError, match="1,300 atoms"):
        check_atoms(1300, "mc")
    with pytest.raises(StructureError, match="n >= 1"):
        check_supercell(4, 0, "phonons")
    raised = LIMITS.raised(100_000)
    check_atoms(100_000, "flat_bands", raised)
    check_atoms(100_000, "mc", raised)
    assert raised.max_file_bytes > LIMITS.max_file_bytes
    assert LIMITS.raised(None) is LIMITS
    assert LIMITS.max_file_bytes == LIMITS.bytes_per_atom * LIMITS.max_atoms


@pytest.fixture
def bilayer_file(tmp_path):
    path = tmp_path / "ab.extxyz"
    write(path, supercell(bilayer("AB"), 3))
    return path


def test_load_isolated_returns_layers_and_one_line_errors(tmp_path, bilayer_file):
    atoms = load_isolated(bilayer_file, elements={"C"})
    assert len(atoms) == 36 and sorted(set(atoms.arrays["layer"])) == [0, 1]
    with pytest.raises(StructureError, match="element\\(s\\) C not known"):
        load_isolated(bilayer_file, elements={"B", "N"})
    with pytest.raises(StructureError, match="36 atoms, over the 20-atom limit for a loaded structure .*--max-atoms"):
        load_isolated(bilayer_file, limits=InputLimits(max_atoms=20))
    with pytest.raises(StructureError, match=r"MiB, over the 0\.0 MiB limit for a structure file"):
        load_isolated(bilayer_file, limits=InputLimits(max_atoms=20, bytes_per_atom=1))
    with pytest.raises(StructureError, match="is a directory, not a structure file"):
        load_isolated(tmp_path)
    with pytest.raises(StructureError, match="no such file"):
        load_isolated(tmp_path / "missing.cif")
    cif = tmp_path / "broken.cif"
    cif.write_text("data_broken\n_cell_length_a 2.46\n_cell_length_b 2.46\n_cell_length_c 20\n")
    with pytest.raises(StructureError, match=r"data_broken has no atom positions \(_atom_site_fract_x/y/z"):
        load_isolated(cif)


@pytest.mark.parametrize("child, kwargs, message", [
    ("import os, signal; os.kill(os.getpid(), signal.SIGFPE)", {},
     r"the structure reader crashed \(signal SIGFPE\) on ab\.extxyz"),
    ("import time; time.sleep(60)", {"timeout_s": 1.0}, r"reading ab\.extxyz took longer than 1 s"),
    ("import resource; resource.setrlimit(resource.RLIMIT_AS, (2**28, 2**28)); b = bytearray(2**30)", {},
     r"reading ab\.extxyz needed more than 4\.0 GiB of memory"),
    ("import sys; sys.exit('reader gave up')", {}, r"failed on ab\.extxyz \(exit 1: reader gave up\)"),
])
def test_load_isolated_survives_a_crashing_reader(monkeypatch, bilayer_file, child, kwargs, message):
    """Whatever happens to the child (a signal, a hang, no memory, an exit), the caller gets
    one StructureError line and lives on."""
    monkeypatch.setattr(isolated_load, "CHILD", ("-c", child))
    with pytest.raises(StructureError, match=message) as err:
        load_isolated(bilayer_file, **kwargs)
    assert "\n" not in str(err.value)


def test_load_isolated_memory_bound_is_real(bilayer_file):
    """The child runs under RLIMIT_AS: with too little address space even the imports fail,
    and the caller gets a message instead of the memory being used."""
    with pytest.raises(StructureError, match="ab.extxyz"):
        load_isolated(bilayer_file, memory_bytes=64 * 2**20)
