"""HedgeNet-Electron: a heterogeneous E(3)-equivariant network for H_ij(R) and S_ij(R) (docs/physics.md#hedgenet-electron).

DeepH-E3 (Gong et al., Nat. Commun. 14, 2848 (2023)) on the heterogeneous graph of
``mlepi_core.graph``. Atoms carry equivariant node features x_i (they give the
on-site blocks H_ii), graph edges i -> j (atom j in the cell shifted by R) carry
equivariant edge features e_ij (they give the hopping blocks H_ij(R)). Every layer
t holds one interaction sub-network f_r^t per relation r (``intra``, ``inter``, or
the single ``all`` of the homogeneous baseline) in an ``nn.ModuleDict``; f_r sees
only the edges of r, with its own cutoff and weights, and the node updates of the
relations are summed (Eq. 4 of the MLEPI paper, as in HedgeNet-Phonon):

    z_ij   = A_r x_i + B_r x_j + E_r e_ij
    m_ij   = sum_paths w_r(|r_ij|)_{path,c} [z_ij,c (x) Y(r_ij)]_path     (channel-wise)
    x_i'   = Norm( x_i + Gate( S x_i + sum_r L_r sum_{j in N_r(i)} m_ji / n_r ) )
    e_ij'  = Norm( e_ij + Gate( M_r sum_paths m_ij + P_r x_i' + Q_r x_j' ) )

with Y real spherical harmonics, w_r a radial MLP on a Bessel basis times a smooth
envelope (so node features vary smoothly as neighbours cross the cutoff), n_r the
average neighbour count, and an equivariant layer norm as in DeepH-E3. Initial
edge features are an MLP of a Gaussian basis of |r_ij| (no envelope: a hopping
at 5.9 A still knows its length).

Output. Linear heads (one per target, per relation and for on-site blocks) map the
last features to the irreps of an orbital block: for s,p shells s (x) s = 0e,
s (x) p = 1o, p (x) s = 1o, p (x) p = 0e + 1e + 2e (16 numbers for a 4 x 4
block). ``BlockMap`` (``electron_targets``) turns them into the block with Wigner-3j coefficients,

    H_{m1 m2} = sum_{L, M} sqrt(2L + 1) C^{l1 l2 L}_{m1 m2 M} y_{L M},

an orthogonal map (so it is also the inverse, used for statistics), in e3nn's
basis (p = x, y, z with D(R) = R) and then permuted to tblite's orbital order
s, p_y, p_z, p_x (``P_TO_E3NN``; no sign change, checked on C2 dimers in
tests/test_tblite_reference.py). A block therefore transforms as
H -> D(R) H D(R)^T, D = blockdiag(1, R in tblite's p order).

Hermiticity by construction: the raw block of edge k = (i, j, R) and that of its
reverse edge k' = (j, i, -R) are combined as H_k = (raw_k + raw_k'^T) / 2, so
H_ji(-R) = H_ij(R)^T holds bit for bit; on-site blocks are (raw + raw^T) / 2.

Orbitals in a local frame (``orbital_frame="local_normal"``). The Slater-Koster data
set's one orbital per atom is p_z along the atom's local layer normal n_i (the basis is
defined by the geometry, as DeepH's local-coordinate bases are). Its blocks are then
predicted as p blocks P_ij (0e + 1e + 2e, 3 x 3, equivariant like any p (x) p block) and
projected onto the two atoms' normals, H_ij = n_i^T P_ij n_j: the orientation of the
orbital is an input, the network learns how p orbitals couple. n_i follows the data's own
convention (``local_normals``: the plane through atom i fitted to its in-layer neighbours
within ``frame_cut``, oriented along +z), which is what makes the projected block the
data's matrix element; H_ij stays rotation-invariant because the normals rotate with
the structure.

Two-centre term (``two_centre``). Optionally every hopping gets a learnt Slater-Koster
two-centre part, a radial function of |r_ij| times Y_l(r_ij / |r_ij|) for each irrep copy
of natural parity (``TwoCentre``), added to the head's output before the normalisation's
scale: the exact form of a two-centre model such as the Slater-Koster reference, so the
message-passing layers learn only the environment's correction to it.

Normalisation: per target, the on-site scalars (0e) are shifted by their
per-element training mean and every irrep copy is scaled by its training RMS (per
relation for hoppings); the buffers live in the model, so outputs are in eV (H) and
dimensionless (S). Units: Angstrom, eV.

Layout. Features are (rows, channels) tensors, one matrix product per irrep type per
linear map; the layers on that layout are in ``electron_layers``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch
from ase.data import atomic_numbers, chemical_symbols
from e3nn import o3
from torch import nn

from ..graph import Edges, HeteroGraph
from ..reference.tblite_electrons import P_TO_E3NN
from .blocks import species_index
from .electron_layers import SCALAR, ChannelLinear, EdgeEmbedding, HedgeElectronLayer, TwoCentre
from .electron_targets import BlockMap, TargetNormaliser
from .settings import Settings

TARGETS = ("h", "s")  # Hamiltonian (eV) and overlap (dimensionless)
ONSITE = "onsite"  # key of the on-site blocks beside the relation names


# --- configuration ----------------------------------------------------------------------

@dataclass(frozen=True)
class HedgeNetElectronConfig(Settings):
    """Architecture of HedgeNet-Electron; everything needed to rebuild it (units: A, eV).

    ``cutoffs`` maps each relation to its cutoff in Angstrom, which is also the range of
    the predicted pair blocks ({"intra": 6, "inter": 6} for HedgeNet, {"all": 6} for the
    homogeneous baseline; labels exist within 6 A, docs/physics.md#electrons-gfn1-xtb-through-tblite). ``shells``
    lists the l of each orbital shell, the same for every element ((0, 1): s, p; l <= 1).
    ``hidden_irreps`` has one multiplicity (the channel count) and must hold every irrep
    of the output blocks (0e, 1o, 1e, 2e for s, p). ``targets`` picks the heads: ("h", "s")
    shares one trunk, ("s",) or ("h",) builds a single-target model.
    ``avg_num_neighbors`` (edges per atom of each relation) is a training-set statistic.
    ``radial_scale_bins`` > 0 scales each hopping's irreps by their training RMS at the
    edge's length (that many bins over [0, cutoff], log-linear in between) instead of one
    RMS per relation: hoppings fall off exponentially, and the network then predicts
    O(1) numbers at every distance (0, the default: one scale per relation).
    ``edge_invariants`` feeds each edge update the rotation-invariant bilinears of its two
    atoms' features (``EdgeInvariants``), which the linear messages cannot form.
    ``orbital_frame`` "local_normal" (one l = 0 shell, the p_z-along-the-normal orbital of
    the Slater-Koster data) predicts p blocks and projects them onto the atoms' local
    normals, fitted to in-layer neighbours within ``frame_cut`` A (module docstring);
    "global" (the default) predicts the blocks of ``shells`` directly.
    ``two_centre`` > 0 adds to every hopping a Slater-Koster two-centre term (``TwoCentre``:
    per irrep copy a radial function, linear in that many Gaussians over [0, cutoff], times
    Y_l of the bond direction), fitted by least squares before training and then kept
    (``fit_two_centre``), so the layers only learn the environment's correction to it.
    """

    elements: tuple[str, ...] = ("C",)
    shells: tuple[int, ...] = (0, 1)
    cutoffs: Mapping[str, float] = field(default_factory=lambda: {"intra": 6.0, "inter": 6.0})
    hidden_irreps: str = "16x0e+16x1o+16x1e+16x2e"
    num_layers: int = 3
    sh_lmax: int = 2
    num_bessel: int = 8
    envelope_p: int = 5
    num_gaussians: int = 16
    radial_hidden: tuple[int, ...] = (32,)
    layer_norm: bool = True
    targets: tuple[str, ...] = TARGETS
    avg_num_neighbors: Mapping[str, float] | None = None
    radial_scale_bins: int = 0
    edge_invariants: bool = False
    orbital_frame: str = "global"
    frame_cut: float = 1.8
    two_centre: int = 0

    SEQUENCES = ("elements", "shells", "radial_hidden", "targets")
    MAPPINGS = ("cutoffs", "avg_num_neighbors")


# --- the network ----------------------------------------------------------------------------

def reverse_edge_index(edges: Edges, n_atoms: int) -> torch.Tensor:
    """For each edge k = (i, j, R), the index k' of the edge (j, i, -R) of the same relation.

    Vectorised: edges are keyed by one int64 code and matched by a sorted search. A
    periodic full neighbour list is symmetric, so a missing reverse edge is an error.
    """
    i, j = edges.index
    shift = edges.shift
    if len(edges) == 0:
        return torch.zeros(0, dtype=torch.long, device=i.device)
    half = int(shift.abs().max())
    span = 2 * half + 1

    def code(a, b, s):
        s = s + half
        return (((a * n_atoms + b) * span + s[:, 0]) * span + s[:, 1]) * span + s[:, 2]

    forward, backward = code(i, j, shift), code(j, i, -shift)
    order = torch.argsort(forward)
    sorted_codes = forward[order]
    pos = torch.searchsorted(sorted_codes, backward).clamp_(max=len(order) - 1)
    if not bool((sorted_codes[pos] == backward).all()):
        raise ValueError("the graph is not symmetric: some edge (i, j, R) has no (j, i, -R); "
                         "build it with mlepi_core.graph (full periodic neighbour list)")
    return order[pos]


ORBITAL_FRAMES = ("global", "local_normal")


@torch.no_grad()
def local_normals(graph: HeteroGraph, relations: Sequence[str], cut: float) -> torch.Tensor:
    """(N, 3) unit layer normals, in e3nn's (x, y, z) order: per atom, the normal of the plane
    through it that best fits its in-layer neighbours within ``cut`` A (the eigenvector of
    sum_j v_ij v_ij^T with the smallest eigenvalue), oriented along +z; an atom with fewer
    than two such neighbours gets z. The pairs come from the edges of ``relations``, which
    must hold every in-layer pair within ``cut`` once ({intra, inter} or {all}).
    The convention of ``reference.slater_koster.local_normals``, in torch."""
    n = graph.n_atoms
    cov = graph.positions.new_zeros(n, 3, 3)
    count = torch.zeros(n, dtype=torch.long, device=graph.positions.device)
    for rel in relations:
        i, j = graph.edges[rel].index
        v = graph.edge_vectors(rel)
        near = (graph.layer[i] == graph.layer[j]) & (v.norm(dim=-1) < cut)
        i, v = i[near], v[near]
        cov.index_add_(0, i, v[:, :, None] * v[:, None, :])
        count.index_add_(0, i, torch.ones_like(i))
    _, vecs = torch.linalg.eigh(cov)
    normals = vecs[:, :, 0]
    normals = normals * torch.where(normals[:, 2:] < 0, -1.0, 1.0).to(normals.dtype)
    z = torch.tensor([0.0, 0.0, 1.0], dtype=normals.dtype, device=normals.device)
    return torch.where((count < 2)[:, None], z, normals)


class HedgeNetElectron(nn.Module):
    """H_ij(R) (eV) and S_ij(R) blocks of a batched ``HeteroGraph``; see the module docstring."""

    def __init__(self, config: HedgeNetElectronConfig):
        super().__init__()
        cfg = self.config = config
        if not cfg.cutoffs:
            raise ValueError("the model needs at least one relation with a cutoff")
        bad = set(cfg.targets) - set(TARGETS)
        if bad or not cfg.targets:
            raise ValueError(f"targets must be a non-empty subset of {TARGETS}, got {cfg.targets}")
        self.relations = list(cfg.cutoffs)
        self.cutoffs = {rel: float(rc) for rel, rc in cfg.cutoffs.items()}
        self.targets = tuple(cfg.targets)
        hidden_irreps = o3.Irreps(cfg.hidden_irreps)
        muls = {mul for mul, _ in hidden_irreps}
        types = [ir for _, ir in hidden_irreps]
        if len(muls) != 1 or len(set(types)) != len(types) or types != sorted(types) or types[0] != SCALAR:
            raise ValueError("hidden_irreps must list each irrep type once, sorted, 0e first, with one "
                             f"multiplicity (the channel count), e.g. '16x0e+16x1o+16x1e+16x2e'; got "
                             f"{cfg.hidden_irreps!r}")
        self.channels = C = muls.pop()
        self.hidden_irreps = hidden_irreps
        hidden = [(ir, 1) for ir in types]
        self.block_map = BlockMap(cfg.shells)
        if cfg.orbital_frame not in ORBITAL_FRAMES:
            raise ValueError(f"orbital_frame must be one of {ORBITAL_FRAMES}, got {cfg.orbital_frame!r}")
        self.frame_map = None  # local frame: p blocks P_ij, projected onto the normals
        if cfg.orbital_frame == "local_normal":
            if tuple(cfg.shells) != (0,):
                raise ValueError(f"orbital_frame 'local_normal' is for one orbital per atom (shells [0]), "
                                 f"got shells {list(cfg.shells)}")
            self.frame_map = BlockMap((1,))
            # tblite's p order (y, z, x) of the frame blocks, from e3nn's (x, y, z) normals
            self.register_buffer("frame_order", torch.as_tensor(np.argsort(P_TO_E3NN)), persistent=False)
        head_map = self.frame_map if self.frame_map is not None else self.block_map
        missing = {ir for ir, _ in head_map.segments} - set(types)
        if missing:
            raise ValueError(f"hidden_irreps {hidden_irreps} lack {sorted(map(str, missing))}, which the "
                             f"orbital blocks of shells {cfg.shells} need")
        n_el = len(cfg.elements)
        z_to_index = torch.full((len(chemical_symbols),), -1, dtype=torch.long)
        for k, sym in enumerate(cfg.elements):
            z_to_index[atomic_numbers[sym]] = k
        self.register_buffer("z_to_index", z_to_index, persistent=False)
        self.node_embedding = nn.Parameter(torch.randn(n_el, C))
        self.edge_embedding = nn.ModuleDict({
            rel: EdgeEmbedding(rc, cfg.num_gaussians, C) for rel, rc in self.cutoffs.items()})
        sh_irreps = o3.Irreps.spherical_harmonics(cfg.sh_lmax)
        self.sh = o3.SphericalHarmonics(sh_irreps, normalize=True, normalization="component")
        layers, in_segments = [], [(SCALAR, 1)]
        for _ in range(cfg.num_layers):
            layers.append(HedgeElectronLayer(self.relations, self.cutoffs, in_segments, hidden, C,
                                             sh_irreps, cfg))
            in_segments = hidden
        self.layers = nn.ModuleList(layers)
        out = head_map.segments
        self.heads = nn.ModuleDict({
            t: nn.ModuleDict({ONSITE: ChannelLinear(in_segments, out, C, 1),
                              **{rel: ChannelLinear(in_segments, out, C, 1) for rel in self.relations}})
            for t in self.targets})
        self.two_centre = None
        if cfg.two_centre:
            self.two_centre = nn.ModuleDict({
                t: nn.ModuleDict({rel: TwoCentre(out, rc, cfg.two_centre, cfg.sh_lmax,
                                                 n_pairs=len(cfg.elements) ** 2)
                                  for rel, rc in self.cutoffs.items()})
                for t in self.targets})
            with torch.no_grad():  # the layers start from nothing: the two-centre fit is the whole start
                for heads in self.heads.values():
                    for rel in self.relations:
                        for w in heads[rel].weights.values():
                            w.zero_()
        self.normalisers = nn.ModuleDict({
            t: TargetNormaliser(self.block_map.dim, n_el, len(self.relations), cfg.radial_scale_bins,
                                [self.cutoffs[rel] for rel in self.relations])
            for t in self.targets})

    @property
    def elements(self) -> tuple[str, ...]:
        return tuple(self.config.elements)

    @property
    def n_orbitals(self) -> int:
        return self.block_map.n_orbitals

    def species(self, numbers: torch.Tensor) -> torch.Tensor:
        """Element index of each atom; StructureError for an element the model does not know."""
        return species_index(self.z_to_index, numbers, self.elements)

    def element_pairs(self, species: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """Index of each edge's ordered element pair, ``n_elements * element(i) + element(j)``."""
        return species[i] * len(self.elements) + species[j]

    def check_graph(self, graph: HeteroGraph) -> None:
        """The graph must carry every relation of the model, built with exactly its cutoff
        (the edges are the pairs whose blocks are predicted)."""
        for rel, rc in self.cutoffs.items():
            if rel not in graph.edges:
                raise ValueError(f"graph has no {rel!r} edges; build it with cutoffs {self.cutoffs}")
            if abs(graph.cutoffs.get(rel, -1.0) - rc) > 1e-9:
                raise ValueError(f"graph's {rel!r} cutoff {graph.cutoffs.get(rel)} A differs from "
                                 f"the model's {rc} A")

    def forward(self, graph: HeteroGraph,
                reverse: Mapping[str, torch.Tensor] | None = None) -> dict[str, dict[str, torch.Tensor]]:
        """{target: {"onsite": (N, n, n), relation: (E_r, n, n)}} in eV (H) / 1 (S), tblite order.

        Edge blocks follow ``graph.edges[relation]`` (row atom i = index[0], column atom j
        in the cell shifted by ``shift``). ``reverse`` (from ``reverse_edge_index``) may be
        passed to skip recomputing it.
        """
        self.check_graph(graph)
        dtype = self.block_map.matrix.dtype
        if graph.positions.dtype != dtype:
            graph = graph.to(dtype=dtype)
        species = self.species(graph.numbers)
        index = {rel: graph.edges[rel].index for rel in self.relations}
        if reverse is None:
            reverse = {rel: reverse_edge_index(graph.edges[rel], graph.n_atoms) for rel in self.relations}
        vectors = {rel: graph.edge_vectors(rel) for rel in self.relations}
        lengths = {rel: v.norm(dim=-1) for rel, v in vectors.items()}
        sh = {rel: self.sh(v) for rel, v in vectors.items()}
        x = self.node_embedding.index_select(0, species)[:, None, :]
        e = {rel: self.edge_embedding[rel](lengths[rel]) for rel in self.relations}
        for layer in self.layers:
            x, e = layer(x, e, sh, lengths, index)
        if self.frame_map is not None:
            n = local_normals(graph, self.relations, self.config.frame_cut)[:, self.frame_order]

            def rows(y, i, j):  # p block P_ij projected onto n_i, n_j: (B, 1)
                p = self.frame_map(y)
                return torch.einsum("ba,bac,bc->b", n[i], p, n[j])[:, None]
        else:
            def rows(y, i, j):
                return y
        atoms = torch.arange(graph.n_atoms, device=species.device)
        out = {}
        for t in self.targets:
            heads, norm = self.heads[t], self.normalisers[t]
            y = rows(heads[ONSITE](x)[:, :, 0], atoms, atoms) * norm.onsite_scale + norm.onsite_shift[species]
            raw = self.block_map(y)
            blocks = {ONSITE: 0.5 * (raw + raw.transpose(-1, -2))}
            for r, rel in enumerate(self.relations):
                i, j = index[rel]
                y = heads[rel](e[rel])[:, :, 0]
                if self.two_centre is not None:
                    y = y + self.two_centre[t][rel](lengths[rel], sh[rel], self.element_pairs(species, i, j))
                raw = self.block_map(rows(y, i, j) * norm.edge_scales(r, lengths[rel]))
                blocks[rel] = 0.5 * (raw + raw[reverse[rel]].transpose(-1, -2))
            out[t] = blocks
        return out
