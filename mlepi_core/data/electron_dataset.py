"""Training tensors for HedgeNet-Electron: H and S blocks aligned with the graph's edges.

For one structure and its blocks (a DeepH folder, or ``(atoms, Blocks)`` in memory)
the heterogeneous graph is built with the model's cutoffs, and every graph edge k =
(i, j, R) of each relation gets its targets H_ij(R) (eV) and S_ij(R), looked up in
the ``Blocks`` by (i, j, R); the on-site targets are the pairs (i, i, 0). Every graph
edge must have a label (the labels' r_c must reach the graph's cutoffs), otherwise
the sample is refused. Blocks are in the in-memory orbital order of ``Blocks``
(tblite's s, p_y, p_z, p_x), as the model predicts them.

A split of a DeepH data set is processed once and cached to one ``.pt`` file
(``load_split``; written to a temporary name and renamed, keyed by the folder
names, file sizes and modification times, cutoffs and dtype), so that later epochs
and runs never re-read the HDF5 files. ``collate_electron`` batches samples into one
``HeteroGraph`` with concatenated targets and reverse-edge indices, in the layout of
``HedgeNetElectron.forward``'s output.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from ase import Atoms

from ..files import file_sha256
from ..graph import DEFAULT_CUTOFFS, Edges, HeteroGraph, batch_graphs, build_graph
from ..models.electron import ONSITE, TARGETS, reverse_edge_index
from ..seams import Blocks
from ..structures import assign_layers
from .deeph import DataFormatError, read_deeph, read_split

CACHE_FORMAT = 1
CACHE_DIR = ".cache"  # under the data set root; hidden folders are not structures (read_deeph_set)


class LabelError(ValueError):
    """A graph edge (or atom) has no H/S label in the blocks; the message says which."""


@dataclass
class ElectronSample:
    """One structure: its graph (float64 positions) and targets aligned with the graph.

    ``targets[t][key]`` with t in ("h", "s") and key "onsite" (N, n, n) or a relation
    (E_r, n, n), edge k of ``graph.edges[relation]``; ``reverse[relation][k]`` is the edge
    (j, i, -R). ``n_unused_labels`` counts label pairs outside the graph (beyond its cutoffs).
    """

    name: str
    graph: HeteroGraph
    targets: dict[str, dict[str, torch.Tensor]]
    reverse: dict[str, torch.Tensor]
    n_unused_labels: int = 0

    @property
    def n_atoms(self) -> int:
        return self.graph.n_atoms

    def to_dict(self) -> dict:
        """Plain containers of tensors (what the cache stores; loads with weights_only=True)."""
        g = self.graph
        return {"name": self.name, "positions": g.positions, "numbers": g.numbers, "layer": g.layer,
                "cell": g.cell, "cutoffs": dict(g.cutoffs),
                "edges": {rel: {"index": e.index, "shift": e.shift} for rel, e in g.edges.items()},
                "targets": self.targets, "reverse": self.reverse,
                "n_unused_labels": int(self.n_unused_labels)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "ElectronSample":
        graph = HeteroGraph(positions=d["positions"], numbers=d["numbers"], layer=d["layer"],
                            batch=torch.zeros(len(d["numbers"]), dtype=torch.long), cell=d["cell"],
                            edges={rel: Edges(e["index"], e["shift"]) for rel, e in d["edges"].items()},
                            cutoffs=dict(d["cutoffs"]))
        return cls(name=d["name"], graph=graph, targets={t: dict(v) for t, v in d["targets"].items()},
                   reverse=dict(d["reverse"]), n_unused_labels=int(d.get("n_unused_labels", 0)))


def pair_index(blocks: Blocks, i: np.ndarray, j: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Index p of the pair (i, j, R) in ``blocks`` for every query, -1 where it has none.

    Vectorised: pairs are keyed by one int64 code and matched by a sorted search.
    """
    bi, bj, bR = (np.asarray(x, dtype=np.int64) for x in (blocks.i, blocks.j, blocks.R))
    i, j, shift = (np.asarray(x, dtype=np.int64) for x in (i, j, shift))
    if len(i) == 0:
        return np.zeros(0, dtype=np.int64)
    if len(bi) == 0:
        return np.full(len(i), -1, dtype=np.int64)
    n = max(int(blocks.n_atoms), int(max(i.max(), j.max())) + 1)
    half = int(max(np.abs(bR).max(), np.abs(shift).max()))
    span = 2 * half + 1

    def code(a, b, s):
        s = s + half
        return (((a * n + b) * span + s[:, 0]) * span + s[:, 1]) * span + s[:, 2]

    keys = code(bi, bj, bR)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    query = code(i, j, shift)
    pos = np.clip(np.searchsorted(sorted_keys, query), 0, len(keys) - 1)
    found = sorted_keys[pos] == query
    return np.where(found, order[pos], -1)


def make_sample(atoms: Atoms, blocks: Blocks, cutoffs: Mapping[str, float] = DEFAULT_CUTOFFS,
                name: str = "", dtype: torch.dtype = torch.float64) -> ElectronSample:
    """Targets of one structure aligned with its graph; LabelError if an edge has no label.

    ``dtype`` is that of the stored targets (float32 halves a cache; H is then exact to
    ~1e-6 eV); positions stay float64.
    """
    where = f"{name}: " if name else ""
    if blocks.n_atoms != len(atoms):
        raise ValueError(f"{where}Blocks has {blocks.n_atoms} atoms, the structure {len(atoms)}")
    norb = np.asarray(blocks.norb)
    if len(norb) and np.any(norb != norb[0]):
        raise ValueError(f"{where}atoms with different orbital counts {sorted(set(norb.tolist()))} "
                         "are not supported by HedgeNet-Electron yet")
    n_orb = int(norb[0]) if len(norb) else 0
    if "layer" not in atoms.arrays:
        atoms = assign_layers(atoms.copy())
    graph = build_graph(atoms, cutoffs, dtype=torch.float64)
    n = len(atoms)
    h = np.asarray(blocks.h)[:, :n_orb, :n_orb]
    s = np.asarray(blocks.s)[:, :n_orb, :n_orb]
    targets = {t: {} for t in TARGETS}
    reverse = {}
    queries = {ONSITE: (np.arange(n), np.arange(n), np.zeros((n, 3), dtype=np.int64))}
    for rel, e in graph.edges.items():
        queries[rel] = (e.index[0].numpy(), e.index[1].numpy(), e.shift.numpy())
    used = 0
    for key, (i, j, shift) in queries.items():
        p = pair_index(blocks, i, j, shift)
        missing = np.flatnonzero(p < 0)
        if len(missing):
            k = missing[0]
            what = "atoms lack on-site blocks" if key == ONSITE else \
                f"{key!r} edges (within {graph.cutoffs[key]} A) have no label"
            raise LabelError(f"{where}{len(missing)} of {len(p)} {what}, e.g. (i, j, R) = "
                             f"({int(i[k])}, {int(j[k])}, {shift[k].tolist()}); the labels' r_c is "
                             f"{blocks.meta.get('r_c_A', 'unknown')} A")
        used += len(p)
        targets["h"][key] = torch.as_tensor(h[p], dtype=dtype)
        targets["s"][key] = torch.as_tensor(s[p], dtype=dtype)
        if key != ONSITE:
            reverse[key] = reverse_edge_index(graph.edges[key], n)
    return ElectronSample(name=name, graph=graph, targets=targets, reverse=reverse,
                          n_unused_labels=len(blocks.i) - used)


def _sample_from_folder(args) -> dict:
    folder, name, cutoffs, dtype = args
    atoms, blocks = read_deeph(folder)
    return make_sample(atoms, blocks, cutoffs, name=name, dtype=dtype).to_dict()


class ElectronDataset(torch.utils.data.Dataset):
    """A list of ``ElectronSample`` built with one set of cutoffs (relation -> Angstrom)."""

    def __init__(self, samples: Sequence[ElectronSample], cutoffs: Mapping[str, float]):
        self.samples = list(samples)
        self.cutoffs = {str(k): float(v) for k, v in cutoffs.items()}
        for smp in self.samples:
            if {k: float(v) for k, v in smp.graph.cutoffs.items()} != self.cutoffs:
                raise ValueError(f"{smp.name}: graph cutoffs {smp.graph.cutoffs} differ from the "
                                 f"data set's {self.cutoffs}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, k: int) -> ElectronSample:
        return self.samples[k]

    @property
    def names(self) -> list[str]:
        return [smp.name for smp in self.samples]

    @classmethod
    def from_structures(cls, pairs: Iterable[tuple[Atoms, Blocks]],
                        cutoffs: Mapping[str, float] = DEFAULT_CUTOFFS, names: Sequence[str] | None = None,
                        dtype: torch.dtype = torch.float64) -> "ElectronDataset":
        """From (atoms, Blocks) pairs in memory (e.g. ``GFN1Reference.blocks`` results)."""
        pairs = list(pairs)
        names = list(names) if names is not None else [f"{k:05d}" for k in range(len(pairs))]
        return cls([make_sample(a, b, cutoffs, name=nm, dtype=dtype) for (a, b), nm in zip(pairs, names)],
                   cutoffs)

    @classmethod
    def from_folders(cls, folders: Sequence[str | Path], cutoffs: Mapping[str, float] = DEFAULT_CUTOFFS,
                     names: Sequence[str] | None = None, dtype: torch.dtype = torch.float64,
                     workers: int = 1, progress: bool = False) -> "ElectronDataset":
        """From DeepH folders (``read_deeph``), read by ``workers`` processes."""
        folders = [Path(f) for f in folders]
        names = list(names) if names is not None else [f.name for f in folders]
        jobs = [(f, nm, dict(cutoffs), dtype) for f, nm in zip(folders, names)]
        if workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                results = pool.map(_sample_from_folder, jobs, chunksize=4)
                dicts = list(_progress(results, len(jobs), progress))
        else:
            dicts = list(_progress(map(_sample_from_folder, jobs), len(jobs), progress))
        return cls([ElectronSample.from_dict(d) for d in dicts], cutoffs)

    def save(self, path: str | Path, key: str = "") -> Path:
        """Write the data set to one .pt file, atomically (temporary name, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": CACHE_FORMAT, "key": key, "cutoffs": self.cutoffs,
                   "samples": [smp.to_dict() for smp in self.samples]}
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            torch.save(payload, tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path, key: str | None = None) -> "ElectronDataset":
        """Read a file written by ``save``; DataFormatError if it is not one (or ``key`` differs)."""
        path = Path(path)
        try:
            payload = torch.load(path, weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
            raise DataFormatError(f"{path}: not an electron data set cache ({err})") from None
        if not (isinstance(payload, dict) and payload.get("format") == CACHE_FORMAT):
            raise DataFormatError(f"{path}: not an electron data set cache (format tag is not {CACHE_FORMAT})")
        if key is not None and payload.get("key") != key:
            raise DataFormatError(f"{path}: cache key differs (stale cache)")
        return cls([ElectronSample.from_dict(d) for d in payload["samples"]], payload["cutoffs"])

    def avg_num_neighbors(self) -> dict[str, float]:
        """Mean number of edges per atom of each relation (``HedgeNetElectronConfig.avg_num_neighbors``)."""
        atoms = sum(smp.n_atoms for smp in self.samples)
        return {rel: sum(len(smp.graph.edges[rel]) for smp in self.samples) / max(atoms, 1)
                for rel in self.cutoffs}

    def normalisation_items(self) -> Iterator[tuple[torch.Tensor, dict, dict]]:
        """(atomic numbers, targets, {relation: edge lengths}) per structure, for
        ``electron_fitting.fit_normalisation``."""
        for smp in self.samples:
            g = smp.graph
            yield g.numbers, smp.targets, {rel: g.edge_vectors(rel).norm(dim=-1) for rel in g.edges}


def _progress(iterable, total: int, show: bool):
    if not show:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc="reading DeepH folders", unit="structure")


# --- batches ----------------------------------------------------------------------------------

@dataclass
class ElectronBatch:
    """Several structures as one graph, with targets and reverse edges offset to match."""

    graph: HeteroGraph
    targets: dict[str, dict[str, torch.Tensor]]
    reverse: dict[str, torch.Tensor]
    names: list[str] = field(default_factory=list)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "ElectronBatch":
        """Copy to ``device``; ``dtype`` applies to positions, cell and targets."""
        return ElectronBatch(
            graph=self.graph.to(device, dtype),
            targets={t: {k: v.to(device=device, dtype=dtype) for k, v in d.items()}
                     for t, d in self.targets.items()},
            reverse={rel: v.to(device) for rel, v in self.reverse.items()},
            names=list(self.names))


def collate_electron(samples: Sequence[ElectronSample]) -> ElectronBatch:
    """Batch samples into one disconnected graph (a ``DataLoader`` ``collate_fn``)."""
    if not samples:
        raise ValueError("cannot collate zero samples")
    graph = batch_graphs([smp.graph for smp in samples])
    reverse = {}
    for rel in graph.edges:
        counts = torch.tensor([len(smp.graph.edges[rel]) for smp in samples])
        offsets = torch.cumsum(counts, 0) - counts
        reverse[rel] = torch.cat([smp.reverse[rel] + offsets[k] for k, smp in enumerate(samples)])
    keys = [ONSITE, *graph.edges]
    targets = {t: {k: torch.cat([smp.targets[t][k] for smp in samples]) for k in keys}
               for t in samples[0].targets}
    return ElectronBatch(graph=graph, targets=targets, reverse=reverse, names=[smp.name for smp in samples])


# --- splits of a DeepH data set, cached ----------------------------------------------------------

def _cache_key(folders: Sequence[Path], names: Sequence[str], cutoffs: Mapping[str, float],
               dtype: torch.dtype) -> str:
    stamp = []
    for f in folders:
        for fn in ("hamiltonians.h5", "overlaps.h5", "site_positions.dat", "lat.dat", "layer.dat"):
            p = f / fn
            st = p.stat() if p.exists() else None
            stamp.append([fn, st.st_size if st else -1, st.st_mtime_ns if st else -1])
    text = json.dumps({"format": CACHE_FORMAT, "names": list(names), "cutoffs": dict(cutoffs),
                       "dtype": str(dtype), "files": stamp}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def load_split(root: str | Path, split: str = "train", cutoffs: Mapping[str, float] = DEFAULT_CUTOFFS,
               cache_dir: str | Path | None = None, dtype: torch.dtype = torch.float32,
               missing: str = "error", workers: int = 1, progress: bool = False) -> ElectronDataset:
    """The structures of ``split`` (a key of ``root/split.json``) as an ``ElectronDataset``, cached.

    The processed tensors go to ``cache_dir`` (default ``root/.cache``) as one .pt file
    named by a hash of the folder names, their files' sizes and times, the cutoffs and
    ``dtype``; a later call with the same inputs loads that file instead of the HDF5
    data. ``missing="skip"`` leaves out structures listed in the split whose folders do
    not exist yet (a data set still being generated); the default refuses them.
    """
    root = Path(root)
    split_names = read_split(root)
    if split not in split_names:
        raise DataFormatError(f"{root / 'split.json'}: no split {split!r} (has {sorted(split_names)})")
    names = list(split_names[split])
    if missing not in ("error", "skip"):
        raise ValueError("missing must be 'error' or 'skip'")
    present = [nm for nm in names if (root / nm / "hamiltonians.h5").is_file()]
    if len(present) < len(names) and missing == "error":
        absent = [nm for nm in names if nm not in set(present)]
        raise DataFormatError(f"{root}: {len(absent)} structure(s) of split {split!r} are missing, e.g. "
                              f"{absent[0]} (pass missing='skip' to use the ones present)")
    if not present:
        raise DataFormatError(f"{root}: no structure of split {split!r} is present")
    folders = [root / nm for nm in present]
    key = _cache_key(folders, present, cutoffs, dtype)
    cache = Path(cache_dir) if cache_dir is not None else root / CACHE_DIR
    path = cache / f"electron_{split}_{key[:16]}.pt"
    if path.is_file():
        try:
            return ElectronDataset.load(path, key=key)
        except DataFormatError:
            pass  # unreadable or stale: rebuild it below
    data = ElectronDataset.from_folders(folders, cutoffs, names=present, dtype=dtype, workers=workers,
                                        progress=progress)
    data.save(path, key=key)
    return data


# --- identity of a data set -------------------------------------------------------------------------

_FILE_DIGESTS: dict = {}  # (path, size, mtime_ns) -> sha256 digest, so a process hashes a file once


def valence_electrons_per_atom(root: str | Path, names: Sequence[str]) -> float | None:
    """Electrons per atom that the set's orbital basis holds, as its reference recorded them
    (info.json meta "valence_electrons", e.g. one per carbon for the p_z model); None when
    the first structure does not say (then the element's valence count applies)."""
    if not names:
        return None
    info = json.loads((Path(root) / names[0] / "info.json").read_text())
    count = (info.get("meta") or {}).get("valence_electrons")
    return None if count is None else float(count) / float(info["nsites"])


def _file_digest(path: Path) -> bytes:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_DIGESTS:
        _FILE_DIGESTS[key] = bytes.fromhex(file_sha256(path))
    return _FILE_DIGESTS[key]


def deeph_set_sha256(root: str | Path) -> str:
    """SHA-256 of a DeepH data set: split.json and every file of every structure it lists.

    The digest covers the contents (not the times) of the files, folder by folder in
    name order, so a copy of the data set hashes the same; a structure listed but absent
    counts as empty. Reads every byte once per process (about 8 s for the 2.8 GB
    electron set).
    """
    root = Path(root)
    split = read_split(root)
    names = sorted({nm for v in split.values() if isinstance(v, list) for nm in v})
    h = hashlib.sha256()
    h.update(_file_digest(root / "split.json"))
    for nm in names:
        folder = root / nm
        files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")) \
            if folder.is_dir() else []
        for f in files:
            h.update(f"{nm}/{f.name}\0".encode())
            h.update(_file_digest(f))
    return h.hexdigest()
