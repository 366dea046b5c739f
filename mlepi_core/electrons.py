"""From real-space blocks to bands: H(k), S(k) and the generalized eigenproblem.

Bloch sums use the lattice-vector (cell) gauge of DeepH:
H_{ia, jb}(k) = sum_R H_ij(R)_{ab} exp(2 pi i k_frac . R), with k in fractional
coordinates of the reciprocal lattice of the structure's own cell.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sl

from .seams import Blocks


def bloch_matrices(blocks: Blocks, k_frac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """H(k) (eV) and S(k) for fractional k-points ``k_frac`` (K, 3): arrays (K, M, M)."""
    k_frac = np.atleast_2d(np.asarray(k_frac, dtype=float))
    phase = np.exp(2j * np.pi * (k_frac @ blocks.R.T))  # (K, P)
    m = blocks.n_orbitals
    nmax = blocks.h.shape[1]
    start = blocks.offsets()
    idx = start[:, None] + np.minimum(np.arange(nmax)[None, :], blocks.norb[:, None] - 1)
    valid = np.arange(nmax)[None, :] < blocks.norb[:, None]
    mask = valid[blocks.i][:, :, None] & valid[blocks.j][:, None, :]
    rows = np.broadcast_to(idx[blocks.i][:, :, None], mask.shape)[mask]
    cols = np.broadcast_to(idx[blocks.j][:, None, :], mask.shape)[mask]
    flat = rows * m + cols
    out = []
    for x in (blocks.h, blocks.s):
        vals = phase[:, :, None, None] * x[None]  # (K, P, nmax, nmax)
        vals = vals[:, mask]  # (K, nnz), same order as rows/cols
        dense = np.stack([np.bincount(flat, v.real, m * m) + 1j * np.bincount(flat, v.imag, m * m)
                          for v in vals])  # loop over the few k-points only
        out.append(dense.reshape(len(k_frac), m, m))
    return out[0], out[1]


def solve_bands(h_k: np.ndarray, s_k: np.ndarray) -> np.ndarray:
    """Eigenvalues (K, M) in eV of H(k) c = E S(k) c for each k."""
    return np.stack([sl.eigh(h, s, eigvals_only=True) for h, s in zip(h_k, s_k)])
