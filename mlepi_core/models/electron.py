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
block). ``BlockMap`` turns them into the block with Wigner-3j coefficients,

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

Layout. Features are stored as (rows, channels): a tensor (B, rows, C) whose rows
are the components of each irrep type in turn (0e, 1o, 1e, 2e: 1 + 3 + 3 + 5 rows
for one copy of each; a type with k copies has d*k rows ordered (m, k)). A linear
layer is then one matrix product per irrep type over (k * C) columns and a gate or
norm is a row-wise operation, which keeps the ~10^4 edges per structure cheap on a
CPU (e3nn's ``o3.Linear`` on the (mul, dim) layout was 3x slower here). The
Clebsch-Gordan coefficients come from e3nn's ``o3.TensorProduct`` and
``o3.wigner_3j``, the harmonics from ``o3.SphericalHarmonics``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols
from e3nn import nn as enn
from e3nn import o3
from torch import nn

from ..graph import Edges, HeteroGraph, atom_budget_chunks, batch_graphs
from ..reference.tblite_electrons import P_TO_E3NN
from ..seams import Blocks
from .blocks import RadialEmbedding, species_index
from .deployed import DeployedNetwork
from .settings import Settings

TARGETS = ("h", "s")  # Hamiltonian (eV) and overlap (dimensionless)
ONSITE = "onsite"  # key of the on-site blocks beside the relation names
SCALAR = o3.Irrep("0e")

Segments = list  # [(o3.Irrep, copies)], one entry per irrep type, rows d * copies each


@contextlib.contextmanager
def _float64_default():
    """Build constant tensors (Clebsch-Gordan, Wigner 3j) in float64, whatever the default dtype."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _rows(segments: Segments) -> int:
    return sum(ir.dim * k for ir, k in segments)


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


# --- irreps <-> orbital blocks ------------------------------------------------------------

class BlockMap(nn.Module):
    """Irreps rows (..., dim) <-> orbital block (..., n, n) in tblite's orbital order.

    For every pair of shells (a, b) with angular momenta (l1, l2) and every L in
    |l1 - l2|..l1 + l2 (parity (-1)^(l1 + l2)), one irrep copy y_L fills the (a, b)
    sub-block as H_{m1 m2} = sum_M sqrt(2L + 1) C^{l1 l2 L}_{m1 m2 M} y_M, with
    C = e3nn's ``o3.wigner_3j`` (Frobenius norm 1, so the map is orthogonal and
    ``inverse`` is its transpose). Rows and columns are then permuted from e3nn's
    basis (p = x, y, z) to tblite's (s, p_y, p_z, p_x) with ``P_TO_E3NN``. The irreps
    vector is in the row layout of ``segments`` (s, p: 0e x2, 1o x2, 1e, 2e), copies
    ordered as the shell pairs (a, b) run.
    """

    def __init__(self, shells: Sequence[int] = (0, 1)):
        super().__init__()
        self.shells = tuple(int(l) for l in shells)
        if any(l not in (0, 1) for l in self.shells):
            raise NotImplementedError("BlockMap supports s and p shells (l <= 1); the d order of "
                                      "the data would need its own check against e3nn's basis")
        starts = np.cumsum([0] + [2 * l + 1 for l in self.shells])
        self.n_orbitals = n = int(starts[-1])
        pieces = [(o3.Irrep(L, (-1) ** (l1 + l2)), a, b, l1, l2)
                  for a, l1 in enumerate(self.shells) for b, l2 in enumerate(self.shells)
                  for L in range(abs(l1 - l2), l1 + l2 + 1)]
        types = sorted({ir for ir, *_ in pieces})
        self.segments = [(ir, sum(1 for p in pieces if p[0] == ir)) for ir in types]
        self.irreps_out = o3.Irreps([(k, ir) for ir, k in self.segments])
        dim = _rows(self.segments)
        mat = torch.zeros(dim, n, n, dtype=torch.float64)
        copy_of_row = torch.zeros(dim, dtype=torch.long)
        base, n_copy = 0, 0
        for ir, k in self.segments:
            mine = [p for p in pieces if p[0] == ir]
            for c, (_, a, b, l1, l2) in enumerate(mine):
                cg = o3.wigner_3j(l1, l2, ir.l, dtype=torch.float64) * (2 * ir.l + 1) ** 0.5
                for m in range(ir.dim):
                    row = base + m * k + c  # (m, copy) order
                    mat[row, starts[a]:starts[a + 1], starts[b]:starts[b + 1]] = cg[:, :, m]
                    copy_of_row[row] = n_copy + c
            base += ir.dim * k
            n_copy += k
        # tblite orbital t sits at e3nn index perm[t]: s -> s; (p_y, p_z, p_x) -> (y, z, x)
        perm = []
        for a, l in enumerate(self.shells):
            local = [0] if l == 0 else np.argsort(P_TO_E3NN).tolist()
            perm.extend(int(starts[a]) + k for k in local)
        mat = mat[:, perm][:, :, perm]
        self.register_buffer("matrix", mat.reshape(dim, n * n).to(torch.get_default_dtype()),
                             persistent=False)
        self.register_buffer("copy_of_row", copy_of_row, persistent=False)
        self.register_buffer("scalar_row", torch.cat([torch.full((ir.dim * k,), ir == SCALAR)
                                                      for ir, k in self.segments]), persistent=False)
        self.n_copies = n_copy

    @property
    def dim(self) -> int:
        return self.matrix.shape[0]

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        n = self.n_orbitals
        return (y @ self.matrix).view(*y.shape[:-1], n, n)

    def inverse(self, blocks: torch.Tensor) -> torch.Tensor:
        return blocks.flatten(-2) @ self.matrix.T


# --- equivariant pieces in the (rows, channels) layout -----------------------------------------

class ChannelLinear(nn.Module):
    """Equivariant linear map (B, rows_in, c_in) -> (B, rows_out, c_out) on the row layout.

    Each output irrep type mixes all copies and channels of the same type at the input
    (one (k_in c_in) x (k_out c_out) weight per type, e3nn's normalisation
    1/sqrt(fan_in)); a type absent from the input gives zeros, as ``o3.Linear``.
    """

    def __init__(self, in_segments: Segments, out_segments: Segments, c_in: int, c_out: int):
        super().__init__()
        self.in_segments, self.out_segments = list(in_segments), list(out_segments)
        self.c_in, self.c_out = int(c_in), int(c_out)
        in_pos = {ir: (n, k) for n, (ir, k) in enumerate(self.in_segments)}
        self.split_sizes = [ir.dim * k for ir, k in self.in_segments]
        self.plan = []  # (input segment number or None, d, k_in, k_out, weight key)
        self.weights = nn.ParameterDict()
        for ir, k_out in self.out_segments:
            if ir in in_pos:
                n, k_in = in_pos[ir]
                key = str(ir)
                self.weights[key] = nn.Parameter(torch.randn(k_in * self.c_in, k_out * self.c_out))
                self.plan.append((n, ir.dim, k_in, k_out, key))
            else:
                self.plan.append((None, ir.dim, 0, k_out, None))
        self.rows_out = _rows(self.out_segments)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        # split (not slices): its backward is one concatenation, not a zero-filled copy per slice
        pieces = torch.split(x, self.split_sizes, dim=1) if len(self.split_sizes) > 1 else (x,)
        outs = []
        for n, d, k_in, k_out, key in self.plan:
            if key is None:
                outs.append(x.new_zeros(b, d * k_out, self.c_out))
                continue
            w = self.weights[key]
            xs = pieces[n].reshape(b, d, k_in * self.c_in)
            outs.append((xs @ (w * w.shape[0] ** -0.5)).reshape(b, d * k_out, self.c_out))
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)


class ChannelGate(nn.Module):
    """Gate non-linearity (e3nn's ``nn.Gate``) on the row layout.

    Input segments: 0e with 1 + G copies (row 0: scalars, SiLU; rows 1..G: gates,
    sigmoid), then one copy of each of the G gated types; output: ``hidden`` segments.
    """

    def __init__(self, hidden: Segments):
        super().__init__()
        gated = [(ir, k) for ir, k in hidden if ir != SCALAR]
        if hidden[0] != (SCALAR, 1) or any(k != 1 for _, k in gated):
            raise ValueError("the gate needs one copy of each hidden irrep type, 0e first")
        self.n_gates = len(gated)
        self.in_segments = [(SCALAR, 1 + self.n_gates), *gated]
        gate_of_row = torch.cat([torch.full((ir.dim,), g) for g, (ir, _) in enumerate(gated)]) \
            if gated else torch.zeros(0, dtype=torch.long)
        self.register_buffer("gate_of_row", gate_of_row.long(), persistent=False)

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        if self.n_gates == 0:
            return nn.functional.silu(g)
        scalars, gates, gated = torch.split(g, [1, self.n_gates, g.shape[1] - 1 - self.n_gates], dim=1)
        gates = torch.sigmoid(gates).index_select(1, self.gate_of_row)
        return torch.cat([nn.functional.silu(scalars), gated * gates], dim=1)


class ChannelLayerNorm(nn.Module):
    """Layer norm per irrep type (DeepH-E3's E3LayerNorm) on the row layout: 0e centred over
    channels, each type divided by its RMS over rows and channels, then a learnt scale per
    type and channel (and a bias on 0e)."""

    def __init__(self, segments: Segments, channels: int, eps: float = 1e-5):
        super().__init__()
        if segments[0] != (SCALAR, 1):
            raise ValueError("layer norm needs one 0e copy first")
        self.eps = eps
        type_of_row = torch.cat([torch.full((ir.dim * k,), t) for t, (ir, k) in enumerate(segments)])
        average = torch.zeros(len(type_of_row), len(segments))
        average[torch.arange(len(type_of_row)), type_of_row] = 1.0
        average /= average.sum(0, keepdim=True)
        self.register_buffer("type_of_row", type_of_row, persistent=False)
        self.register_buffer("average", average, persistent=False)
        self.weight = nn.Parameter(torch.ones(len(segments), channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, rest = torch.split(x, [1, x.shape[1] - 1], dim=1)
        s = s - s.mean(dim=2, keepdim=True)
        sq = torch.cat([s.pow(2).mean(dim=2), rest.pow(2).mean(dim=2)], dim=1)  # (B, rows)
        inv = torch.rsqrt(sq @ self.average + self.eps)  # (B, types)
        scale = inv.index_select(1, self.type_of_row)[:, :, None] * self.weight.index_select(0, self.type_of_row)
        s_scale, rest_scale = torch.split(scale, [1, x.shape[1] - 1], dim=1)
        return torch.cat([s * s_scale + self.bias, rest * rest_scale], dim=1)


class GaussianBasis(nn.Module):
    """exp(-(r - mu_k)^2 / (2 w^2)) with centres mu_k evenly spaced on [0, r_max] A, w their spacing."""

    def __init__(self, r_max: float, num: int = 16):
        super().__init__()
        self.register_buffer("centres", torch.linspace(0.0, float(r_max), num), persistent=False)
        self.width = float(r_max) / (num - 1)

    def forward(self, r: torch.Tensor) -> torch.Tensor:  # (E,) -> (E, num)
        return torch.exp(-0.5 * ((r[:, None] - self.centres) / self.width) ** 2)


class EdgeConvolution(nn.Module):
    """Per-edge channel-wise tensor product m_e,c = sum_paths w_{e,c,path} [z_e,c (x) Y_e]_path.

    Paths: each input type (x) each harmonic into each ``target`` type (MACE's 'uvu'
    product). The Clebsch-Gordan coefficients of e3nn's ``o3.TensorProduct`` with these
    paths (component normalisation) are taken once in float64 and applied per edge as
    one (d_paths x d_in) @ (d_in x C) product; the radial weights w (per edge, path and
    channel) then combine the paths into each type, so the result (E, rows, C) has one
    copy of each reachable type (``sum_segments``). Summing here rather than mixing the
    paths in a later linear layer keeps the per-edge tensors 4-5x smaller; the weights
    are learnt functions of |r| either way.
    """

    def __init__(self, in_segments: Segments, sh_irreps: o3.Irreps, targets: Sequence[o3.Irrep]):
        super().__init__()
        if any(k != 1 for _, k in in_segments):
            raise ValueError("EdgeConvolution takes one copy of each input type")
        in_types = [ir for ir, _ in in_segments]
        paths = []
        for i, ir_in in enumerate(in_types):
            for j, (_, ir_sh) in enumerate(sh_irreps):
                for ir_out in ir_in * ir_sh:
                    if ir_out in targets:
                        paths.append((list(targets).index(ir_out), ir_out, i, j))
        paths.sort(key=lambda p: p[0])  # stable: by target type, then input, then harmonic
        unit_in = o3.Irreps([(1, ir) for ir in in_types])
        unit_mid = o3.Irreps([(1, ir) for _, ir, _, _ in paths])
        instructions = [(i, j, k, "uvu", True) for k, (_, _, i, j) in enumerate(paths)]
        with _float64_default():
            tp = o3.TensorProduct(unit_in, sh_irreps, unit_mid, instructions,
                                  shared_weights=True, internal_weights=False, compile_right=True)
            cg = tp.right(torch.eye(sh_irreps.dim), torch.ones(tp.weight_numel))  # (sh, in, mid)
        types = [ir for ir in targets if any(p[1] == ir for p in paths)]
        self.out_segments = [(ir, sum(1 for p in paths if p[1] == ir)) for ir in types]
        self.sum_segments = [(ir, 1) for ir in types]
        columns, path_of_row, first = [], [], 0
        mid_slices = unit_mid.slices()
        for ir, n in self.out_segments:  # reorder e3nn's (path, m) columns into (m, path) rows
            for m in range(ir.dim):
                for p in range(first, first + n):
                    columns.append(mid_slices[p].start + m)
                    path_of_row.append(p)
            first += n
        cg = cg[:, :, columns]
        self.d_in, self.d_out, self.d_sh = unit_in.dim, len(columns), sh_irreps.dim
        dtype = torch.get_default_dtype()
        self.register_buffer("cg", cg.transpose(1, 2).reshape(self.d_sh, self.d_out * self.d_in).to(dtype),
                             persistent=False)
        self.register_buffer("path_of_row", torch.tensor(path_of_row, dtype=torch.long), persistent=False)
        self.n_paths = len(paths)
        self.seg_rows = [ir.dim * n for ir, n in self.out_segments]
        self.seg_paths = [n for _, n in self.out_segments]

    chunk_edges = 2048  # the (E, d_out, d_in) coupling of a chunk stays in cache

    def forward(self, z: torch.Tensor, sh: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """z (E, d_in, C); sh (E, d_sh); weights (E, n_paths, C) -> (E, rows of sum_segments, C),
        in chunks of ``chunk_edges`` edges (whole-graph intermediates of a large cell fall out
        of cache, and the time per atom grew with the cell)."""
        n, step = z.shape[0], self.chunk_edges
        if n <= step:
            return self._convolve(z, sh, weights)
        return torch.cat([self._convolve(z[i:i + step], sh[i:i + step], weights[i:i + step])
                          for i in range(0, n, step)])

    def _convolve(self, z: torch.Tensor, sh: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        coupling = (sh @ self.cg).view(-1, self.d_out, self.d_in)
        m = torch.bmm(coupling, z)
        c = m.shape[2]
        parts = []  # each path weight broadcast over its type's components, paths of a type added
        for (ir, n), m_t, w_t in zip(self.out_segments, torch.split(m, self.seg_rows, dim=1),
                                     torch.split(weights, self.seg_paths, dim=1)):
            parts.append((m_t.view(-1, ir.dim, n, c) * w_t[:, None]).sum(dim=2))
        return torch.cat(parts, dim=1)


class EdgeInvariants(nn.Module):
    """Rotation-invariant bilinears of an edge's two atoms, mixed into the scalar gate input.

    Messages and edge updates are linear in x_i and x_j (gates aside), so a product such as
    n_i . n_j - (n_i . u)(n_j . u), the angular factor of a p_z hopping between atoms with
    normals n, is out of their reach. Per channel c and irrep type l this adds
    x_i^(l) . x_j^(l) (the sum over the 2l + 1 rows) and, for l = 1 (o and e),
    (x_i^(l) . u)(x_j^(l) . u) with u the edge direction (a product of two pseudoscalars
    for 1e, hence a scalar): invariant under rotations, inversion and i <-> j with u -> -u.
    A linear map of these (per channel) is added to the 0e rows of the gate input.
    """

    def __init__(self, hidden: Segments, gate_in: Segments, channels: int):
        super().__init__()
        self.sizes = [ir.dim * k for ir, k in hidden]
        self.vector = [ir.l == 1 for ir, _ in hidden]
        if any(k != 1 for _, k in hidden):
            raise ValueError("edge invariants need one copy of each hidden irrep type")
        self.n_inv = len(hidden) + sum(self.vector)
        self.n_scalar_out = gate_in[0][1]  # 0e copies of the gate input (scalars + gates)
        self.c = channels
        self.weight = nn.Parameter(torch.randn(self.n_inv * channels, self.n_scalar_out * channels))

    def forward(self, xi: torch.Tensor, xj: torch.Tensor, u1: torch.Tensor) -> torch.Tensor:
        """(E, rows, C) features of both ends and u1 (E, 3) the edge direction in the basis
        of the l = 1 rows -> (E, 0e copies, C) to add to the gate input."""
        inv = []
        for a, b, vec in zip(torch.split(xi, self.sizes, 1), torch.split(xj, self.sizes, 1), self.vector):
            inv.append((a * b).sum(1))
            if vec:
                inv.append((a * u1[:, :, None]).sum(1) * (b * u1[:, :, None]).sum(1))
        inv = torch.stack(inv, 1).reshape(xi.shape[0], self.n_inv * self.c)
        w = self.weight * self.weight.shape[0] ** -0.5
        return (inv @ w).reshape(xi.shape[0], self.n_scalar_out, self.c)


class RelationInteraction(nn.Module):
    """One relation's sub-network in one layer: messages m_ij, their node sum, the edge update."""

    def __init__(self, in_segments: Segments, hidden: Segments, channels: int, sh_irreps: o3.Irreps,
                 r_max: float, cfg: HedgeNetElectronConfig, avg_num_neighbors: float):
        super().__init__()
        C = self.channels = channels
        self.avg_num_neighbors = float(avg_num_neighbors)
        self.radial = RadialEmbedding(r_max, cfg.num_bessel, cfg.envelope_p)
        self.lin_sender = ChannelLinear(in_segments, in_segments, C, C)
        self.lin_receiver = ChannelLinear(in_segments, in_segments, C, C)
        self.lin_edge = ChannelLinear(in_segments, in_segments, C, C)
        self.conv = EdgeConvolution(in_segments, sh_irreps, [ir for ir, _ in hidden])
        self.radial_mlp = enn.FullyConnectedNet([cfg.num_bessel, *cfg.radial_hidden, self.conv.n_paths * C],
                                                nn.functional.silu)
        self.edge_gate = ChannelGate(hidden)
        gate_in = self.edge_gate.in_segments
        self.node_out = ChannelLinear(self.conv.sum_segments, gate_in, C, C)
        self.edge_out = ChannelLinear(self.conv.sum_segments, gate_in, C, C)
        self.edge_from_sender = ChannelLinear(hidden, gate_in, C, C)
        self.edge_from_receiver = ChannelLinear(hidden, gate_in, C, C)
        self.edge_skip = None if in_segments == hidden else ChannelLinear(in_segments, hidden, C, C)
        self.edge_norm = ChannelLayerNorm(hidden, C) if cfg.layer_norm else nn.Identity()
        self.invariants = EdgeInvariants(hidden, gate_in, C) if cfg.edge_invariants else None

    def messages(self, x: torch.Tensor, e: torch.Tensor, sh: torch.Tensor, lengths: torch.Tensor,
                 index: torch.Tensor) -> torch.Tensor:
        """Per-edge messages (E, rows, C) from x_i, x_j, e_ij, Y(r_ij) and |r_ij|."""
        sender, receiver = index
        z = (self.lin_sender(x).index_select(0, sender) + self.lin_receiver(x).index_select(0, receiver)
             + self.lin_edge(e))
        w = self.radial_mlp(self.radial(lengths)).view(-1, self.conv.n_paths, self.channels)
        return self.conv(z, sh, w)

    def node_messages(self, m: torch.Tensor, index: torch.Tensor, n_nodes: int) -> torch.Tensor:
        """Messages summed on receivers, mixed into the gate input (N, rows, C)."""
        agg = m.new_zeros(n_nodes, *m.shape[1:]).index_add_(0, index[1], m)
        return self.node_out(agg) / self.avg_num_neighbors

    def update_edges(self, e: torch.Tensor, m: torch.Tensor, x_new: torch.Tensor,
                     index: torch.Tensor, sh: torch.Tensor | None = None) -> torch.Tensor:
        sender, receiver = index
        g = (self.edge_out(m) + self.edge_from_sender(x_new).index_select(0, sender)
             + self.edge_from_receiver(x_new).index_select(0, receiver))
        if self.invariants is not None:
            u1 = sh[:, 1:4] / 3 ** 0.5  # Y_1 with 'component' normalisation is sqrt(3) u
            extra = self.invariants(x_new.index_select(0, sender), x_new.index_select(0, receiver), u1)
            g = torch.cat([g[:, :extra.shape[1]] + extra, g[:, extra.shape[1]:]], dim=1)
        skip = e if self.edge_skip is None else self.edge_skip(e)
        return self.edge_norm(skip + self.edge_gate(g))


class HedgeElectronLayer(nn.Module):
    """One layer: a ``RelationInteraction`` per relation, node updates summed, then edge updates."""

    def __init__(self, relations: Sequence[str], cutoffs: Mapping[str, float], in_segments: Segments,
                 hidden: Segments, channels: int, sh_irreps: o3.Irreps, cfg: HedgeNetElectronConfig):
        super().__init__()
        avg = cfg.avg_num_neighbors or {}
        self.interactions = nn.ModuleDict({
            rel: RelationInteraction(in_segments, hidden, channels, sh_irreps, cutoffs[rel], cfg,
                                     float(avg.get(rel, 1.0)))
            for rel in relations})
        self.node_gate = ChannelGate(hidden)
        self.node_self = ChannelLinear(in_segments, self.node_gate.in_segments, channels, channels)
        self.node_skip = None if in_segments == hidden else ChannelLinear(in_segments, hidden, channels, channels)
        self.node_norm = ChannelLayerNorm(hidden, channels) if cfg.layer_norm else nn.Identity()

    def forward(self, x: torch.Tensor, e: Mapping[str, torch.Tensor], sh: Mapping[str, torch.Tensor],
                lengths: Mapping[str, torch.Tensor], index: Mapping[str, torch.Tensor]):
        m = {rel: f.messages(x, e[rel], sh[rel], lengths[rel], index[rel])
             for rel, f in self.interactions.items()}
        a = self.node_self(x)
        for rel, f in self.interactions.items():
            a = a + f.node_messages(m[rel], index[rel], x.shape[0])
        skip = x if self.node_skip is None else self.node_skip(x)
        x_new = self.node_norm(skip + self.node_gate(a))
        e_new = {rel: f.update_edges(e[rel], m[rel], x_new, index[rel], sh[rel])
                 for rel, f in self.interactions.items()}
        return x_new, e_new


class EdgeEmbedding(nn.Module):
    """Initial edge features (E, 1, C): an MLP of a Gaussian basis of |r_ij| (0e channels)."""

    def __init__(self, r_max: float, num_gaussians: int, channels: int):
        super().__init__()
        self.basis = GaussianBasis(r_max, num_gaussians)
        self.mlp = enn.FullyConnectedNet([num_gaussians, channels, channels], nn.functional.silu)

    def forward(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.basis(lengths))[:, None, :]


class TwoCentre(nn.Module):
    """Slater-Koster's two-centre approximation as a learnt term of the hopping irreps.

    A hopping that depends on the two atoms alone is, irrep by irrep, a radial function of
    |r_ij| times the spherical harmonic Y_l of the bond direction u: for s, p shells the
    ss-sigma, sp-sigma, pp-sigma and pp-pi integrals (0e, 1o, 0e + 2e), for the local
    frame's p block V_pi 1 + (V_sigma - V_pi) u u^T (0e + 2e). Types of unnatural parity
    (1e: no Y_l) or with l above the harmonics get nothing. Output rows (E, rows) in the
    layout of ``out_segments``. The radial functions are linear in a Gaussian basis (a
    learnt Slater-Koster table, as DFTB tabulates its integrals), so the best table for
    given data is a least-squares problem (``HedgeNetElectron.fit_two_centre``).
    """

    def __init__(self, out_segments: Segments, r_max: float, num_gaussians: int, sh_lmax: int):
        super().__init__()
        self.basis = GaussianBasis(r_max, num_gaussians)
        self.plan = []  # (row start, l, copies) of each type a two-centre term fills
        base = 0
        for ir, k in out_segments:
            if ir.p == (-1) ** ir.l and ir.l <= sh_lmax:
                self.plan.append((base, ir.l, k))
            base += ir.dim * k
        self.rows = base
        self.n_weights = sum(k for *_, k in self.plan)
        # fitted by least squares (``fit_two_centre``), not by gradient descent: frozen
        self.table = nn.Linear(num_gaussians, self.n_weights, bias=False).requires_grad_(False)

    def curvature(self, points: int = 4) -> torch.Tensor:
        """(G, G) float64: c^T K c = integral over [0, cutoff] of f''(r)^2 dr (A^-3) for the
        radial function f = basis . c, by second differences on a grid ``points`` times finer."""
        centres = self.basis.centres.to(torch.float64)
        r = torch.linspace(0.0, float(centres[-1]), points * (len(centres) - 1) + 1, dtype=torch.float64)
        h = float(r[1] - r[0])
        phi = torch.exp(-0.5 * ((r[:, None] - centres) / self.basis.width) ** 2)
        d2 = (phi[2:] - 2 * phi[1:-1] + phi[:-2]) / h ** 2
        return d2.T @ d2 * h

    def harmonics(self, sh: torch.Tensor) -> torch.Tensor:
        """(E, n_weights, rows): weight q's unit contribution, Y_l(u) in the rows of its copy."""
        out = sh.new_zeros(len(sh), self.n_weights, self.rows)
        q = 0
        for base, l, k in self.plan:
            y = sh[:, l * l:(l + 1) * (l + 1)]
            for c in range(k):
                out[:, q, base + c:base + (2 * l + 1) * k:k] = y
                q += 1
        return out

    def forward(self, lengths: torch.Tensor, sh: torch.Tensor) -> torch.Tensor:
        """(E,) lengths in A and (E, (l_max + 1)^2) harmonics of the bond -> (E, rows)."""
        w = self.table(self.basis(lengths))
        out = sh.new_zeros(len(lengths), self.rows)
        start = 0
        for base, l, k in self.plan:  # rows (m, copy): Y_lm times the weight of each copy
            y = sh[:, l * l:(l + 1) * (l + 1)]
            out[:, base:base + (2 * l + 1) * k] = (y[:, :, None] * w[:, None, start:start + k]).flatten(1)
            start += k
        return out


class TargetNormaliser(nn.Module):
    """Per-target output statistics (buffers): on-site 0e shift per element, RMS scale per irrep copy.

    Network outputs y are O(1); the irreps of a block are y * scale (+ shift on-site).
    With ``radial_bins`` > 0 a hopping's scale is ``edge_scale`` times exp(``edge_log_ratio``)
    interpolated linearly in the edge length between bin centres (the ratio of the RMS at
    that length to the relation's RMS). Defaults (shift 0, scale 1, ratio 1) until
    ``HedgeNetElectron.fit_normalisation``.
    """

    def __init__(self, dim: int, n_elements: int, n_relations: int, radial_bins: int = 0,
                 cutoffs: Sequence[float] = ()):
        super().__init__()
        self.radial_bins = int(radial_bins)
        self.register_buffer("onsite_shift", torch.zeros(n_elements, dim))
        self.register_buffer("onsite_scale", torch.ones(dim))
        self.register_buffer("edge_scale", torch.ones(n_relations, dim))
        if self.radial_bins:
            if self.radial_bins < 2:
                raise ValueError(f"radial_scale_bins must be 0 or at least 2, got {radial_bins}")
            self.register_buffer("edge_log_ratio", torch.zeros(n_relations, self.radial_bins, dim))
            self.register_buffer("bin_width", torch.tensor([float(rc) / self.radial_bins for rc in cutoffs]),
                                 persistent=False)

    def bin_of(self, r: int, lengths: torch.Tensor) -> torch.Tensor:
        """The bin (0 ... bins - 1) of each edge length of relation ``r``."""
        return (lengths / self.bin_width[r]).floor().long().clamp(0, self.radial_bins - 1)

    def edge_scales(self, r: int, lengths: torch.Tensor) -> torch.Tensor:
        """(E, dim) scale of the irreps of relation ``r``'s hoppings at these edge lengths."""
        scale = self.edge_scale[r]
        if not self.radial_bins:
            return scale.expand(len(lengths), -1)
        p = (lengths / self.bin_width[r] - 0.5).clamp(0.0, self.radial_bins - 1.0)
        k0 = p.floor().long().clamp(max=self.radial_bins - 2)
        frac = (p - k0.to(p.dtype))[:, None]
        table = self.edge_log_ratio[r]
        log_ratio = (1.0 - frac) * table[k0] + frac * table[k0 + 1]
        return scale * torch.exp(log_ratio)


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
