"""Round trips and failure modes of the extxyz and DeepH readers/writers (float64, fixed seeds)."""

import json

import h5py
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write as ase_write

from mlepi_core.data import (DataFormatError, read_deeph, read_deeph_set, read_extxyz, read_split,
                             write_deeph, write_extxyz, write_split)
from mlepi_core.seams import Blocks
from mlepi_core.structures import bilayer, supercell

NORB = 4  # carbon s, py, pz, px


@pytest.fixture
def atoms():
    a = supercell(bilayer("AB"), 2)
    a.positions += np.random.default_rng(1).normal(scale=0.05, size=a.positions.shape)
    return a


def hand_blocks(atoms, rc=4.0, seed=0):
    """Random Hermitian blocks on all pairs within rc, in shuffled (non-canonical) order."""
    rng = np.random.default_rng(seed)
    cell, pos = atoms.cell.array, atoms.positions
    pairs = {}
    for i in range(len(atoms)):
        for j in range(len(atoms)):
            for R in np.ndindex(3, 3):
                R = (R[0] - 1, R[1] - 1, 0)
                if np.linalg.norm(pos[j] + np.array(R) @ cell - pos[i]) > rc or (i, j, R) in pairs:
                    continue
                h, s = rng.normal(size=(2, NORB, NORB))
                if (i, j, R) == (j, i, tuple(-x for x in R)):  # on-site: symmetric
                    h, s = h + h.T, s + s.T
                pairs[(i, j, R)] = (h, s)
                pairs[(j, i, tuple(-x for x in R))] = (h.T, s.T)
    keys = list(pairs)
    order = rng.permutation(len(keys))
    keys = [keys[k] for k in order]
    return Blocks(i=np.array([k[0] for k in keys]), j=np.array([k[1] for k in keys]),
                  R=np.array([k[2] for k in keys]),
                  h=np.stack([pairs[k][0] for k in keys]), s=np.stack([pairs[k][1] for k in keys]),
                  norb=np.full(len(atoms), NORB), meta={"fermi_level": -4.25, "config_id": 7})


def block_dict(b):
    return {(int(i), int(j), *map(int, R)): (h, s)
            for i, j, R, h, s in zip(b.i, b.j, b.R, b.h, b.s)}


def assert_blocks_equal(a, b):
    for name in ("i", "j", "R", "h", "s", "norb"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


# --- DeepH -------------------------------------------------------------------------

def test_deeph_round_trip_is_bit_for_bit(tmp_path, atoms):
    blocks = hand_blocks(atoms)
    folder = write_deeph(tmp_path / "s0", atoms, blocks)
    got_atoms, got = read_deeph(folder)
    assert np.array_equal(got_atoms.positions, atoms.positions)
    assert np.array_equal(got_atoms.cell.array, atoms.cell.array)
    assert np.array_equal(got_atoms.numbers, atoms.numbers)
    assert np.array_equal(got_atoms.arrays["layer"], atoms.arrays["layer"])
    assert got_atoms.pbc.all()
    assert_blocks_equal(got, blocks)
    assert got.h.dtype == got.s.dtype == np.float64
    assert got.orbital_order == "s,py,pz,px"
    assert got.meta["fermi_level"] == -4.25 and got.meta["config_id"] == 7
    assert got.meta["orbital_types"] == [[0, 1]] * len(atoms)


def test_deeph_files_follow_deeph_conventions(tmp_path, atoms):
    blocks = hand_blocks(atoms)
    folder = write_deeph(tmp_path / "s0", atoms, blocks)
    lat = np.loadtxt(folder / "lat.dat")
    assert np.array_equal(lat, atoms.cell.array.T)  # vectors as columns
    rlat = np.loadtxt(folder / "rlat.dat")
    assert np.allclose(lat.T @ rlat, 2 * np.pi * np.eye(3))  # a_i . b_j = 2 pi delta_ij
    assert np.loadtxt(folder / "site_positions.dat").shape == (3, len(atoms))
    assert (folder / "orbital_types.dat").read_text().splitlines()[0] == "0 1"
    info = json.loads((folder / "info.json").read_text())
    assert info["isorthogonal"] is False and info["isspinful"] is False
    assert info["units"]["H"] == "eV" and info["fermi_level"] == -4.25
    p = 0
    i, j, R = blocks.i[p], blocks.j[p], blocks.R[p]
    with h5py.File(folder / "hamiltonians.h5", "r") as f:
        stored = f[f"[{R[0]}, {R[1]}, {R[2]}, {i + 1}, {j + 1}]"][()]  # 1-based atoms
        assert len(f) == len(blocks.i)
    # DeepH's files order p as (px, py, pz); Blocks as m = -1, 0, 1 (py, pz, px).
    e3nn_from_file = [0, 2, 3, 1]
    assert np.array_equal(stored[np.ix_(e3nn_from_file, e3nn_from_file)], blocks.h[p])


def test_external_folder_any_key_order_no_layer_file(tmp_path, atoms):
    """A folder as DeepH writes it: name-ordered keys, DeepH-only info.json, no layer.dat."""
    blocks = hand_blocks(atoms)
    folder = write_deeph(tmp_path / "ext", atoms, blocks)
    for name in ("hamiltonians.h5", "overlaps.h5"):
        with h5py.File(folder / name, "r") as f:
            data = {k: f[k][()] for k in f}
        with h5py.File(folder / name, "w") as f:  # no creation order, reversed insertion
            for k in sorted(data, reverse=True):
                f[k] = data[k]
    (folder / "layer.dat").unlink()
    (folder / "info.json").write_text(json.dumps({"isorthogonal": False, "isspinful": False,
                                                  "fermi_level": 0.0}))
    got_atoms, got = read_deeph(folder)
    assert np.array_equal(got_atoms.arrays["layer"], atoms.arrays["layer"])  # detected from z
    want, have = block_dict(blocks), block_dict(got)
    assert want.keys() == have.keys()
    assert all(np.array_equal(want[k][0], have[k][0]) and np.array_equal(want[k][1], have[k][1])
               for k in want)
    keys = [(i, j, *R) for i, j, R in zip(got.i.tolist(), got.j.tolist(), got.R.tolist())]
    assert keys == sorted(keys)  # canonical order when the file has none
    assert got.orbital_order == "s,py,pz,px"


def test_orthogonal_folder_without_overlaps(tmp_path):
    """An orthogonal single-orbital model (S = 1) may omit overlaps.h5."""
    a = bilayer("AB")
    pairs = [(0, 0, (0, 0, 0)), (0, 1, (0, 0, 0)), (1, 0, (0, 0, 0))]
    b = Blocks(i=np.array([p[0] for p in pairs]), j=np.array([p[1] for p in pairs]),
               R=np.array([p[2] for p in pairs]), h=np.array([[[0.1]], [[-2.7]], [[-2.7]]]),
               s=np.array([[[1.0]], [[0.0]], [[0.0]]]), norb=np.ones(4, int),
               orbital_order="pz_local")
    folder = write_deeph(tmp_path / "sk", a, b)
    assert json.loads((folder / "info.json").read_text())["isorthogonal"] is True
    (folder / "overlaps.h5").unlink()
    _, got = read_deeph(folder)
    assert_blocks_equal(got, b)
    assert got.orbital_order == "pz_local"


@pytest.mark.parametrize("fname, damage, match", [
    ("lat.dat", "delete", "lat.dat: missing"),
    ("element.dat", "6\nabc\n", "element.dat"),
    ("site_positions.dat", "1 2 3\n", "site_positions.dat"),
    ("orbital_types.dat", "0 1\n", "orbital_types.dat"),
    ("info.json", "{not json", "info.json"),
    ("info.json", "[1, 2]", "info.json: not a JSON object"),
    ("info.json", "delete", "info.json: missing"),
    ("hamiltonians.h5", "not hdf5", "hamiltonians.h5"),
    ("overlaps.h5", "delete", "overlaps.h5"),
])
def test_bad_files_raise_naming_the_file(tmp_path, atoms, fname, damage, match):
    folder = write_deeph(tmp_path / "bad", atoms, hand_blocks(atoms))
    if damage == "delete":
        (folder / fname).unlink()
    else:
        (folder / fname).write_text(damage)
    with pytest.raises(DataFormatError, match=match):
        read_deeph(folder)


@pytest.mark.parametrize("key, shape, match", [
    ("[0, 0, 1]", (4, 4), "is not"),
    ("[0, 0, 0, 1, 1.0]", (4, 4), "is not"),
    ("Rx", (4, 4), "is not"),
    ("[0, 0, 0, 0, 1]", (4, 4), "1-based"),
    ("[0, 0, 0, 1, 2]", (4, 3), "shape"),
    ("[0, 0, 0, 1, 2]", "complex", "complex"),
])
def test_malformed_h5_entries(tmp_path, atoms, key, shape, match):
    folder = write_deeph(tmp_path / "bad", atoms, hand_blocks(atoms))
    with h5py.File(folder / "hamiltonians.h5", "a") as f:
        if key in f:
            del f[key]
        f[key] = np.zeros((4, 4), complex) if shape == "complex" else np.zeros(shape)
    with pytest.raises(DataFormatError, match=rf"hamiltonians\.h5.*{match}"):
        read_deeph(folder)


def test_failed_write_leaves_nothing(tmp_path, atoms, monkeypatch):
    blocks = hand_blocks(atoms)
    calls = {"n": 0}
    original = h5py.h5d.create  # the writer's one call per dataset

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 50:
            raise OSError("disk full (simulated)")
        return original(*args, **kwargs)

    monkeypatch.setattr(h5py.h5d, "create", flaky)
    with pytest.raises(OSError, match="simulated"):
        write_deeph(tmp_path / "s0", atoms, blocks)
    assert list(tmp_path.iterdir()) == []

    # An existing folder survives a failed overwrite untouched.
    monkeypatch.setattr(h5py.h5d, "create", original)
    write_deeph(tmp_path / "s0", atoms, blocks)
    calls["n"] = 0
    monkeypatch.setattr(h5py.h5d, "create", flaky)
    with pytest.raises(OSError, match="simulated"):
        write_deeph(tmp_path / "s0", atoms, hand_blocks(atoms, seed=1), overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["s0"]
    assert_blocks_equal(read_deeph(tmp_path / "s0")[1], blocks)
    with pytest.raises(FileExistsError):
        write_deeph(tmp_path / "s0", atoms, blocks)


def test_data_set_listing_and_split(tmp_path, atoms):
    blocks = hand_blocks(atoms, rc=2.0)
    for name in ("c", "a", "b"):
        write_deeph(tmp_path / name, atoms, blocks)
    (tmp_path / ".d.tmp-123").mkdir()  # a killed writer's leftovers are not structures
    (tmp_path / "notes.txt").write_text("x")
    listed = read_deeph_set(tmp_path)
    assert [n for n, _ in listed] == ["a", "b", "c"]
    assert listed[0][1] == tmp_path / "a"
    with pytest.raises(DataFormatError, match="split.json: missing"):
        read_split(tmp_path)
    split = {"train": ["a"], "val": ["b"], "test": ["c"], "seed": 0}
    write_split(tmp_path, split)
    assert read_split(tmp_path) == split
    (tmp_path / "split.json").write_text(json.dumps({"train": ["a"], "val": "b", "test": []}))
    with pytest.raises(DataFormatError, match="split.json.*val"):
        read_split(tmp_path)
    with pytest.raises(DataFormatError, match="twice"):
        write_split(tmp_path, {"train": ["a"], "val": ["a"], "test": []})


# --- extxyz ------------------------------------------------------------------------

def make_frames(atoms, n=3):
    rng = np.random.default_rng(2)
    frames = []
    for k in range(n):
        a = atoms.copy()
        a.positions += rng.normal(scale=0.1, size=a.positions.shape)
        a.info.update(energy=float(rng.normal(-150.0, 3.0)), split=["train", "val", "test"][k],
                      config_id=k)
        a.arrays["forces"] = rng.normal(size=(len(a), 3))
        frames.append(a)
    return frames


def test_extxyz_round_trip(tmp_path, atoms):
    frames = make_frames(atoms)
    frames[0].calc = SinglePointCalculator(frames[0], energy=1.0)  # must not leak into the file
    path = write_extxyz(tmp_path / "phonons.extxyz", frames)
    got = read_extxyz(path)
    assert len(got) == len(frames)
    bound = 0.5 * 10.0 ** -8 * (1 + 1e-6)  # ASE writes per-atom floats with %16.8f
    for a, b in zip(frames, got):
        assert b.calc is None
        assert b.info["energy"] == a.info["energy"]  # repr: exact
        assert b.info["split"] == a.info["split"] and b.info["config_id"] == a.info["config_id"]
        assert np.array_equal(b.arrays["layer"], a.arrays["layer"])
        assert np.array_equal(b.numbers, a.numbers) and np.array_equal(b.cell.array, a.cell.array)
        assert np.abs(b.positions - a.positions).max() <= bound
        assert np.abs(b.arrays["forces"] - a.arrays["forces"]).max() <= bound
        assert "REF_energy" not in b.info and "REF_forces" not in b.arrays
    text = path.read_text()
    assert "REF_energy=" in text and "REF_forces:R:3" in text
    assert list(tmp_path.iterdir()) == [path]


def test_extxyz_reads_plain_ase_files(tmp_path, atoms):
    """An extxyz from elsewhere: energy/forces as ASE writes them from a calculator, no layers."""
    a = atoms.copy()
    del a.arrays["layer"]
    forces = np.random.default_rng(3).normal(size=(len(a), 3))
    a.calc = SinglePointCalculator(a, energy=-3.5, forces=forces)
    ase_write(tmp_path / "x.xyz", a, format="extxyz")
    (b,) = read_extxyz(tmp_path / "x.xyz")
    assert b.info["energy"] == -3.5 and b.calc is None
    assert np.abs(b.arrays["forces"] - forces).max() <= 5e-9 * (1 + 1e-6)
    assert np.array_equal(b.arrays["layer"], atoms.arrays["layer"])


def test_extxyz_errors(tmp_path):
    with pytest.raises(DataFormatError, match="none.extxyz: missing"):
        read_extxyz(tmp_path / "none.extxyz")
    (tmp_path / "bad.extxyz").write_text("3\nnot a comment line with Properties=oops\nC 0 0\n")
    with pytest.raises(DataFormatError, match="bad.extxyz"):
        read_extxyz(tmp_path / "bad.extxyz")
