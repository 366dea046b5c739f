"""An explicit pair energy for one relation of the graph (docs/physics.md#the-interlayer-interaction).

For the edges of a relation (``inter``: atoms of different layers) the energy is a sum over
pairs of a learned function of the distance alone, one per unordered element pair:

    E_pair = 1/2 sum_(i->j) f_{z_i z_j}(r_ij),   f_ab(r) = u(r) sum_k c_abk exp(-(r - r_k)^2 / (2 w^2))

with Gaussians centred on an even grid r_k from ``r_min`` to the cutoff, w the grid spacing,
u the polynomial envelope of the cutoff, and c_abk the learned coefficients (eV), zero at
the start. The graph holds every pair in both directions, hence the 1/2. Such a term gives a
stack the same coupling on each interface, whatever lies beyond it: the energy of a layer's
sliding over its neighbour depends on those two layers alone, as in the Kolmogorov-Crespi and
ILP references, where a message-passing energy couples all the layers a node's features see.
Gaussians of one width on a grid keep the fit well conditioned: the stacking surface is a
function of pair lengths that differ by hundredths of an Angstrom near r = d.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import PolynomialEnvelope


class PairEnergy(nn.Module):
    """Per-atom energies (N,) eV of the pairs of one relation: half of each pair's f(r) on each atom."""

    def __init__(self, n_elements: int, r_max: float, num_basis: int = 32, r_min: float = 2.5,
                 envelope_p: int = 5):
        super().__init__()
        if not 0.0 < r_min < r_max:
            raise ValueError(f"pair term needs 0 < r_min < r_max, got {r_min} and {r_max}")
        if num_basis < 2:
            raise ValueError(f"pair term needs at least two basis functions, got {num_basis}")
        centres = torch.linspace(float(r_min), float(r_max), int(num_basis))
        self.register_buffer("centres", centres)
        self.width = float(centres[1] - centres[0])
        self.envelope = PolynomialEnvelope(r_max, envelope_p)
        # unordered element pairs (a <= b) -> row of the coefficient table
        pair = torch.zeros(n_elements, n_elements, dtype=torch.long)
        rows = [(a, b) for a in range(n_elements) for b in range(a, n_elements)]
        for k, (a, b) in enumerate(rows):
            pair[a, b] = pair[b, a] = k
        self.register_buffer("pair_row", pair, persistent=False)
        self.coefficients = nn.Parameter(torch.zeros(len(rows), int(num_basis)))

    def basis(self, r: torch.Tensor) -> torch.Tensor:
        """(E,) lengths in Angstrom -> (E, num_basis) enveloped Gaussians."""
        x = (r[:, None] - self.centres) / self.width
        return torch.exp(-0.5 * x * x) * self.envelope(r)[:, None]

    def pair_function(self, r: torch.Tensor, a: int, b: int) -> torch.Tensor:
        """f_ab(r) in eV for lengths ``r`` (Angstrom) between elements of index a and b."""
        return self.basis(r) @ self.coefficients[self.pair_row[a, b]]

    def forward(self, species: torch.Tensor, vectors: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        i, j = index
        r = vectors.norm(dim=-1)
        e = (self.basis(r) * self.coefficients[self.pair_row[species[i], species[j]]]).sum(-1)
        return species.new_zeros(species.shape[0], dtype=e.dtype).index_add(0, i, 0.5 * e)
