"""The targets of HedgeNet-Electron: orbital blocks as irreps, and their normalisation.

A block between shells of angular momenta l1 and l2 is the direct sum of irreps
L = |l1 - l2| .. l1 + l2 (for s, p: s (x) s = 0e, s (x) p = p (x) s = 1o,
p (x) p = 0e + 1e + 2e; 16 numbers for a 4 x 4 block). ``BlockMap`` maps between the
two with Wigner-3j coefficients, in tblite's orbital order; ``TargetNormaliser`` holds
the training statistics that make the network's outputs O(1).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from e3nn import o3
from torch import nn

from ..reference.tblite_electrons import P_TO_E3NN
from .electron_layers import SCALAR, rows_of


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
        dim = rows_of(self.segments)
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


class TargetNormaliser(nn.Module):
    """Per-target output statistics (buffers): on-site 0e shift per element, RMS scale per irrep copy.

    Network outputs y are O(1); the irreps of a block are y * scale (+ shift on-site).
    With ``radial_bins`` > 0 a hopping's scale is ``edge_scale`` times exp(``edge_log_ratio``)
    interpolated linearly in the edge length between bin centres (the ratio of the RMS at
    that length to the relation's RMS). Defaults (shift 0, scale 1, ratio 1) until
    ``electron_fitting.fit_normalisation``.
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
