"""HedgeNet-Phonon: a heterogeneous E(3)-equivariant MACE-style force field (docs/physics.md#hedgenet-phonon).

Every message-passing layer t holds one ``InteractionBlock`` per relation (``intra``,
``inter``) in an ``nn.ModuleDict`` keyed by relation name; each sees only its own
edges, with its own cutoff, and their A-bases are summed (Eq. 4 of the MLEPI paper):

    A_i^t = sum_r f_r^t(h^t, edges_r),   h_i^{t+1} = ProductBasis(A_i^t) + sc(h_i^t),

followed by a per-layer readout. The energy of a structure is

    E = sum_i [ E0(z_i) + s * sum_t readout_t(h_i^t) ] + E_pair   (eV)

with E0 per-element reference energies (least squares on the training set) and s an
energy scale (eV, the training RMS force times 1 A), and forces are F = -dE/dr by
autograd, exactly conservative. A relation named in ``pair_relations`` passes no messages:
its edges carry an explicit pair energy E_pair instead (``pair.PairEnergy``), so that each
interface of a stack has its own coupling. The homogeneous baseline is the same class with
the single relation ``all``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols
from e3nn import o3
from torch import nn

from ..graph import HeteroGraph, atom_budget_chunks, batch_graphs
from .blocks import (InteractionBlock, LinearReadout, NonLinearReadout, ProductBasisBlock,
                     species_index,
                     natural_irreps)
from .deployed import DeployedNetwork
from .pair import PairEnergy, normal_projectors
from .settings import Settings


@dataclass(frozen=True)
class HedgeNetPhononConfig(Settings):
    """Architecture of HedgeNet-Phonon; everything needed to rebuild it (units: A, eV).

    ``cutoffs`` maps each relation to its cutoff in Angstrom ({"intra": .., "inter": ..}
    for HedgeNet, {"all": ..} for the homogeneous baseline). ``hidden_irreps`` has one
    multiplicity (the channel count); the last layer keeps only its scalars, as in
    MACE. ``max_ell`` is the l_max of the spherical harmonics and of the A-basis.
    ``num_bessel`` is the radial resolution: one count for every relation, or a count per
    relation ({"intra": 8, "inter": 32}); the registry dependence of the interlayer energy
    varies over a tenth of an Angstrom of edge length and needs the finer basis
    (docs/physics.md#the-interlayer-interaction).
    ``pair_relations`` names relations whose edges carry an explicit pair energy instead of
    messages (``pair.PairEnergy``: ``pair_basis`` Gaussians of the distance from ``pair_r_min``
    to the relation's cutoff, each modulated by ``pair_registry`` functions of the transverse
    distance from the layer normals, which the in-layer neighbours within ``pair_normal_cut``
    define).
    ``avg_num_neighbors``, ``atomic_energies_ev`` and ``energy_scale_ev`` are data
    statistics, filled in from the training set before training.
    """

    elements: tuple[str, ...] = ("C",)
    cutoffs: Mapping[str, float] = field(default_factory=lambda: {"intra": 5.0, "inter": 6.0})
    hidden_irreps: str = "16x0e+16x1o"
    max_ell: int = 2
    num_layers: int = 2
    correlation: int = 3
    num_bessel: int | Mapping[str, int] = 8
    envelope_p: int = 5
    radial_hidden: tuple[int, ...] = (32, 32)
    readout_hidden: int = 16
    pair_relations: tuple[str, ...] = ()
    pair_basis: int = 32
    pair_r_min: float = 2.5
    pair_registry: int = 8
    pair_normal_cut: float = 2.0
    avg_num_neighbors: Mapping[str, float] | None = None
    atomic_energies_ev: Mapping[str, float] | None = None
    energy_scale_ev: float = 1.0

    SEQUENCES = ("elements", "radial_hidden", "pair_relations")
    MAPPINGS = ("cutoffs", "avg_num_neighbors", "atomic_energies_ev")

    def bessel_count(self, relation: str) -> int:
        """Number of Bessel functions of ``relation``'s radial basis."""
        if isinstance(self.num_bessel, Mapping):
            if relation not in self.num_bessel:
                raise ValueError(f"num_bessel has no count for relation {relation!r}: "
                                 f"{dict(self.num_bessel)}")
            n = self.num_bessel[relation]
        else:
            n = self.num_bessel
        if int(n) != n or n < 1:
            raise ValueError(f"num_bessel must be a positive integer, got {n!r} for {relation!r}")
        return int(n)


class HedgeLayer(nn.Module):
    """One message-passing layer: interactions per relation (summed), product basis, readout."""

    def __init__(self, relations: Sequence[str], cutoffs: Mapping[str, float], node_irreps: o3.Irreps,
                 a_irreps: o3.Irreps, out_irreps: o3.Irreps, cfg: HedgeNetPhononConfig, first: bool,
                 last: bool):
        super().__init__()
        avg = cfg.avg_num_neighbors or {}
        self.interactions = nn.ModuleDict({
            rel: InteractionBlock(node_irreps, a_irreps, cutoffs[rel], sh_lmax=cfg.max_ell,
                                  num_bessel=cfg.bessel_count(rel), envelope_p=cfg.envelope_p,
                                  radial_hidden=tuple(cfg.radial_hidden),
                                  avg_num_neighbors=float(avg.get(rel, 1.0)))
            for rel in relations})
        self.product = ProductBasisBlock(a_irreps, out_irreps, cfg.correlation, len(cfg.elements),
                                         node_irreps=node_irreps, use_sc=not first)
        self.readout = NonLinearReadout(out_irreps, cfg.readout_hidden) if last else LinearReadout(out_irreps)

    def forward(self, h, species, vectors: Mapping[str, torch.Tensor], graph: HeteroGraph):
        a = None
        for rel, block in self.interactions.items():
            a_r = block(h, vectors[rel], graph.edges[rel].index)
            a = a_r if a is None else a + a_r
        h = self.product(a, species, h)
        return h, self.readout(h)


class HedgeNetPhonon(nn.Module):
    """Energies (eV) and forces (eV/A) of a batched ``HeteroGraph``; see the module docstring."""

    def __init__(self, config: HedgeNetPhononConfig):
        super().__init__()
        self.config = config
        # Built in float64 so that the fixed coefficients (Clebsch-Gordan, Bessel
        # frequencies) are exact; cast the finished network with .to(dtype).
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            self._build(config)
        finally:
            torch.set_default_dtype(previous)

    def _build(self, cfg: HedgeNetPhononConfig) -> None:
        if not cfg.cutoffs:
            raise ValueError("the model needs at least one relation with a cutoff")
        self.relations = list(cfg.cutoffs)
        self.cutoffs = {rel: float(rc) for rel, rc in cfg.cutoffs.items()}
        unknown = set(cfg.pair_relations) - set(self.relations)
        if unknown:
            raise ValueError(f"pair_relations {sorted(unknown)} have no cutoff in {dict(cfg.cutoffs)}")
        self.message_relations = [rel for rel in self.relations if rel not in cfg.pair_relations]
        if not self.message_relations:
            raise ValueError("every relation is a pair term: at least one must pass messages")
        hidden = o3.Irreps(cfg.hidden_irreps)
        muls = {mul for mul, _ in hidden}
        if len(muls) != 1 or hidden[0].ir != o3.Irrep("0e"):
            raise ValueError(f"hidden_irreps needs one multiplicity and scalars first, got {hidden}")
        channels = muls.pop()
        a_irreps = natural_irreps(channels, cfg.max_ell)
        scalars = o3.Irreps(f"{channels}x0e")
        n_el = len(cfg.elements)
        z_to_index = torch.full((len(chemical_symbols),), -1, dtype=torch.long)
        for k, sym in enumerate(cfg.elements):
            z_to_index[atomic_numbers[sym]] = k
        self.register_buffer("z_to_index", z_to_index, persistent=False)
        e0 = cfg.atomic_energies_ev or {}
        self.register_buffer("atomic_energies",
                             torch.tensor([float(e0.get(s, 0.0)) for s in cfg.elements]))
        self.energy_scale = float(cfg.energy_scale_ev)
        self.embedding = o3.Linear(o3.Irreps(f"{n_el}x0e"), scalars)
        layers, node_irreps = [], scalars
        for t in range(cfg.num_layers):
            last = t == cfg.num_layers - 1
            out_irreps = scalars if last else hidden
            layers.append(HedgeLayer(self.message_relations, self.cutoffs, node_irreps, a_irreps,
                                     out_irreps, cfg, first=t == 0, last=last))
            node_irreps = out_irreps
        self.layers = nn.ModuleList(layers)
        self.pair_terms = nn.ModuleDict({
            rel: PairEnergy(n_el, self.cutoffs[rel], cfg.pair_basis, cfg.pair_r_min, cfg.envelope_p,
                            cfg.pair_registry)
            for rel in cfg.pair_relations})

    @property
    def elements(self) -> tuple[str, ...]:
        return tuple(self.config.elements)

    LEARNED_BUFFERS = ("atomic_energies",)

    def learned_state_dict(self) -> dict[str, torch.Tensor]:
        """Parameters and fitted buffers only: what a saved model needs (the fixed coefficients
        are rebuilt exactly from the architecture)."""
        keep = {n for n, _ in self.named_parameters()} | set(self.LEARNED_BUFFERS)
        return {k: v for k, v in self.state_dict().items() if k in keep}

    def load_learned_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Inverse of ``learned_state_dict``; raises RuntimeError on missing or extra entries."""
        expected = set(self.learned_state_dict())
        missing, extra = expected - set(state), set(state) - expected
        if missing or extra:
            raise RuntimeError(f"state does not fit: missing {sorted(missing)[:5]}, "
                               f"unexpected {sorted(extra)[:5]}")
        result = self.load_state_dict(dict(state), strict=False)
        if result.unexpected_keys:
            raise RuntimeError(f"unexpected entries {result.unexpected_keys[:5]}")

    def species(self, numbers: torch.Tensor) -> torch.Tensor:
        """Element index of each atom; StructureError for an element the model does not know."""
        return species_index(self.z_to_index, numbers, self.elements)

    def check_graph(self, graph: HeteroGraph) -> None:
        """The graph must carry every relation of the model, built with at least its cutoff."""
        for rel, rc in self.cutoffs.items():
            if rel not in graph.edges:
                raise ValueError(f"graph has no {rel!r} edges; build it with cutoffs {self.cutoffs}")
            if graph.cutoffs.get(rel, 0.0) < rc - 1e-9:
                raise ValueError(f"graph's {rel!r} cutoff {graph.cutoffs.get(rel)} A is below the "
                                 f"model's {rc} A")

    @property
    def receptive_hops(self) -> int:
        """Edges between an atom and the farthest atom its energy depends on: one per message-
        passing layer; a pair term with normals reaches its partner's in-layer neighbours (2)."""
        normals = any(term.uses_normals for term in self.pair_terms.values())
        return max(self.config.num_layers, 2 if normals else 1)

    def normal_projectors(self, graph: HeteroGraph, vectors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(N, 3, 3) layer-normal projectors of the pair terms, from the in-layer edges of the
        message relations (``pair.normal_projectors``)."""
        index = torch.cat([graph.edges[rel].index for rel in self.message_relations], 1)
        v = torch.cat([vectors[rel] for rel in self.message_relations], 0)
        return normal_projectors(graph.n_atoms, v, index, graph.layer[index[0]] == graph.layer[index[1]],
                                 self.config.pair_normal_cut)

    def forward(self, graph: HeteroGraph, compute_forces: bool = True,
                training: bool = False) -> dict[str, torch.Tensor]:
        """{"energy": (B,) eV, "forces": (N, 3) eV/A, "node_energy": (N,) eV}.

        ``training`` keeps the graph of the force computation for a loss on forces.
        """
        self.check_graph(graph)
        species = self.species(graph.numbers)
        positions = graph.positions
        if compute_forces:
            positions = positions.detach().requires_grad_(True)
        with torch.set_grad_enabled(compute_forces or torch.is_grad_enabled()):
            vectors = {rel: graph.edge_vectors(rel, positions) for rel in self.relations}
            one_hot = nn.functional.one_hot(species, len(self.elements)).to(positions.dtype)
            h = self.embedding(one_hot)
            node_energy = self.atomic_energies[species]
            interaction = torch.zeros_like(node_energy)
            for layer in self.layers:
                h, e_t = layer(h, species, vectors, graph)
                interaction = interaction + e_t
            node_energy = node_energy + self.energy_scale * interaction
            normals = any(term.uses_normals for term in self.pair_terms.values())
            projectors = self.normal_projectors(graph, vectors) if normals else None
            for rel, term in self.pair_terms.items():
                node_energy = node_energy + term(species, vectors[rel], graph.edges[rel].index, projectors)
            energy = node_energy.new_zeros(graph.n_structures).index_add(0, graph.batch, node_energy)
            out = {"energy": energy, "node_energy": node_energy}
            if compute_forces:
                (grad,) = torch.autograd.grad(energy.sum(), positions, create_graph=training)
                out["forces"] = -grad
        return out


class MLForceModel(DeployedNetwork):
    """A trained HedgeNet-Phonon behind the ForceModel seam (mlepi_core.seams).

    ``energies_forces(structures)`` validates each structure (elements the model knows,
    vacuum, no overlaps), builds its heterogeneous graph with the model's cutoffs
    (layers from ``arrays["layer"]`` or detected from z) and evaluates batches of at
    most ``max_batch_atoms`` atoms (default: ``graph.default_batch_atoms``) on
    ``device`` in ``dtype``.
    """

    def __init__(self, network: HedgeNetPhonon, metadata: Mapping | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float64,
                 max_batch_atoms: int | None = None):
        super().__init__(network, metadata, device, dtype, max_batch_atoms)

    def energies_forces(self, structures: Sequence[Atoms]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Energies (eV, shape (B,)) and forces (eV/A, one (N_b, 3) array each). Structures
        of more than 4 ``max_batch_atoms`` atoms are evaluated in tiles (``_tiled``)."""
        graphs = [self._graph(a) for a in structures]  # validate everything before computing
        energies, forces = [None] * len(graphs), [None] * len(graphs)
        small = [k for k, g in enumerate(graphs) if g.n_atoms <= 4 * self.max_batch_atoms]
        for start, stop in atom_budget_chunks([graphs[k] for k in small], self.max_batch_atoms):
            ks = small[start:stop]
            batch = batch_graphs([graphs[k] for k in ks]).to(self.device, self.dtype)
            out = self.network(batch, compute_forces=True)
            e = out["energy"].detach().cpu().numpy().astype(np.float64)
            f = out["forces"].detach().cpu().numpy().astype(np.float64)
            for k, e_k, f_k in zip(ks, e, np.split(f, np.cumsum([graphs[k].n_atoms for k in ks])[:-1])):
                energies[k], forces[k] = e_k, f_k
        for k, g in enumerate(graphs):
            if energies[k] is None:
                energies[k], forces[k] = self._tiled(g)
        return np.array(energies, dtype=np.float64), forces

    def _tiled(self, graph: HeteroGraph, per_side: int | None = None) -> tuple[float, np.ndarray]:
        """Energy and forces of one large structure, tile by tile, in bounded memory: each
        tile's atomic energies from its receptive subgraph (``graph.receptive_subgraph``,
        ``receptive_hops`` edges deep), their gradient scattered back onto every atom it moved.
        Exact: the sum over tiles is the whole structure's energy and its gradient. The
        tiles hold at most about 4 ``max_batch_atoms`` centre atoms each (the 11,164-atom
        twisted bilayer: 3 x 3 tiles on a CPU, ~3,100 atoms per subgraph with its halo)."""
        from ..graph import in_plane_tiles, receptive_subgraph

        if per_side is None:
            per_side = max(1, int(np.ceil(np.sqrt(graph.n_atoms / (4 * self.max_batch_atoms)))))
        energy = 0.0
        forces = torch.zeros(graph.n_atoms, 3, dtype=torch.float64)
        for centres in in_plane_tiles(graph, per_side):
            sub, nodes, is_centre = receptive_subgraph(graph, centres, self.network.receptive_hops)
            sub = sub.to(self.device, self.dtype)
            positions = sub.positions.detach().requires_grad_(True)
            with torch.enable_grad():
                node_energy = self.network(replace(sub, positions=positions), compute_forces=False)["node_energy"]
                e_tile = node_energy[is_centre.to(self.device)].sum()
                (grad,) = torch.autograd.grad(e_tile, positions)
            energy += float(e_tile.detach())
            forces.index_add_(0, nodes, -grad.detach().cpu().to(torch.float64))
        return energy, forces.numpy()
