"""A trained HedgeNet-Electron behind the Hamiltonian-model seam: batched graphs in, ``Blocks`` out."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from ase import Atoms

from ..graph import HeteroGraph, atom_budget_chunks, batch_graphs
from ..seams import Blocks
from .deployed import DeployedNetwork
from .electron import ONSITE, HedgeNetElectron, reverse_edge_index


def blocks_from_output(graph: HeteroGraph, out: Mapping[str, Mapping[str, torch.Tensor]],
                       relations: Sequence[str], s_out: Mapping[str, torch.Tensor] | None = None,
                       meta: Mapping | None = None) -> list[Blocks]:
    """Split a batched prediction into one ``Blocks`` per structure, pairs sorted by (i, j, R).

    ``out`` holds "h" and "s" (or pass ``s_out`` for the overlap of a second model on the
    same graph): pairs are the on-site blocks and the edges of every relation.
    """
    h_out = out["h"]
    s_out = out["s"] if s_out is None else s_out
    n = graph.n_atoms
    i = [torch.arange(n, device=graph.positions.device)]
    j = [i[0]]
    shift = [torch.zeros(n, 3, dtype=torch.long, device=graph.positions.device)]
    for rel in relations:
        i.append(graph.edges[rel].index[0])
        j.append(graph.edges[rel].index[1])
        shift.append(graph.edges[rel].shift)
    keys = [ONSITE, *relations]
    i, j, shift = (torch.cat(v).cpu().numpy() for v in (i, j, shift))
    h = torch.cat([h_out[k] for k in keys]).detach().cpu().to(torch.float64).numpy()
    s = torch.cat([s_out[k] for k in keys]).detach().cpu().to(torch.float64).numpy()
    batch = graph.batch.cpu().numpy()
    struct = batch[i]
    order = np.lexsort((shift[:, 2], shift[:, 1], shift[:, 0], j, i, struct))
    i, j, shift, h, s, struct = i[order], j[order], shift[order], h[order], s[order], struct[order]
    atom_counts = np.bincount(batch, minlength=graph.n_structures)
    atom_start = np.concatenate([[0], np.cumsum(atom_counts)[:-1]])
    pair_counts = np.bincount(struct, minlength=graph.n_structures)
    bounds = np.concatenate([[0], np.cumsum(pair_counts)])
    result = []
    for b in range(graph.n_structures):
        sl = slice(bounds[b], bounds[b + 1])
        result.append(Blocks(i=i[sl] - atom_start[b], j=j[sl] - atom_start[b], R=shift[sl].copy(),
                             h=h[sl], s=s[sl], norb=np.full(atom_counts[b], h.shape[-1], dtype=np.int64),
                             meta=dict(meta or {})))
    return result


class MLHamiltonianModel(DeployedNetwork):
    """A trained HedgeNet-Electron behind the HamiltonianModel seam (mlepi_core.seams).

    ``blocks(structures)`` validates each structure (known elements, vacuum, no
    overlaps), builds its graph with the model's cutoffs (layers from
    ``arrays["layer"]`` or detected from z) and evaluates batches of at most
    ``max_batch_atoms`` atoms (default: ``graph.default_batch_atoms``) on a GPU, one
    structure at a time on a CPU, in ``dtype``. Pairs: every on-site block and every graph edge within the cutoffs (both
    relations). ``s_network`` supplies S
    when ``network`` predicts H only.
    """

    def __init__(self, network: HedgeNetElectron, s_network: HedgeNetElectron | None = None,
                 metadata: Mapping | None = None, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float64, max_batch_atoms: int | None = None):
        if "h" not in network.targets:
            raise ValueError("network must predict H (targets include 'h')")
        if "s" not in network.targets and s_network is None:
            raise ValueError("network predicts no S: pass s_network")
        super().__init__(network, metadata, device, dtype, max_batch_atoms)
        self.s_network = None
        if s_network is not None:
            if dict(s_network.cutoffs) != dict(network.cutoffs) or "s" not in s_network.targets:
                raise ValueError("s_network must predict S with the same cutoffs as network")
            self.s_network = s_network.to(device=self.device, dtype=dtype).eval()
            self.elements &= frozenset(s_network.elements)

    @torch.no_grad()
    def blocks(self, structures: Sequence[Atoms]) -> list[Blocks]:
        """H (eV) and S blocks of every structure, pairs within the cutoffs, tblite order."""
        graphs = [self._graph(a) for a in structures]  # validate everything before computing
        meta = {"source": "HedgeNet-Electron", "r_c_A": max(self.cutoffs.values()), "units": "H: eV",
                **{k: v for k, v in self.metadata.items() if isinstance(v, (str, int, float))}}
        result = []
        # On a CPU every structure is its own batch: batching hardly gains there (a 6x6 AB cell
        # already fills the cores) and it keeps a structure's blocks independent of its
        # batch-mates bit for bit (float32 GEMMs round by shape), so a Dask worker's batch and
        # the local run's agree exactly (tests/test_distributed.py).
        chunks = (atom_budget_chunks(graphs, self.max_batch_atoms) if self.device.type != "cpu"
                  else ((k, k + 1) for k in range(len(graphs))))
        for start, stop in chunks:
            batch = batch_graphs(graphs[start:stop]).to(self.device, self.dtype)
            reverse = {rel: reverse_edge_index(batch.edges[rel], batch.n_atoms)
                       for rel in self.network.relations}
            out = self.network(batch, reverse)
            s_out = self.s_network(batch, reverse)["s"] if self.s_network is not None else None
            result.extend(blocks_from_output(batch, out, self.network.relations, s_out, meta))
        per_atom = (self.metadata.get("training_data") or {}).get("valence_electrons_per_atom")
        if per_atom is not None:  # a basis that is not the elements' valence shell (the p_z model)
            for b, atoms in zip(result, structures):
                b.meta = {**b.meta, "valence_electrons": int(round(per_atom * len(atoms)))}
        return result
