"""HedgeNet-Electron: a heterogeneous E(3)-equivariant network for H_ij(R) and S_ij(R) (DESIGN.md section 7).

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
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols
from e3nn import o3
from torch import nn

from ..graph import Edges, HeteroGraph, atom_budget_chunks, batch_graphs
from ..reference.tblite_electrons import P_TO_E3NN
from ..seams import Blocks
from .blocks import species_index
from .deployed import DeployedNetwork
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
    homogeneous baseline; labels exist within 6 A, DESIGN.md section 4). ``shells``
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
                t: nn.ModuleDict({rel: TwoCentre(out, rc, cfg.two_centre, cfg.sh_lmax)
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
                    y = y + self.two_centre[t][rel](lengths[rel], sh[rel])
                raw = self.block_map(rows(y, i, j) * norm.edge_scales(r, lengths[rel]))
                blocks[rel] = 0.5 * (raw + raw[reverse[rel]].transpose(-1, -2))
            out[t] = blocks
        return out

    @torch.no_grad()
    def fit_normalisation(self, items: Iterable[tuple], floor: float = 1e-8,
                          radial_floor: float = 1e-4) -> dict:
        """Set the output statistics from training targets; returns them as plain lists.

        ``items`` yields (atomic numbers (N,), {target: {"onsite": (N, n, n), relation:
        (E_r, n, n)}}, {relation: edge lengths (E_r,) in A}) per structure or batch (the
        lengths only matter with ``radial_scale_bins``). On-site 0e components are shifted by
        their per-element mean; each irrep copy is scaled by its RMS (on-site after the shift,
        hoppings per relation). An RMS below ``floor`` (eV or 1) sets the scale to 0: that
        component is then the constant shift (S_ii = 1, or the vanishing anisotropic
        on-site terms of GFN1-xTB). Radial scales: the RMS of each copy per length bin, at
        least ``radial_floor`` times the relation's RMS; an empty bin takes its nearest
        filled neighbour's.
        """
        bm = self.block_map
        dim, n_el, n_rel = bm.dim, len(self.elements), len(self.relations)
        bins = self.config.radial_scale_bins
        mat = bm.matrix.detach().to("cpu", torch.float64)
        # sums of (y - ref), ref = the first mean seen per element, so that the spread of
        # nearly constant targets (S_ii = 1) is not lost to cancellation
        acc = {t: {"s1": torch.zeros(n_el, dim, dtype=torch.float64),
                   "s2": torch.zeros(n_el, dim, dtype=torch.float64),
                   "ref": torch.zeros(n_el, dim, dtype=torch.float64),
                   "n": torch.zeros(n_el, dtype=torch.float64),
                   "e2": torch.zeros(n_rel, dim, dtype=torch.float64),
                   "ne": torch.zeros(n_rel, dtype=torch.float64),
                   "b2": torch.zeros(n_rel, max(bins, 1), dim, dtype=torch.float64),
                   "nb": torch.zeros(n_rel, max(bins, 1), dtype=torch.float64)} for t in self.targets}
        z_to_index = self.z_to_index.cpu()
        for numbers, targets, *rest in items:
            lengths = rest[0] if rest else None
            if bins and lengths is None:
                raise ValueError("radial_scale_bins needs the edge lengths: items of (numbers, targets, lengths)")
            species = z_to_index[numbers.cpu()]
            if bool((species < 0).any()):
                self.species(numbers.to(self.z_to_index.device))  # raises with the element named
            for t in self.targets:
                a = acc[t]
                y = targets[t][ONSITE].detach().to("cpu", torch.float64).flatten(-2) @ mat.T
                count = torch.zeros(n_el, dtype=torch.float64).index_add_(
                    0, species, torch.ones(len(species), dtype=torch.float64))
                new = (a["n"] == 0) & (count > 0)
                if bool(new.any()):
                    mean = torch.zeros(n_el, dim, dtype=torch.float64).index_add_(0, species, y)
                    a["ref"][new] = mean[new] / count[new, None]
                y = y - a["ref"][species]
                a["s1"].index_add_(0, species, y)
                a["s2"].index_add_(0, species, y * y)
                a["n"] += count
                for r, rel in enumerate(self.relations):
                    ye = targets[t][rel].detach().to("cpu", torch.float64).flatten(-2) @ mat.T
                    a["e2"][r] += (ye * ye).sum(0)
                    a["ne"][r] += ye.shape[0]
                    if bins:
                        k = self.normalisers[t].bin_of(r, lengths[rel].detach().cpu().to(torch.float64))
                        a["b2"][r].index_add_(0, k, ye * ye)
                        a["nb"][r].index_add_(0, k, torch.ones(len(k), dtype=torch.float64))
        copy_of = bm.copy_of_row.cpu()
        rows_per_copy = torch.zeros(bm.n_copies, dtype=torch.float64).index_add_(
            0, copy_of, torch.ones(dim, dtype=torch.float64))
        scalar = bm.scalar_row.cpu()

        def rms_per_copy(mean_sq: torch.Tensor) -> torch.Tensor:  # per row -> RMS of its copy, per row
            per = torch.zeros(bm.n_copies, dtype=torch.float64).index_add_(0, copy_of, mean_sq)
            rms = (per / rows_per_copy).sqrt()[copy_of]
            return torch.where(rms < floor, torch.zeros_like(rms), rms)

        stats = {}
        for t in self.targets:
            a, norm = acc[t], self.normalisers[t]
            total = float(a["n"].sum())
            if total == 0:
                raise ValueError("fit_normalisation got no structures")
            d = torch.where(scalar, a["s1"] / a["n"].clamp(min=1)[:, None], -a["ref"])  # shift - ref
            resid = (a["s2"] - 2 * d * a["s1"] + a["n"][:, None] * d ** 2).sum(0) / total
            shift = torch.where(scalar, a["ref"] + d, torch.zeros_like(d))
            onsite_scale = rms_per_copy(resid.clamp(min=0))
            edge_scale = torch.stack([rms_per_copy(a["e2"][r] / a["ne"][r].clamp(min=1)) for r in range(n_rel)])
            norm.onsite_shift.copy_(shift)
            norm.onsite_scale.copy_(onsite_scale)
            norm.edge_scale.copy_(edge_scale)
            stats[t] = {"onsite_shift": shift.tolist(), "onsite_scale": onsite_scale.tolist(),
                        "edge_scale": {rel: edge_scale[r].tolist() for r, rel in enumerate(self.relations)}}
            if bins:
                ratio = torch.ones(n_rel, bins, dim, dtype=torch.float64)
                for r in range(n_rel):
                    filled = torch.nonzero(a["nb"][r] > 0).flatten()
                    if len(filled) == 0:
                        continue
                    nearest = filled[(torch.arange(bins)[:, None] - filled[None, :]).abs().argmin(1)]
                    rms = torch.stack([rms_per_copy(a["b2"][r, k] / a["nb"][r, k]) for k in range(bins)])[nearest]
                    on = edge_scale[r] > 0
                    ratio[r][:, on] = (rms[:, on] / edge_scale[r][on]).clamp(min=radial_floor)
                norm.edge_log_ratio.copy_(ratio.log())
                stats[t]["edge_log_ratio"] = {rel: ratio[r].log().tolist() for r, rel in enumerate(self.relations)}
        return stats


@torch.no_grad()
def fit_two_centre(model: HedgeNetElectron, batches: Iterable, chunk: int = 4096,
                   smoothing: float = 1e-10) -> dict:
    """Least-squares two-centre tables of ``model`` (``TwoCentre``) on training batches.

    ``batches`` yields objects with ``graph``, ``reverse`` and ``targets`` (``ElectronBatch``).
    With the layers' hopping heads at zero (as a two-centre network is built) a hopping
    is linear in the tables, so the tables that minimise the training loss
    (``normalised_block_mse``, hoppings only) solve normal equations, accumulated batch by
    batch in float64 with a curvature penalty: ``smoothing`` (relative to the data's
    weight) times the integral of each radial function's squared second derivative, so
    that between neighbour shells and beyond the lengths seen a table continues smoothly
    (nearly linearly) instead of oscillating; solved by pseudo-inverse. Call
    after ``fit_normalisation``, whose scales are the loss's weights. Returns the RMS of
    the normalised residual left per target and relation (1 = no better than zero).
    """
    if model.two_centre is None:
        raise ValueError("the model has no two-centre term (two_centre: 0)")
    f64 = torch.float64
    bm_matrix = model.block_map.matrix.to(f64)
    n = model.block_map.n_orbitals
    acc = {}
    for batch in batches:
        graph = batch.graph.to(dtype=f64)
        normals = None
        if model.frame_map is not None:
            normals = local_normals(graph, model.relations, model.config.frame_cut)[:, model.frame_order]
        for t in model.targets:
            norm = model.normalisers[t]
            for r, rel in enumerate(model.relations):
                tc = model.two_centre[t][rel]
                scale = norm.edge_scale[r].to(f64)
                keep = scale > 0
                vectors = graph.edge_vectors(rel)
                i, j = graph.edges[rel].index
                rev = batch.reverse[rel]
                a = acc.setdefault((t, rel), {"A": 0.0, "b": 0.0, "yy": 0.0, "n": 0})
                target = batch.targets[t][rel].to(f64)
                for lo in range(0, len(vectors), chunk):
                    sel = torch.arange(lo, min(lo + chunk, len(vectors)))
                    both = torch.cat([sel, rev[sel]])  # the chunk's edges and their reverses
                    lengths = vectors[both].norm(dim=-1)
                    unit = tc.harmonics(model.sh(vectors[both]).to(f64))  # (2e, Q, rows)
                    if normals is not None:
                        p = unit @ model.frame_map.matrix.to(f64)
                        p = p.view(*p.shape[:2], 3, 3)
                        unit = torch.einsum("ea,eqac,ec->eq", normals[i[both]], p, normals[j[both]])[..., None]
                    raw = ((unit * norm.edge_scales(r, lengths).to(f64)[:, None, :]) @ bm_matrix).view(
                        len(both), -1, n, n)
                    m = len(sel)
                    sym = 0.5 * (raw[:m] + raw[m:].transpose(-1, -2))
                    design = (sym.flatten(-2) @ bm_matrix.T)[..., keep] / scale[keep]  # (m, Q, K)
                    phi = tc.basis(lengths[:m])  # (m, G)
                    y = (target[sel].flatten(-2) @ bm_matrix.T)[:, keep] / scale[keep]  # (m, K)
                    # design matrix rows (edge, k), columns (g, q): D = phi_g design_qk; its
                    # Gram matrix from the per-edge (Q, Q) products, G x cheaper than D^T D
                    gram = design @ design.transpose(1, 2)  # (m, Q, Q)
                    outer = (phi[:, :, None] * phi[:, None, :]).reshape(m, -1)  # (m, G G)
                    g_, q_ = phi.shape[1], design.shape[1]
                    a["A"] = a["A"] + (outer.T @ gram.reshape(m, -1)).view(g_, g_, q_, q_).permute(
                        0, 2, 1, 3).reshape(g_ * q_, g_ * q_)
                    a["b"] = a["b"] + torch.einsum("eg,eq->gq", phi, (design @ y[:, :, None])[..., 0]).reshape(-1)
                    a["yy"] += float((y * y).sum())
                    a["n"] += y.numel()
    if not acc:
        raise ValueError("fit_two_centre got no batches")
    residual = {}
    for (t, rel), a in acc.items():
        tc = model.two_centre[t][rel]
        curvature = torch.kron(tc.curvature(), torch.eye(tc.n_weights, dtype=f64))  # (g, q) order
        lam = smoothing * float(a["A"].diagonal().sum() / curvature.diagonal().sum())
        # pseudo-inverse: directions neither data nor curvature fix (e.g. the 0e and 2e tables
        # of in-plane pairs between flat layers, which only tilts tell apart) stay at zero
        w, v = torch.linalg.eigh(a["A"] + lam * curvature)
        good = w > 1e-12 * w.max()
        c = v[:, good] @ ((v[:, good].T @ a["b"]) / w[good])
        tc.table.weight.copy_(c.view(tc.table.in_features, tc.n_weights).T.to(tc.table.weight.dtype))
        left = (a["yy"] - 2 * float(c @ a["b"]) + float(c @ a["A"] @ c)) / max(a["n"], 1)
        residual.setdefault(t, {})[rel] = max(left, 0.0) ** 0.5
    return residual


# --- losses and errors ------------------------------------------------------------------------

def block_errors(pred: Mapping[str, Mapping[str, torch.Tensor]],
                 target: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per target: MSE and MAE over every matrix element of on-site and hopping blocks.

    Returns {"h_mse": eV^2, "h_mae": eV, "s_mse", "s_mae", ...} as tensors (differentiable);
    the paper's Table II reports the MAE in meV over all elements of the test set.
    """
    out = {}
    for t, blocks in pred.items():
        diff = torch.cat([(blocks[k] - target[t][k].to(blocks[k].dtype)).reshape(-1) for k in blocks])
        out[f"{t}_mse"] = diff.pow(2).mean()
        out[f"{t}_mae"] = diff.abs().mean()
    return out


def normalised_block_mse(model: HedgeNetElectron, pred: Mapping[str, Mapping[str, torch.Tensor]],
                         target: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per target: MSE of the irreps of the blocks in units of their training RMS (dimensionless).

    Each irrep copy of each relation (and of the on-site blocks) is divided by the scale
    that ``fit_normalisation`` found, so weak interlayer hoppings (~0.03 eV) weigh as
    much as strong intralayer ones (~1 eV); components with scale 0 (fixed, e.g. S_ii)
    are left out. Returns {"h": tensor, "s": tensor}.
    """
    bm = model.block_map
    out = {}
    for t, blocks in pred.items():
        norm = model.normalisers[t]
        scales = {ONSITE: norm.onsite_scale, **{rel: norm.edge_scale[r] for r, rel in enumerate(model.relations)}}
        total, count = 0.0, 0
        for key, b in blocks.items():
            scale = scales[key]
            keep = scale > 0
            diff = bm.inverse(b - target[t][key].to(b.dtype))[:, keep] / scale[keep]
            total = total + diff.pow(2).sum()
            count += diff.numel()
        out[t] = total / max(count, 1)
    return out


# --- the Hamiltonian-model seam ---------------------------------------------------------------

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
