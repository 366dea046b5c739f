"""Heterogeneous periodic graphs: edges typed by relation (intra-/inter-layer).

An edge i -> j (atom j in the cell displaced by the integer vector ``shift``) is
``intra`` when i and j are in the same layer and ``inter`` otherwise; each
relation may have its own cutoff (Angstrom). Many structures batch into one graph
with a ``batch`` vector, as in PyTorch Geometric, so a network sees one big
disconnected graph. Neighbour lists come from vesin (cell lists, O(N)).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np
import torch
from ase import Atoms
from vesin import NeighborList

from .neighbours import periodic_pairs, vesin_grid_is_safe

RELATIONS = ("intra", "inter")
DEFAULT_CUTOFFS = {"intra": 6.0, "inter": 6.0}  # Angstrom


@dataclass
class Edges:
    """Edges of one relation: ``index`` (2, E) sender i / receiver j, ``shift`` (E, 3) integer cells."""

    index: torch.Tensor
    shift: torch.Tensor

    def __len__(self) -> int:
        return self.index.shape[1]


@dataclass
class HeteroGraph:
    """A batch of periodic structures with relation-typed edges.

    Positions in Angstrom; ``cell[b]`` holds structure b's lattice vectors as rows.
    Edge vectors r_ij = x_j + shift . cell - x_i are recomputed from positions in
    torch, so forces follow from autograd through them.
    """

    positions: torch.Tensor  # (N, 3) Angstrom
    numbers: torch.Tensor  # (N,) atomic numbers
    layer: torch.Tensor  # (N,) layer index within its structure
    batch: torch.Tensor  # (N,) structure index
    cell: torch.Tensor  # (B, 3, 3) Angstrom
    edges: dict[str, Edges] = field(default_factory=dict)
    cutoffs: dict[str, float] = field(default_factory=dict)

    @property
    def n_structures(self) -> int:
        return self.cell.shape[0]

    @property
    def n_atoms(self) -> int:
        return self.positions.shape[0]

    def edge_vectors(self, relation: str, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Vectors r_ij (E, 3) in Angstrom from sender i to receiver j of ``relation``."""
        pos = self.positions if positions is None else positions
        e = self.edges[relation]
        i, j = e.index
        offset = torch.einsum("ek,ekl->el", e.shift.to(pos.dtype), self.cell[self.batch[i]])
        return pos[j] - pos[i] + offset

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "HeteroGraph":
        """Copy to a device; ``dtype`` applies to the floating tensors (positions, cell)."""
        fl = {"device": device, "dtype": dtype}
        return replace(
            self,
            positions=self.positions.to(**fl),
            cell=self.cell.to(**fl),
            numbers=self.numbers.to(device),
            layer=self.layer.to(device),
            batch=self.batch.to(device),
            edges={k: Edges(v.index.to(device), v.shift.to(device)) for k, v in self.edges.items()},
        )


def neighbour_pairs(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All ordered pairs (i, j, shift, distance) with |r_ij| < cutoff, periodic in-plane.

    Layered structures are periodic along a1, a2 only; z is open (vacuum). vesin's cell
    list does the search unless the cell is so large for the cutoff that vesin would shrink
    its grid, where it can divide by zero and kill the process; a k-d tree does it then.
    """
    periodic = [True, True, False]
    cell = np.asarray(atoms.cell)
    if not vesin_grid_is_safe(atoms.positions, cell, periodic, cutoff):
        return periodic_pairs(atoms.positions, cell, periodic, cutoff)
    nl = NeighborList(cutoff=cutoff, full_list=True)
    i, j, s, d = nl.compute(atoms.positions, cell, periodic, quantities="ijSd")
    return i.astype(np.int64), j.astype(np.int64), s.astype(np.int64), d


def build_graph(atoms: Atoms, cutoffs: Mapping[str, float] = DEFAULT_CUTOFFS,
                dtype: torch.dtype = torch.float64) -> HeteroGraph:
    """Heterogeneous graph of one structure; needs ``atoms.arrays["layer"]``.

    ``cutoffs`` maps each relation to its cutoff in Angstrom; a relation left out
    has no edges, and ``{"all": rc}`` gives the homogeneous graph (one relation).
    """
    if "layer" not in atoms.arrays:
        raise ValueError("atoms need a 'layer' array; use mlepi_core.structures.assign_layers")
    unknown = set(cutoffs) - set(RELATIONS) - {"all"}
    if unknown:
        raise ValueError(f"unknown relation(s) {sorted(unknown)}; use {RELATIONS} or 'all'")
    layer = np.asarray(atoms.arrays["layer"], dtype=np.int64)
    i, j, s, d = neighbour_pairs(atoms, max(cutoffs.values()))
    same = layer[i] == layer[j]
    edges = {}
    for rel, rc in cutoffs.items():
        keep = d < rc
        if rel == "intra":
            keep &= same
        elif rel == "inter":
            keep &= ~same
        edges[rel] = Edges(torch.from_numpy(np.stack([i[keep], j[keep]])),
                           torch.from_numpy(s[keep]))
    n = len(atoms)
    return HeteroGraph(
        positions=torch.as_tensor(atoms.positions, dtype=dtype),
        numbers=torch.as_tensor(atoms.numbers, dtype=torch.long),
        layer=torch.from_numpy(layer),
        batch=torch.zeros(n, dtype=torch.long),
        cell=torch.as_tensor(np.asarray(atoms.cell), dtype=dtype)[None],
        edges=edges,
        cutoffs=dict(cutoffs),
    )


def batch_graphs(graphs: Sequence[HeteroGraph]) -> HeteroGraph:
    """Concatenate graphs into one disconnected batch (atom indices offset)."""
    if not graphs:
        raise ValueError("cannot batch zero graphs")
    relations = list(graphs[0].edges)
    counts = torch.tensor([g.n_atoms for g in graphs])
    atom_offset = torch.cumsum(counts, 0) - counts
    struct_counts = torch.tensor([g.n_structures for g in graphs])
    struct_offset = torch.cumsum(struct_counts, 0) - struct_counts
    edges = {
        rel: Edges(torch.cat([g.edges[rel].index + atom_offset[k] for k, g in enumerate(graphs)], 1),
                   torch.cat([g.edges[rel].shift for g in graphs], 0))
        for rel in relations
    }
    return HeteroGraph(
        positions=torch.cat([g.positions for g in graphs]),
        numbers=torch.cat([g.numbers for g in graphs]),
        layer=torch.cat([g.layer for g in graphs]),
        batch=torch.cat([g.batch + struct_offset[k] for k, g in enumerate(graphs)]),
        cell=torch.cat([g.cell for g in graphs]),
        edges=edges,
        cutoffs=dict(graphs[0].cutoffs),
    )


def build_batch(structures: Sequence[Atoms], cutoffs: Mapping[str, float] = DEFAULT_CUTOFFS,
                dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> HeteroGraph:
    """Graphs of many structures batched into one, on ``device``."""
    return batch_graphs([build_graph(a, cutoffs, dtype) for a in structures]).to(device)


def model_graph(atoms: Atoms, cutoffs: Mapping[str, float], elements, dtype: torch.dtype) -> HeteroGraph:
    """Graph of a structure for a model: validated (elements, vacuum, overlaps), layers
    assigned if the structure has none, edges within the model's cutoffs."""
    from .structures import assign_layers, validate

    validate(atoms, elements=set(elements))
    if "layer" not in atoms.arrays:
        atoms = assign_layers(atoms.copy())
    return build_graph(atoms, cutoffs, dtype=dtype)


def in_plane_tiles(graph: HeteroGraph, per_side: int) -> list[torch.Tensor]:
    """Atom indices of one structure in ``per_side`` x ``per_side`` tiles of its cell
    (fractional in-plane coordinates, wrapped into [0, 1)); empty tiles are left out."""
    if graph.n_structures != 1:
        raise ValueError("tiles are of one structure's graph")
    cell = graph.cell[0].to(torch.float64)
    frac = torch.linalg.solve(cell.T, graph.positions.to(torch.float64).T).T[:, :2] % 1.0
    cell_of = (frac * per_side).floor().clamp_(0, per_side - 1).long()
    key = cell_of[:, 0] * per_side + cell_of[:, 1]
    return [idx for idx in (torch.nonzero(key == k).flatten() for k in range(per_side ** 2)) if len(idx)]


def receptive_subgraph(graph: HeteroGraph, centers: torch.Tensor, hops: int
                       ) -> tuple[HeteroGraph, torch.Tensor, torch.Tensor]:
    """The part of a periodic graph that the centre atoms' outputs after ``hops`` rounds of
    message passing depend on: the atoms within ``hops`` edges of a centre and every edge
    among them. Returns (subgraph, its atoms' indices in ``graph``, mask of the centres).

    Exact for a local model: features of atoms ``hops`` edges out enter the centres only
    at layer 0 (species), so their own missing edges change nothing the centres see. Atoms
    keep one copy each: the edges' integer shifts place every periodic image, and an atom's
    features are the same in every image.
    """
    keep = torch.zeros(graph.n_atoms, dtype=torch.bool, device=graph.positions.device)
    keep[centers] = True
    for _ in range(hops):
        grown = keep.clone()
        for e in graph.edges.values():
            touch = keep[e.index[0]] | keep[e.index[1]]
            grown[e.index[0][touch]] = True
            grown[e.index[1][touch]] = True
        keep = grown
    nodes = torch.nonzero(keep).flatten()
    new_index = torch.full((graph.n_atoms,), -1, dtype=torch.long, device=nodes.device)
    new_index[nodes] = torch.arange(len(nodes), device=nodes.device)
    edges = {}
    for rel, e in graph.edges.items():
        inside = keep[e.index[0]] & keep[e.index[1]]
        edges[rel] = Edges(new_index[e.index[:, inside]], e.shift[inside])
    is_centre = torch.zeros(len(nodes), dtype=torch.bool, device=nodes.device)
    is_centre[new_index[centers]] = True
    sub = HeteroGraph(positions=graph.positions[nodes], numbers=graph.numbers[nodes], layer=graph.layer[nodes],
                      batch=torch.zeros(len(nodes), dtype=graph.batch.dtype, device=nodes.device),
                      cell=graph.cell, edges=edges, cutoffs=dict(graph.cutoffs))
    return sub, nodes, is_centre


def default_batch_atoms(device) -> int:
    """Atoms per model evaluation: 512 on a CPU (about 1.5 GB peak with force gradients,
    measured; larger batches are no faster there), 4096 on a GPU."""
    return 4096 if torch.device(device).type == "cuda" else 512


def atom_budget_chunks(graphs: Sequence[HeteroGraph], max_atoms: int):
    """(start, stop) ranges of consecutive graphs holding at most ``max_atoms`` atoms
    (at least one graph each), so a large batch of structures fits in memory."""
    start = 0
    while start < len(graphs):
        stop, n = start, 0
        while stop < len(graphs) and (stop == start or n + graphs[stop].n_atoms <= max_atoms):
            n += graphs[stop].n_atoms
            stop += 1
        yield start, stop
        start = stop
