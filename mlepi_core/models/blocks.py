"""Building blocks of the equivariant networks (MACE-style), from e3nn primitives.

Shared by HedgeNet-Phonon and the future HedgeNet-Electron:

- ``BesselBasis`` and ``PolynomialEnvelope``: the radial embedding of an edge length
  r (Angstrom), smooth to zero at the relation's cutoff (MACE, Batatia et al. 2022,
  after DimeNet);
- ``InteractionBlock``: one relation's equivariant message passing, node features
  (x) spherical harmonics of the edge direction with radial weights, summed over
  neighbours and normalised by the average neighbour count ("A-basis" of MACE);
- ``SymmetricProduct`` / ``ProductBasisBlock``: the symmetric many-body product of
  the A-basis up to correlation order 3 with element-dependent weights ("B-basis" and
  update of MACE);
- ``LinearReadout`` / ``NonLinearReadout``: per-layer atomic energies.

All blocks act on flat e3nn feature tensors (N, irreps.dim) in e3nn's layout
(multiplicity-major within each irrep segment) and aggregate with ``index_add_``;
nothing loops over atoms or edges in Python.
"""

from __future__ import annotations

import math

import torch
from e3nn import nn as enn
from e3nn import o3
from torch import nn


# --- radial embedding ------------------------------------------------------------------

class BesselBasis(nn.Module):
    """sqrt(2/r_c) sin(n pi r / r_c) / r for n = 1..num_basis (r in Angstrom, fixed frequencies)."""

    def __init__(self, r_max: float, num_basis: int = 8):
        super().__init__()
        self.r_max = float(r_max)
        self.num_basis = int(num_basis)
        self.register_buffer("freq", math.pi / self.r_max * torch.arange(1, num_basis + 1,
                                                                          dtype=torch.get_default_dtype()))
        self.prefactor = math.sqrt(2.0 / self.r_max)

    def forward(self, r: torch.Tensor) -> torch.Tensor:  # (E,) -> (E, num_basis)
        r = r[:, None]
        return self.prefactor * torch.sin(self.freq * r) / r


class PolynomialEnvelope(nn.Module):
    """Smooth cutoff u(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2), x = r/r_c.

    u and its first two derivatives vanish at r_c, so energies and forces are smooth
    when a neighbour crosses the cutoff (Klicpera et al., DimeNet, Eq. 8).
    """

    def __init__(self, r_max: float, p: int = 5):
        super().__init__()
        self.r_max = float(r_max)
        self.p = int(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:  # (E,) -> (E,)
        p, x = self.p, r / self.r_max
        u = (1.0 - 0.5 * (p + 1) * (p + 2) * x.pow(p) + p * (p + 2) * x.pow(p + 1)
             - 0.5 * p * (p + 1) * x.pow(p + 2))
        return u * (x < 1.0)


class RadialEmbedding(nn.Module):
    """Bessel basis times polynomial envelope: (E,) lengths in Angstrom -> (E, num_basis)."""

    def __init__(self, r_max: float, num_basis: int = 8, p: int = 5):
        super().__init__()
        self.bessel = BesselBasis(r_max, num_basis)
        self.envelope = PolynomialEnvelope(r_max, p)
        self.r_max = float(r_max)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.bessel(r) * self.envelope(r)[:, None]


# --- irreps helpers -------------------------------------------------------------------------

def natural_irreps(mul: int, l_max: int) -> o3.Irreps:
    """mul x (0e + 1o + 2e + ...) up to l_max: the parities spherical harmonics carry."""
    return o3.Irreps([(mul, (l, (-1) ** l)) for l in range(l_max + 1)])


def edge_tp_instructions(irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_target: o3.Irreps):
    """'uvu' paths of node features x spherical harmonics into the irreps of ``irreps_target``.

    Returns (irreps_mid, instructions): one output segment per path, as in MACE, so that
    the following linear layer mixes paths and channels; segments are ordered by output
    irrep (all 0e paths first, then 1o, ...).
    """
    targets = {ir for _, ir in irreps_target}
    paths = []
    for i, (mul, ir_in) in enumerate(irreps_in):
        for j, (_, ir_sh) in enumerate(irreps_sh):
            for ir_out in ir_in * ir_sh:
                if ir_out in targets:
                    paths.append((ir_out, i, j, mul))
    paths.sort(key=lambda p: (p[0].l, p[0].p * (-1) ** p[0].l < 0))  # stable: natural parity first
    mid = o3.Irreps([(mul, ir_out) for ir_out, _, _, mul in paths])
    instructions = [(i, j, k, "uvu", True) for k, (_, i, j, _) in enumerate(paths)]
    return mid, instructions


# --- interaction ----------------------------------------------------------------------------

def _uniform_mul(irreps: o3.Irreps, what: str) -> int:
    muls = {mul for mul, _ in irreps}
    if len(muls) != 1:
        raise ValueError(f"{what} needs one multiplicity for all irreps, got {irreps}")
    return muls.pop()


def to_channels(x: torch.Tensor, irreps: o3.Irreps) -> torch.Tensor:
    """e3nn layout (N, irreps.dim) with one multiplicity C -> (N, dim per channel, C)."""
    mul = _uniform_mul(irreps, "to_channels")
    parts = [x[:, sl].reshape(-1, mul, ir.dim).transpose(1, 2) for sl, (_, ir) in zip(irreps.slices(), irreps)]
    return torch.cat(parts, dim=1)


def from_channels(x: torch.Tensor, irreps: o3.Irreps) -> torch.Tensor:
    """Inverse of ``to_channels``: (N, dim per channel, C) -> e3nn layout (N, irreps.dim)."""
    parts, start = [], 0
    for _, ir in irreps:
        parts.append(x[:, start:start + ir.dim].transpose(1, 2).reshape(x.shape[0], -1))
        start += ir.dim
    return torch.cat(parts, dim=-1)


class EdgeTensorProduct(nn.Module):
    """Channel-wise ('uvu') tensor product of sender features with edge harmonics, summed on receivers.

    m_i = sum_{j in N(i)} sum_paths w_{ij, path, c} [h_j,c (x) Y(r_ij)]_path, with one output
    segment per path (e3nn's irreps layout). The map is exactly
    ``o3.TensorProduct(node_irreps, sh_irreps, irreps_out, instructions=[... 'uvu' ...],
    shared_weights=False)`` followed by a scatter-sum; the Clebsch-Gordan coefficients
    (with e3nn's normalisation) are taken from that e3nn product once, at
    construction, and applied per edge as one (C x d_in) @ (d_in x d_out) matrix product
    instead of one small kernel per path and per multiplicity, which is what makes
    training affordable on a CPU.
    """

    def __init__(self, node_irreps: str | o3.Irreps, sh_irreps: str | o3.Irreps,
                 target_irreps: str | o3.Irreps):
        super().__init__()
        self.node_irreps = o3.Irreps(node_irreps)
        self.sh_irreps = o3.Irreps(sh_irreps)
        self.mul = _uniform_mul(self.node_irreps, "EdgeTensorProduct")
        unit_in = o3.Irreps([(1, ir) for _, ir in self.node_irreps])
        unit_mid, instructions = edge_tp_instructions(unit_in, self.sh_irreps, o3.Irreps(target_irreps))
        unit_tp = o3.TensorProduct(unit_in, self.sh_irreps, unit_mid, instructions,
                                   shared_weights=True, internal_weights=False, compile_left_right=False,
                                   compile_right=True, _optimize_einsums=False)  # used once, here
        with torch.no_grad():  # (d_sh, d_in, d_out): the product for unit path weights
            cg = unit_tp.right(torch.eye(self.sh_irreps.dim), torch.ones(unit_tp.weight_numel))
        self.d_in, self.d_out = unit_in.dim, unit_mid.dim
        # stored as (d_sh, d_out * d_in) so that Y @ cg is each edge's (d_out, d_in) coupling matrix
        self.register_buffer("cg", cg.transpose(1, 2).reshape(self.sh_irreps.dim, self.d_out * self.d_in))
        self.n_paths = len(instructions)
        self.irreps_out = o3.Irreps([(self.mul, ir) for _, ir in unit_mid])
        self.unit_out = unit_mid
        self.instructions = [(i, j, k, "uvu", True) for i, j, k, *_ in instructions]
        path_of = torch.cat([torch.full((ir.dim,), k, dtype=torch.long) for k, (_, ir) in enumerate(unit_mid)])
        self.register_buffer("path_of_component", path_of, persistent=False)
        self.weight_numel = self.n_paths * self.mul  # e3nn order: path-major, then channel

    def forward(self, node_feats: torch.Tensor, edge_attrs: torch.Tensor, weights: torch.Tensor,
                index: torch.Tensor) -> torch.Tensor:
        """node_feats (N, node_irreps.dim); edge_attrs (E, sh dim); weights (E, weight_numel);
        index (2, E) sender, receiver -> (N, irreps_out.dim) summed messages."""
        sender, receiver = index
        n_edges = edge_attrs.shape[0]
        x = to_channels(node_feats, self.node_irreps).index_select(0, sender)  # (E, d_in, C)
        coupling = (edge_attrs @ self.cg).view(n_edges, self.d_out, self.d_in)
        messages = torch.bmm(coupling, x)  # (E, d_out, C)
        w = weights.view(n_edges, self.n_paths, self.mul).index_select(1, self.path_of_component)
        messages = (messages * w).reshape(n_edges, self.d_out * self.mul)
        out = messages.new_zeros(node_feats.shape[0], self.d_out * self.mul)
        out.index_add_(0, receiver, messages)
        return from_channels(out.view(-1, self.d_out, self.mul), self.unit_out)


class InteractionBlock(nn.Module):
    """Equivariant messages of one relation (Eq. 4 of the MLEPI paper uses one per relation).

    A_i = W [ sum_{j in N_r(i)} R(r_ij) (W_up h_j) (x) Y(r_ij / |r_ij|) ] / avg_num_neighbors,
    with R a radial MLP on the Bessel x envelope embedding (cutoff ``r_max`` in
    Angstrom), Y real spherical harmonics up to ``sh_lmax`` ("component" normalised)
    and the tensor product restricted to ``target_irreps`` (MACE's
    RealAgnosticInteractionBlock; the residual path lives in ``ProductBasisBlock``).
    ``avg_num_neighbors`` is the mean number of this relation's edges per atom in the
    training set, so that messages stay O(1) whatever the cutoff.
    """

    def __init__(self, node_irreps: str | o3.Irreps, target_irreps: str | o3.Irreps, r_max: float,
                 sh_lmax: int = 2, num_bessel: int = 8, envelope_p: int = 5,
                 radial_hidden: tuple[int, ...] = (64, 64, 64), avg_num_neighbors: float = 1.0):
        super().__init__()
        self.node_irreps = o3.Irreps(node_irreps)
        self.target_irreps = o3.Irreps(target_irreps)
        self.sh_irreps = o3.Irreps.spherical_harmonics(sh_lmax)
        self.r_max = float(r_max)
        self.avg_num_neighbors = float(avg_num_neighbors)
        self.radial = RadialEmbedding(r_max, num_bessel, envelope_p)
        self.sh = o3.SphericalHarmonics(self.sh_irreps, normalize=True, normalization="component")
        self.linear_up = o3.Linear(self.node_irreps, self.node_irreps)
        self.conv_tp = EdgeTensorProduct(self.node_irreps, self.sh_irreps, self.target_irreps)
        self.radial_mlp = enn.FullyConnectedNet([num_bessel, *radial_hidden, self.conv_tp.weight_numel],
                                                torch.nn.functional.silu)
        self.linear = o3.Linear(self.conv_tp.irreps_out, self.target_irreps)

    def forward(self, node_feats: torch.Tensor, vectors: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """node_feats (N, node_irreps.dim); vectors (E, 3) r_ij in Angstrom; index (2, E) sender, receiver.

        Returns the A-basis (N, target_irreps.dim).
        """
        weights = self.radial_mlp(self.radial(vectors.norm(dim=-1)))
        messages = self.conv_tp(self.linear_up(node_feats), self.sh(vectors), weights, index)
        return self.linear(messages) / self.avg_num_neighbors


# --- symmetric product basis -------------------------------------------------------------

class SymmetricProduct(nn.Module):
    """Element-weighted symmetric products of the A-basis up to ``correlation`` (1, 2 or 3).

    m_i,c = sum_nu sum_paths w_{z_i, path, c} [A_i,c (x) ... (x) A_i,c]_path (channel-wise),
    the many-body B-basis of MACE/ACE contracted with weights per element, per channel
    and per coupling path. Built as a chain of channel-wise ('uuu') e3nn tensor
    products: B_1 = A, B_k = (B_{k-1} + 1) (x) A (unweighted), m = (B_{nu-1} + 1) (x) A
    with per-atom weights; appending the constant 1 to each left factor carries all
    lower orders along (1 (x) A = A). Intermediates keep l <= max(l of A); paths that
    vanish identically ([A_l (x) A_l]_L with odd L in one channel is antisymmetric) and
    the mirror orderings A_j (x) A_i of A_i (x) A_j are left out.
    """

    def __init__(self, irreps_in: str | o3.Irreps, irreps_out: str | o3.Irreps, correlation: int,
                 num_elements: int):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        muls = {mul for mul, _ in self.irreps_in} | {mul for mul, _ in self.irreps_out}
        if len(muls) != 1:
            raise ValueError(f"SymmetricProduct needs one multiplicity, got {self.irreps_in} -> "
                             f"{self.irreps_out}")
        if correlation not in (1, 2, 3):
            raise ValueError(f"correlation order must be 1, 2 or 3, got {correlation}")
        self.mul = muls.pop()
        self.correlation = correlation
        l_cap = max(ir.l for _, ir in self.irreps_in)
        ones = o3.Irreps([(self.mul, (0, 1))])
        self.chain = nn.ModuleList()
        current = None  # B_{k-1}; None stands for "nothing but the constant" (k = 1)
        for order in range(1, correlation):
            if order == 1:
                current = self.irreps_in  # B_1 = A, no product needed
                continue
            left = current + ones
            instr, out = self._paths(left, len(current) if order == 2 else 0,
                                     lambda ir: [(ir_o, None) for ir_o in ir if ir_o.l <= l_cap])
            current = o3.Irreps([(self.mul, ir) for ir in out])
            self.chain.append(o3.TensorProduct(left, self.irreps_in, current,
                                               [(i, j, k, "uuu", False) for i, j, k in instr],
                                               internal_weights=False, shared_weights=True))
        left = ones if current is None else current + ones
        targets = list(self.irreps_out)
        instr, _ = self._paths(left, len(current) if correlation == 2 else 0,
                               lambda ir: [(t.ir, k) for k, t in enumerate(targets) if t.ir in ir])
        reached = {k for _, _, k in instr}
        if reached != set(range(len(targets))):
            missing = [str(targets[k]) for k in range(len(targets)) if k not in reached]
            raise ValueError(f"no product path reaches {missing}")
        self.left_irreps = left
        self.tp_out = o3.TensorProduct(left, self.irreps_in, self.irreps_out,
                                       [(i, j, k, "uuu", True) for i, j, k in instr],
                                       shared_weights=False, internal_weights=False)
        self.weights = nn.Parameter(torch.randn(num_elements, self.tp_out.weight_numel))

    def _paths(self, left: o3.Irreps, n_a: int, outputs):
        """Paths left[i] (x) A[j]; the first ``n_a`` segments of ``left`` are A itself.

        ``outputs(ir_b * ir_a)`` lists (ir_out, k): k the output segment, or None for a
        new one. Returns ([(i, j, k)], [ir_out of each new segment]).
        """
        instr, new = [], []
        for i, (_, ir_b) in enumerate(left):
            for j, (_, ir_a) in enumerate(self.irreps_in):
                if i < n_a and j < i:
                    continue  # A_j (x) A_i duplicates A_i (x) A_j
                for ir_o, k in outputs(list(ir_b * ir_a)):
                    if i < n_a and i == j and ir_o.l % 2 == 1:
                        continue  # antisymmetric, zero within one channel
                    if k is None:
                        k = len(new)
                        new.append(ir_o)
                    instr.append((i, j, k))
        return instr, new

    def forward(self, a: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """a (N, irreps_in.dim) A-basis; species (N,) element index -> (N, irreps_out.dim)."""
        ones = a.new_ones(a.shape[0], self.mul)
        b = a
        for tp in self.chain:
            b = tp(torch.cat([b, ones], dim=1), a)
        left = ones if self.correlation == 1 else torch.cat([b, ones], dim=1)
        return self.tp_out(left, a, self.weights[species])


class ProductBasisBlock(nn.Module):
    """Symmetric product, then a linear mix of channels, plus the residual (skip) path.

    h_i^{t+1} = W m_i + sc_i, with sc_i an element-dependent linear map of h_i^t
    (e3nn FullyConnectedTensorProduct with the one-hot element, as MACE) when
    ``use_sc``.
    """

    def __init__(self, a_irreps: str | o3.Irreps, out_irreps: str | o3.Irreps, correlation: int,
                 num_elements: int, node_irreps: str | o3.Irreps | None = None, use_sc: bool = True):
        super().__init__()
        a_irreps, out_irreps = o3.Irreps(a_irreps), o3.Irreps(out_irreps)
        self.product = SymmetricProduct(a_irreps, out_irreps, correlation, num_elements)
        self.linear = o3.Linear(out_irreps, out_irreps)
        self.num_elements = num_elements
        self.sc = None
        if use_sc:
            if node_irreps is None:
                raise ValueError("the skip connection needs node_irreps")
            self.sc = o3.FullyConnectedTensorProduct(o3.Irreps(node_irreps),
                                                     o3.Irreps(f"{num_elements}x0e"), out_irreps)

    def forward(self, a: torch.Tensor, species: torch.Tensor, node_feats: torch.Tensor) -> torch.Tensor:
        out = self.linear(self.product(a, species))
        if self.sc is not None:
            one_hot = torch.nn.functional.one_hot(species, self.num_elements).to(a.dtype)
            out = out + self.sc(node_feats, one_hot)
        return out


# --- readouts ---------------------------------------------------------------------------------

class LinearReadout(nn.Module):
    """Scalar per atom from the invariant part of the node features (o3.Linear to 1x0e)."""

    def __init__(self, irreps_in: str | o3.Irreps):
        super().__init__()
        self.linear = o3.Linear(o3.Irreps(irreps_in), o3.Irreps("0e"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)[:, 0]


class NonLinearReadout(nn.Module):
    """Scalar per atom through a one-hidden-layer MLP on the invariants (last layer, as MACE)."""

    def __init__(self, irreps_in: str | o3.Irreps, hidden: int = 16):
        super().__init__()
        hid = o3.Irreps(f"{hidden}x0e")
        self.linear_1 = o3.Linear(o3.Irreps(irreps_in), hid)
        self.act = enn.Activation(hid, [torch.nn.functional.silu])
        self.linear_2 = o3.Linear(hid, o3.Irreps("0e"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))[:, 0]


def species_index(z_to_index: torch.Tensor, numbers: torch.Tensor, elements) -> torch.Tensor:
    """Element index of each atom from a Z -> index table (-1: unknown); StructureError
    naming the elements a model does not know."""
    from ase.data import chemical_symbols

    from ..structures import StructureError

    idx = z_to_index[numbers]
    if bool((idx < 0).any()):
        bad = sorted({chemical_symbols[int(z)] for z in numbers[idx < 0]})
        raise StructureError(f"element(s) {', '.join(bad)} not known to this model "
                             f"(it knows {', '.join(elements)})")
    return idx
