"""Atom-pair blocks of a reference's full H and S matrices: the pairs within a cutoff
(on-site first per atom, sorted by (i, j, R)) and the gather of their orbital blocks."""

from __future__ import annotations

import numpy as np
from ase import Atoms

from ..graph import neighbour_pairs


def pair_list(atoms: Atoms, r_c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, R) of every on-site pair and every pair within ``r_c`` (A), sorted by (i, j, R)."""
    i, j, shift, _ = neighbour_pairs(atoms, r_c)
    n = len(atoms)
    i = np.concatenate([np.arange(n), i])
    j = np.concatenate([np.arange(n), j])
    shift = np.concatenate([np.zeros((n, 3), dtype=np.int64), shift])
    order = np.lexsort((shift[:, 2], shift[:, 1], shift[:, 0], j, i))
    return i[order], j[order], shift[order]


class OrbitalTable:
    """Each atom's orbital indices in the full matrix, padded to the largest orbital count."""

    def __init__(self, norb: np.ndarray):
        self.nmax = int(norb.max())
        start = np.concatenate([[0], np.cumsum(norb)[:-1]])
        # padded with the last valid index; padded entries are zeroed by ``valid``
        self.idx = start[:, None] + np.minimum(np.arange(self.nmax)[None, :], norb[:, None] - 1)
        self.valid = np.arange(self.nmax)[None, :] < norb[:, None]

    def gather(self, matrix: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Blocks matrix[orbitals of i, orbitals of j], (P, nmax, nmax), zero where padded."""
        mask = self.valid[i][:, :, None] & self.valid[j][:, None, :]
        return np.where(mask, matrix[self.idx[i][:, :, None], self.idx[j][:, None, :]], 0.0)
