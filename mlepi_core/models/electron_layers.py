"""The equivariant layers of HedgeNet-Electron, on the (rows, channels) layout.

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
from typing import TYPE_CHECKING, Mapping, Sequence

import torch
from e3nn import nn as enn
from e3nn import o3
from torch import nn

from .blocks import RadialEmbedding

if TYPE_CHECKING:
    from .electron import HedgeNetElectronConfig

SCALAR = o3.Irrep("0e")

Segments = list  # [(o3.Irrep, copies)], one entry per irrep type, rows d * copies each


@contextlib.contextmanager
def float64_default():
    """Build constant tensors (Clebsch-Gordan, Wigner 3j) in float64, whatever the default dtype."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def rows_of(segments: Segments) -> int:
    """Rows of a feature in the layout ``segments``."""
    return sum(ir.dim * k for ir, k in segments)


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
        self.rows_out = rows_of(self.out_segments)

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
            # one (B d, k_in c_in) matrix: a (B, d, .) view of a split piece is not contiguous,
            # and matmul would then broadcast w over B small products
            xs = pieces[n].reshape(b * d, k_in * self.c_in)
            outs.append((xs @ (w * w.shape[0] ** -0.5)).view(b, d * k_out, self.c_out))
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
        with float64_default():
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
    given data is a least-squares problem (``HedgeNetElectron.fit_two_centre``). Each
    ordered element pair (row atom's element, column atom's) has its own table, as
    Slater-Koster files are per pair: B-N's sp-sigma is not N-B's, nor C-C's.
    """

    def __init__(self, out_segments: Segments, r_max: float, num_gaussians: int, sh_lmax: int,
                 n_pairs: int = 1):
        super().__init__()
        self.n_pairs = int(n_pairs)
        self.basis = GaussianBasis(r_max, num_gaussians)
        self.plan = []  # (row start, l, copies) of each type a two-centre term fills
        base = 0
        for ir, k in out_segments:
            if ir.p == (-1) ** ir.l and ir.l <= sh_lmax:
                self.plan.append((base, ir.l, k))
            base += ir.dim * k
        self.rows = base
        self.n_weights = sum(k for *_, k in self.plan)
        # rows (pair, weight); fitted by least squares (``fit_two_centre``), not by gradient
        # descent: frozen
        self.table = nn.Linear(num_gaussians, self.n_pairs * self.n_weights, bias=False).requires_grad_(False)

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

    def forward(self, lengths: torch.Tensor, sh: torch.Tensor, pair: torch.Tensor | None = None) -> torch.Tensor:
        """(E,) lengths in A, (E, (l_max + 1)^2) harmonics of the bond and (E,) element-pair
        indices (``n_elements * row element + column element``; None with one pair) -> (E, rows)."""
        w = self.table(self.basis(lengths))
        if self.n_pairs > 1:
            w = w.view(len(w), self.n_pairs, self.n_weights)[torch.arange(len(w), device=w.device), pair]
        out = sh.new_zeros(len(lengths), self.rows)
        start = 0
        for base, l, k in self.plan:  # rows (m, copy): Y_lm times the weight of each copy
            y = sh[:, l * l:(l + 1) * (l + 1)]
            out[:, base:base + (2 * l + 1) * k] = (y[:, :, None] * w[:, None, start:start + k]).flatten(1)
            start += k
        return out
