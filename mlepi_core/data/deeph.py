"""DeepH "processed" layout: one folder per structure, written atomically, read exactly.

A structure folder holds what DeepH-pack's preprocessors write
(``deeph/preprocess/abacus_get_data.py``, ``openmx_get_data.jl``) and DeepH-E3 reads
(``deephe3/data.py``):

====================  =====================================================================
lat.dat               3 x 3, lattice vectors as *columns*, Angstrom
rlat.dat              3 x 3, reciprocal vectors as columns, 2*pi included, 1/Angstrom
site_positions.dat    3 x N, Cartesian positions as columns, Angstrom
element.dat           N atomic numbers, one a line
orbital_types.dat     one line per atom: the l of each shell ("0 1" for carbon s, p)
info.json             {"isorthogonal", "isspinful", "fermi_level" (eV), "nsites", "norbits"}
hamiltonians.h5       one float64 (norb_i, norb_j) dataset per pair, eV,
                      keyed "[Rx, Ry, Rz, i, j]" with 1-based atom indices i, j
overlaps.h5           the same for the overlap, dimensionless
layer.dat             mlepi's optional extra: layer index per atom (0 = lowest)
====================  =====================================================================

Orbital order: the files use DeepH's order, OpenMX's real harmonics (p = px, py, pz;
d = dz2, dx2-y2, dxy, dxz, dyz), so DeepH-pack and DeepH-E3 read our data as their own.
In memory a ``Blocks`` uses the real-harmonic order m = -l..l (tblite's, DeepH-E3's
"wiki" order; p = py, pz, px; d = dxy, dyz, dz2, dxz,
dx2-y2), the permutation DeepH-E3 itself applies (``Us_openmx2wiki`` in
``deephe3/e3modules.py``, no sign changes). A permutation is exact, and text is
written with 19 significant digits, so a write/read round trip is bit for bit.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import warnings
from pathlib import Path

import h5py
import numpy as np
from ase import Atoms

from ..seams import Blocks
from ..structures import assign_layers


class DataFormatError(ValueError):
    """A data file mlepi cannot read; the message names the file and the problem."""


# In-memory (m = -l..l, "wiki") component k of a shell with angular momentum l is DeepH/OpenMX component [l][k]
# (deephe3/e3modules.py, Us_openmx2wiki).
_OPENMX_TO_E3NN = {0: [0], 1: [1, 2, 0], 2: [2, 4, 0, 3, 1], 3: [6, 4, 2, 0, 1, 3, 5]}
_E3NN_NAMES = {0: ["s"], 1: ["py", "pz", "px"], 2: ["dxy", "dyz", "dz2", "dxz", "dx2-y2"],
               3: [f"f{m:+d}" for m in range(-3, 4)]}
FILE_ORBITAL_ORDER = "openmx"  # the only order in the files: DeepH's own
_DEFAULT_TYPES = {1: [0], 4: [0, 1]}  # norb -> shells when a Blocks does not say
TEXT_FMT = "%.18e"  # DeepH's (numpy's) default; more digits than float64 needs
SPLIT_FILE = "split.json"
SPLIT_KEYS = ("train", "val", "test")
_STRUCTURE_FILES = ("element.dat", "orbital_types.dat", "lat.dat", "site_positions.dat")


def orbital_names(orbital_types: list[int]) -> str:
    """Names of one atom's orbitals in the in-memory m = -l..l order, e.g. [0, 1] -> "s,py,pz,px"."""
    return ",".join(n for ell in orbital_types for n in _E3NN_NAMES[ell])


def _memory_from_file(orbital_types: list[int]) -> np.ndarray:
    """Index array p with block_memory[a] = block_file[p[a]] for one atom's orbitals."""
    idx, offset = [], 0
    for ell in orbital_types:
        idx.extend(offset + k for k in _OPENMX_TO_E3NN[ell])
        offset += 2 * ell + 1
    return np.array(idx, dtype=np.int64)


def _pair_key(R, i: int, j: int) -> str:
    """DeepH's dataset name, exactly as its preprocessors format it (1-based atoms)."""
    return f"[{int(R[0])}, {int(R[1])}, {int(R[2])}, {i + 1}, {j + 1}]"


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


# --- writing ----------------------------------------------------------------------

def _resolve_orbital_types(blocks: Blocks, orbital_types) -> list[list[int]]:
    types = orbital_types if orbital_types is not None else blocks.meta.get("orbital_types")
    if types is None:
        try:
            types = [_DEFAULT_TYPES[int(n)] for n in blocks.norb]
        except KeyError:
            raise ValueError("cannot tell the shells of an atom with "
                             f"{sorted(set(blocks.norb.tolist()) - set(_DEFAULT_TYPES))} orbitals; "
                             "pass orbital_types (l of each shell per atom)") from None
    types = [[int(ell) for ell in t] for t in types]
    if len(types) != blocks.n_atoms:
        raise ValueError(f"orbital_types has {len(types)} atoms, Blocks has {blocks.n_atoms}")
    for a, t in enumerate(types):
        if any(ell not in _OPENMX_TO_E3NN for ell in t) \
                or sum(2 * ell + 1 for ell in t) != blocks.norb[a]:
            raise ValueError(f"atom {a}: orbital_types {t} do not give its {blocks.norb[a]} "
                             "orbitals (l = 0..3, 2l+1 each)")
    if any(ell > 0 for t in types for ell in t):
        allowed = {orbital_names(t) for t in types} | {"wiki"}
        if blocks.orbital_order not in allowed:
            raise ValueError(f"Blocks.orbital_order {blocks.orbital_order!r} is not the in-memory m = -l..l order "
                             f"({' or '.join(sorted(allowed))}); the writer permutes from it")
    return types


def _check_blocks(atoms: Atoms, blocks: Blocks) -> None:
    n, P = len(atoms), len(blocks.i)
    i, j = np.asarray(blocks.i), np.asarray(blocks.j)
    if blocks.n_atoms != n:
        raise ValueError(f"Blocks has {blocks.n_atoms} atoms, the structure {n}")
    nmax = int(blocks.norb.max())
    if len(blocks.j) != P or np.shape(blocks.R) != (P, 3):
        raise ValueError("Blocks.i, .j and .R (P, 3) disagree in length")
    for name in ("h", "s"):
        shape = np.shape(getattr(blocks, name))
        if len(shape) != 3 or shape[0] != P or shape[1] != shape[2] or shape[1] < nmax:
            raise ValueError(f"Blocks.{name} has shape {shape}, need ({P}, n, n) with n >= {nmax}")
    if P and (min(i.min(), j.min()) < 0 or max(i.max(), j.max()) >= n):
        raise ValueError(f"Blocks pair indices out of range 0..{n - 1}")
    if len({(int(a), int(b), *map(int, r)) for a, b, r in zip(i, j, blocks.R)}) != P:
        raise ValueError("Blocks holds the same pair (i, j, R) twice")


def _padded_perm(types: list[list[int]], nmax: int, inverse: bool) -> np.ndarray:
    """(N, nmax) per-atom orbital permutation memory <- file (or its inverse), padding fixed."""
    out = np.tile(np.arange(nmax), (len(types), 1))
    cache = {}
    for a, t in enumerate(types):
        p = cache.setdefault(tuple(t), _memory_from_file(t))
        out[a, :len(p)] = np.argsort(p) if inverse else p
    return out


def _permute(mats: np.ndarray, i: np.ndarray, j: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """out[p] = mats[p][perm[i[p]]][:, perm[j[p]]] for all pairs at once."""
    return mats[np.arange(len(i))[:, None, None], perm[i][:, :, None], perm[j][:, None, :]]


def _write_h5(path: Path, keys: list[str], mats: np.ndarray, i: np.ndarray, j: np.ndarray,
              norb: np.ndarray) -> None:
    """One float64 dataset per pair through h5py's low-level API (3x faster than f[key] = x).

    track_order: the reader gets the pairs back in the order written.
    """
    with h5py.File(path, "w", track_order=True) as f:
        spaces = {}
        for p, key in enumerate(keys):
            block = np.ascontiguousarray(mats[p, :norb[i[p]], :norb[j[p]]], dtype=np.float64)
            if block.shape not in spaces:
                spaces[block.shape] = h5py.h5s.create_simple(block.shape)
            space = spaces[block.shape]
            dset = h5py.h5d.create(f.id, key.encode(), h5py.h5t.IEEE_F64LE, space)
            dset.write(h5py.h5s.ALL, h5py.h5s.ALL, block)


def _is_orthogonal(blocks: Blocks) -> bool:
    """Whether S is exactly the identity: 1 on on-site blocks, 0 elsewhere."""
    i, j, norb, s = np.asarray(blocks.i), np.asarray(blocks.j), blocks.norb, np.asarray(blocks.s)
    n = s.shape[1]
    rows, cols = np.arange(n) < norb[i][:, None], np.arange(n) < norb[j][:, None]
    valid = rows[:, :, None] & cols[:, None, :]
    onsite = (i == j) & np.all(np.asarray(blocks.R) == 0, axis=1)
    target = np.where(valid & onsite[:, None, None], np.eye(n), 0.0)
    return bool(np.array_equal(np.where(valid, s, 0.0), target))


def _move_into_place(tmp: Path, folder: Path, overwrite: bool) -> None:
    """Rename the finished folder onto its name; an old one is kept until that succeeds."""
    if not folder.exists():
        os.replace(tmp, folder)
        return
    if not overwrite:
        raise FileExistsError(f"{folder} exists; pass overwrite=True to replace it")
    old = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(folder, old)
    try:
        os.replace(tmp, folder)
    except BaseException:
        os.replace(old, folder)
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_deeph(folder: str | Path, atoms: Atoms, blocks: Blocks,
                orbital_types: list[list[int]] | None = None, fermi_level: float | None = None,
                overwrite: bool = False) -> Path:
    """Write one structure and its H (eV) and S blocks as a DeepH folder; return its path.

    ``orbital_types`` (l of each shell per atom) defaults to ``blocks.meta["orbital_types"]``,
    else s for 1 and s,p for 4 orbitals per atom; ``fermi_level`` (eV) to
    ``blocks.meta.get("fermi_level", 0.0)``. The rest of ``blocks.meta`` and the
    JSON-serialisable part of ``atoms.info`` go into info.json (tuples come back as lists).
    Everything is written into a hidden sibling
    folder that is renamed onto ``folder`` only when complete, so a failure leaves nothing.
    """
    folder = Path(folder)
    _check_blocks(atoms, blocks)
    types = _resolve_orbital_types(blocks, orbital_types)
    cell = np.array(atoms.cell, dtype=np.float64)
    if abs(np.linalg.det(cell)) < 1e-12:
        raise ValueError("the DeepH layout needs three lattice vectors; the cell is singular")
    meta = {k: v for k, v in blocks.meta.items() if k not in ("orbital_types", "fermi_level")}
    fermi = float(blocks.meta.get("fermi_level", 0.0) if fermi_level is None else fermi_level)
    info = {
        "nsites": len(atoms), "norbits": blocks.n_orbitals,
        "isorthogonal": _is_orthogonal(blocks), "isspinful": False, "fermi_level": fermi,
        "orbital_order": blocks.orbital_order, "file_orbital_order": FILE_ORBITAL_ORDER,
        "units": {"H": "eV", "S": "1", "length": "Angstrom", "fermi_level": "eV"},
        "meta": meta,
        "atoms_info": {k: v for k, v in atoms.info.items() if _jsonable(v)},
    }
    try:  # before anything touches the disk
        info_text = json.dumps(info, indent=1, default=_json_default)
    except TypeError as err:
        raise ValueError(f"Blocks.meta cannot be stored in info.json: {err}") from None
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} exists; pass overwrite=True to replace it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        np.savetxt(tmp / "lat.dat", cell.T, fmt=TEXT_FMT)
        np.savetxt(tmp / "rlat.dat", 2 * np.pi * np.linalg.inv(cell), fmt=TEXT_FMT)
        np.savetxt(tmp / "site_positions.dat", np.asarray(atoms.positions, np.float64).T,
                   fmt=TEXT_FMT)
        np.savetxt(tmp / "element.dat", atoms.numbers, fmt="%d")
        (tmp / "orbital_types.dat").write_text("".join(" ".join(map(str, t)) + "\n" for t in types))
        if "layer" in atoms.arrays:
            np.savetxt(tmp / "layer.dat", np.asarray(atoms.arrays["layer"]), fmt="%d")
        (tmp / "info.json").write_text(info_text)
        keys = [_pair_key(r, int(a), int(b)) for a, b, r in zip(blocks.i, blocks.j, blocks.R)]
        i, j = np.asarray(blocks.i, np.int64), np.asarray(blocks.j, np.int64)
        for name, mats in (("hamiltonians.h5", blocks.h), ("overlaps.h5", blocks.s)):
            perm = _padded_perm(types, mats.shape[1], inverse=True)
            _write_h5(tmp / name, keys, _permute(np.asarray(mats), i, j, perm), i, j, blocks.norb)
        _move_into_place(tmp, folder, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _jsonable(value) -> bool:
    try:
        json.dumps(value, default=_json_default)
    except (TypeError, ValueError):
        return False
    return True


# --- reading ----------------------------------------------------------------------

def _loadtxt(path: Path, ndmin: int) -> np.ndarray:
    if not path.is_file():
        raise DataFormatError(f"{path}: missing")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty file is caught by the shape checks
            return np.loadtxt(path, dtype=np.float64, ndmin=ndmin)
    except ValueError as err:
        raise DataFormatError(f"{path}: not a table of numbers ({err})") from None


def _integers(values: np.ndarray, path: Path) -> np.ndarray:
    if not np.all(np.isfinite(values)) or not np.array_equal(values, np.round(values)):
        raise DataFormatError(f"{path}: expected integers")
    return values.astype(np.int64)


def _read_json_object(path: Path) -> dict:
    """A JSON file holding one object, or a DataFormatError naming the file."""
    if not path.is_file():
        raise DataFormatError(f"{path}: missing")
    try:
        obj = json.loads(path.read_text())
    except ValueError:
        raise DataFormatError(f"{path}: not a JSON object") from None
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path}: not a JSON object")
    return obj


def _read_orbital_types(path: Path, n: int) -> list[list[int]]:
    if not path.is_file():
        raise DataFormatError(f"{path}: missing")
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    try:
        types = [[int(x) for x in ln] for ln in lines]
    except ValueError:
        raise DataFormatError(f"{path}: each line must list integer l values") from None
    if len(types) != n:
        raise DataFormatError(f"{path}: {len(types)} lines for {n} atoms")
    if any(ell not in _OPENMX_TO_E3NN for t in types for ell in t):
        raise DataFormatError(f"{path}: l must be 0..3")
    return types


def _read_h5(path: Path, norb: np.ndarray) -> dict[tuple, np.ndarray]:
    """Datasets of one DeepH .h5 file by 0-based (i, j, Rx, Ry, Rz), in the file's order.

    The file's order is its creation order where it tracks one (ours do), else
    (i, j, R) ascending, since name order ("[-1, ...]" < "[0, ...]") means nothing.
    Read through h5py's low-level API, about twice as fast as ``f[name][()]``.
    """
    if not path.is_file():
        raise DataFormatError(f"{path}: missing")
    n = len(norb)
    out = {}
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DataFormatError(f"{path}: not an HDF5 file ({err})") from None
    with f:
        tracked = f["/"].id.get_create_plist().get_link_creation_order() != 0
        names = []
        index = h5py.h5.INDEX_CRT_ORDER if tracked else h5py.h5.INDEX_NAME
        f.id.links.iterate(names.append, idx_type=index)
        for raw in names:
            name = raw.decode()
            try:
                key = json.loads(name)
            except ValueError:
                key = None
            if not (isinstance(key, list) and len(key) == 5 and all(type(x) is int for x in key)):
                raise DataFormatError(f"{path}: dataset name {name!r} is not '[Rx, Ry, Rz, i, j]'")
            i, j = key[3] - 1, key[4] - 1
            if not (0 <= i < n and 0 <= j < n):
                raise DataFormatError(f"{path}: {name} names an atom outside 1..{n} "
                                      "(indices are 1-based)")
            try:
                dset = h5py.h5d.open(f.id, raw)
            except KeyError:
                raise DataFormatError(f"{path}: {name} is not a dataset") from None
            if dset.shape != (norb[i], norb[j]):
                raise DataFormatError(f"{path}: {name} has shape {dset.shape}, "
                                      f"orbital_types.dat gives ({norb[i]}, {norb[j]})")
            block = np.empty(dset.shape, dtype=np.float64)
            try:  # HDF5 converts any real type to float64 and refuses complex (spinful) data
                dset.read(h5py.h5s.ALL, h5py.h5s.ALL, block)
            except (TypeError, ValueError, OSError) as err:
                raise DataFormatError(f"{path}: {name} is not real numbers ({err}); "
                                      "spinful/complex data is not supported") from None
            out[(i, j, *key[:3])] = block
    return out if tracked else dict(sorted(out.items()))


def read_deeph(folder: str | Path) -> tuple[Atoms, Blocks]:
    """Read one DeepH folder: the structure (Angstrom, pbc) and its H (eV) and S blocks.

    Layers come from layer.dat when present, else from z (``assign_layers``). Pairs
    present in only one of hamiltonians.h5 / overlaps.h5 get zero blocks in the other,
    as DeepH's ABACUS interface drops blocks below 1e-8. A missing overlaps.h5 is read as
    S = 1 only where info.json declares ``"isorthogonal": true``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFormatError(f"{folder}: no such DeepH folder")
    lat = _loadtxt(folder / "lat.dat", 2)
    if lat.shape != (3, 3):
        raise DataFormatError(f"{folder / 'lat.dat'}: shape {lat.shape}, need 3 x 3")
    pos = _loadtxt(folder / "site_positions.dat", 2)
    numbers = _integers(_loadtxt(folder / "element.dat", 1), folder / "element.dat")
    n = len(numbers)
    if pos.shape != (3, n):
        raise DataFormatError(f"{folder / 'site_positions.dat'}: shape {pos.shape}, need 3 x {n} "
                              "(element.dat lists the atoms)")
    types = _read_orbital_types(folder / "orbital_types.dat", n)
    info_path = folder / "info.json"
    info = _read_json_object(info_path)
    if info.get("isspinful", False):
        raise DataFormatError(f"{info_path}: spinful data (isspinful) is not supported")
    if info.get("file_orbital_order", FILE_ORBITAL_ORDER) != FILE_ORBITAL_ORDER:
        raise DataFormatError(f"{info_path}: unknown file_orbital_order "
                              f"{info['file_orbital_order']!r}")

    atoms = Atoms(numbers=numbers, positions=pos.T, cell=lat.T, pbc=True)
    atoms.info.update(info.get("atoms_info", {}))
    if (folder / "layer.dat").is_file():
        layer = _integers(_loadtxt(folder / "layer.dat", 1), folder / "layer.dat")
        if len(layer) != n:
            raise DataFormatError(f"{folder / 'layer.dat'}: {len(layer)} values for {n} atoms")
        atoms.arrays["layer"] = layer
    else:
        assign_layers(atoms)

    norb = np.array([sum(2 * ell + 1 for ell in t) for t in types], dtype=np.int64)
    hmats = _read_h5(folder / "hamiltonians.h5", norb)
    if (folder / "overlaps.h5").is_file():
        smats = _read_h5(folder / "overlaps.h5", norb)
    elif info.get("isorthogonal", False):
        smats = {k: np.eye(norb[k[0]]) for k in hmats if k[0] == k[1] and k[2:] == (0, 0, 0)}
    else:
        raise DataFormatError(f"{folder / 'overlaps.h5'}: missing, and info.json does not declare "
                              "\"isorthogonal\": true")
    keys = list(hmats) + [k for k in smats if k not in hmats]
    P, nmax = len(keys), int(norb.max()) if n else 0
    h, s = np.zeros((P, nmax, nmax)), np.zeros((P, nmax, nmax))
    for p, k in enumerate(keys):
        if k in hmats:
            h[p, :norb[k[0]], :norb[k[1]]] = hmats[k]
        if k in smats:
            s[p, :norb[k[0]], :norb[k[1]]] = smats[k]
    kk = np.array(keys, dtype=np.int64).reshape(P, 5)
    perm = _padded_perm(types, nmax, inverse=False)
    h, s = _permute(h, kk[:, 0], kk[:, 1], perm), _permute(s, kk[:, 0], kk[:, 1], perm)
    same = len({tuple(t) for t in types}) == 1
    order = info.get("orbital_order") or (orbital_names(types[0]) if same and n else "wiki")
    meta = dict(info.get("meta", {}))
    meta.update(fermi_level=float(info.get("fermi_level", 0.0)), orbital_types=types)
    blocks = Blocks(i=kk[:, 0].copy(), j=kk[:, 1].copy(), R=kk[:, 2:].copy(), h=h, s=s,
                    norb=norb, orbital_order=order, meta=meta)
    return atoms, blocks


# --- data sets and splits -----------------------------------------------------------

def read_deeph_set(root: str | Path) -> list[tuple[str, Path]]:
    """All structure folders under ``root`` as (name, folder), sorted by name.

    A folder counts when it holds element.dat, orbital_types.dat, lat.dat and
    site_positions.dat (DeepH-E3's test); names are paths relative to ``root``.
    Hidden folders (unfinished writes) are skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"{root}: no such data set folder")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if set(_STRUCTURE_FILES).issubset(filenames):
            folder = Path(dirpath)
            found.append((folder.relative_to(root).as_posix(), folder))
    return sorted(found)


def _check_split(split: dict, where: str) -> None:
    for key in SPLIT_KEYS:
        names = split.get(key)
        if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
            raise DataFormatError(f"{where}: \"{key}\" must be a list of structure names")
    seen = [x for key in SPLIT_KEYS for x in split[key]]
    if len(seen) != len(set(seen)):
        raise DataFormatError(f"{where}: a structure appears twice across train/val/test")


def write_split(root: str | Path, split: dict) -> Path:
    """Write ``root/split.json`` ({"train", "val", "test": [names], "seed": ...}) atomically."""
    path = Path(root) / SPLIT_FILE
    _check_split(split, "split")
    text = json.dumps(split, indent=1, default=_json_default)
    tmp = path.with_name(f".{SPLIT_FILE}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_split(root: str | Path) -> dict:
    """Read and check ``root/split.json``."""
    path = Path(root) / SPLIT_FILE
    split = _read_json_object(path)
    _check_split(split, str(path))
    return split
