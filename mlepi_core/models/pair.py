"""An explicit pair energy for one relation of the graph (docs/physics.md#the-interlayer-interaction).

For the edges of a relation (``inter``: atoms of different layers) the energy is a sum over
pairs, one learned function per unordered element pair, in the form of the
Kolmogorov-Crespi and ILP potentials:

    E_pair = 1/2 sum_(i->j) e_ij,
    e_ij = sum_k phi_k(r_ij) [ a_k + sum_m b_km (chi_m(rho_ij^2) + chi_m(rho_ji^2)) ],

phi_k Gaussians of the distance centred on an even grid from ``r_min`` to the cutoff (width
the grid spacing) times the polynomial envelope of the cutoff, and chi_m(rho^2) =
exp(-rho^2 / delta_m^2) of the transverse distance rho_ij^2 = r_ij^2 - (n_i . r_ij)^2 from
atom i's layer normal n_i, for widths delta_m spread geometrically over 0.3-2 A. The
registry (stacking) dependence of the interlayer energy lives in rho, in the pairs nearly on
top of each other: at one interlayer distance r alone can mimic it, but not over the
distances a breathing layer visits (docs/physics.md#the-interlayer-interaction). The normal
is that of the plane through the atom's in-layer neighbours within ``normal_cut``: the
eigenvector of C_i = sum_j v_ij v_ij^T with the smallest eigenvalue lambda_0, taken as the
projector n n^T = adj(C - lambda_0) / tr adj(C - lambda_0), which is smooth and has no sign.
The coefficients a, b (eV) start at zero. The graph holds every pair in both directions,
hence the 1/2.

Such a term gives a stack the same coupling on each interface, whatever lies beyond it: the
energy of a layer sliding over its neighbour depends on those two layers alone, as in the
references, where a message-passing energy couples every layer a node's features see.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import PolynomialEnvelope

REGISTRY_WIDTHS_A = (0.3, 2.0)  # range of the transverse widths delta_m, Angstrom


def normal_projectors(n_atoms: int, vectors: torch.Tensor, index: torch.Tensor, same_layer: torch.Tensor,
                      cut: float) -> torch.Tensor:
    """(N, 3, 3) projectors n_i n_i^T on each atom's layer normal, from the edges ``index``
    (2, E) with ``vectors`` (E, 3) that join atoms of one layer (``same_layer``) within ``cut``
    A; differentiable. An atom with fewer than two such neighbours gets z z^T."""
    near = same_layer & (vectors.norm(dim=-1) < cut)
    i, v = index[0][near], vectors[near]
    cov = vectors.new_zeros(n_atoms, 3, 3).index_add(0, i, v[:, :, None] * v[:, None, :])
    lam0 = torch.linalg.eigvalsh(cov)[:, 0]
    a = cov - lam0[:, None, None] * torch.eye(3, dtype=cov.dtype, device=cov.device)
    adj = torch.stack([torch.linalg.cross(a[:, (k + 1) % 3], a[:, (k + 2) % 3]) for k in range(3)], 1)
    norm = adj.diagonal(dim1=1, dim2=2).sum(-1)
    count = torch.zeros(n_atoms, dtype=torch.long, device=cov.device).index_add(0, i, torch.ones_like(i))
    ok = (count >= 2) & (norm > 1e-12)
    zz = torch.zeros(3, 3, dtype=cov.dtype, device=cov.device)
    zz[2, 2] = 1.0
    return torch.where(ok[:, None, None], adj / torch.where(ok, norm, 1.0)[:, None, None], zz)


class PairEnergy(nn.Module):
    """Per-atom energies (N,) eV of the pairs of one relation: half of each pair's e_ij on each atom."""

    def __init__(self, n_elements: int, r_max: float, num_basis: int = 32, r_min: float = 2.5,
                 envelope_p: int = 5, registry_basis: int = 8):
        super().__init__()
        if not 0.0 < r_min < r_max:
            raise ValueError(f"pair term needs 0 < r_min < r_max, got {r_min} and {r_max}")
        if num_basis < 2 or registry_basis < 0:
            raise ValueError(f"pair term needs two or more radial functions and no negative count of "
                             f"registry functions, got {num_basis} and {registry_basis}")
        centres = torch.linspace(float(r_min), float(r_max), int(num_basis))
        self.register_buffer("centres", centres)
        self.width = float(centres[1] - centres[0])
        self.envelope = PolynomialEnvelope(r_max, envelope_p)
        lo, hi = REGISTRY_WIDTHS_A
        widths = torch.tensor([lo * (hi / lo) ** (m / max(registry_basis - 1, 1)) for m in range(registry_basis)])
        self.register_buffer("inverse_widths2", 1.0 / widths ** 2)
        # unordered element pairs (a <= b) -> row of the coefficient tables
        pair = torch.zeros(n_elements, n_elements, dtype=torch.long)
        rows = [(a, b) for a in range(n_elements) for b in range(a, n_elements)]
        for k, (a, b) in enumerate(rows):
            pair[a, b] = pair[b, a] = k
        self.register_buffer("pair_row", pair, persistent=False)
        self.radial = nn.Parameter(torch.zeros(len(rows), int(num_basis)))
        self.registry = nn.Parameter(torch.zeros(len(rows), int(num_basis), int(registry_basis)))

    @property
    def uses_normals(self) -> bool:
        return self.registry.shape[-1] > 0

    def basis(self, r: torch.Tensor) -> torch.Tensor:
        """(E,) lengths in Angstrom -> (E, num_basis) enveloped Gaussians."""
        x = (r[:, None] - self.centres) / self.width
        return torch.exp(-0.5 * x * x) * self.envelope(r)[:, None]

    def registry_basis(self, rho2: torch.Tensor) -> torch.Tensor:
        """(E,) squared transverse distances (A^2) -> (E, registry_basis)."""
        return torch.exp(-rho2[:, None] * self.inverse_widths2)

    def pair_energies(self, rows: torch.Tensor, vectors: torch.Tensor, projectors_i: torch.Tensor | None,
                      projectors_j: torch.Tensor | None) -> torch.Tensor:
        """e_ij (E,) eV of pairs with coefficient rows ``rows`` and vectors r_ij."""
        r = vectors.norm(dim=-1)
        phi = self.basis(r)
        weights = self.radial[rows]
        if self.uses_normals:
            r2 = r * r
            rho2_i = r2 - torch.einsum("ea,eab,eb->e", vectors, projectors_i, vectors)
            rho2_j = r2 - torch.einsum("ea,eab,eb->e", vectors, projectors_j, vectors)
            chi = self.registry_basis(rho2_i) + self.registry_basis(rho2_j)
            weights = weights + torch.einsum("ekm,em->ek", self.registry[rows], chi)
        return (phi * weights).sum(-1)

    def forward(self, species: torch.Tensor, vectors: torch.Tensor, index: torch.Tensor,
                projectors: torch.Tensor | None = None) -> torch.Tensor:
        """Per-atom energies; ``projectors`` (N, 3, 3) are the layer-normal projectors
        (``normal_projectors``), needed when the term has registry functions."""
        if self.uses_normals and projectors is None:
            raise ValueError("this pair term needs the layer normals' projectors")
        i, j = index
        rows = self.pair_row[species[i], species[j]]
        p_i = projectors[i] if self.uses_normals else None
        p_j = projectors[j] if self.uses_normals else None
        e = self.pair_energies(rows, vectors, p_i, p_j)
        return species.new_zeros(species.shape[0], dtype=e.dtype).index_add(0, i, 0.5 * e)
