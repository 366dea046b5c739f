"""Periodic pair search that works at any cell size: a k-d tree over the atoms wrapped into
the cell plus the periodic images that lie within the cutoff of it.

vesin's cell list (``graph.py``) is faster, but when its grid would exceed 10^5 bins it
shrinks the grid and can round a direction down to zero bins, then divides by zero: an
integer divide trap (SIGFPE) that ends the process (``benchmarks/vesin_sigfpe_repro.py``).
``vesin_grid_is_safe`` tells when vesin never takes that path; ``periodic_pairs`` is the
search for everything else (the overlap check of ``structures.validate`` always uses it).
"""

from __future__ import annotations

from itertools import product
from typing import Sequence

import numpy as np

VESIN_MAX_BINS = 100_000  # vesin's MAX_NUMBER_OF_CELLS: above it, it shrinks (and may zero) its grid


def face_distances(cell: np.ndarray) -> np.ndarray:
    """Distances (Angstrom) between opposite faces of the cell spanned by the rows of ``cell``."""
    reciprocal = np.linalg.inv(np.asarray(cell, dtype=float)).T
    return 1.0 / np.linalg.norm(reciprocal, axis=1)


def vesin_grid_is_safe(positions: np.ndarray, cell: np.ndarray, periodic: Sequence[bool],
                       cutoff: float) -> bool:
    """Whether vesin's cell list keeps its full grid (at most 10^5 bins of the cutoff's size)
    for these points, so that it cannot round a direction to zero bins and trap.

    Along a periodic direction vesin bins the cell's face distance; along an open one, the
    points' extent, which is over-estimated here by 2 Angstrom of padding (safe side)."""
    extent = np.ptp(np.asarray(positions, dtype=float), axis=0) + 2.0 if len(positions) else np.full(3, 2.0)
    spans = np.where(np.asarray(periodic, dtype=bool), face_distances(cell), extent)
    bins = np.maximum(np.floor(spans / cutoff), 1.0) + np.where(np.asarray(periodic), 0.0, 1.0)
    return float(np.prod(bins)) <= VESIN_MAX_BINS


def periodic_pairs(positions: np.ndarray, cell: np.ndarray, periodic: Sequence[bool], cutoff: float,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every ordered pair (i, j, shift, distance) with |x_j + shift . cell - x_i| < cutoff.

    Same convention as vesin's full list (``quantities="ijSd"``): ``shift`` (P, 3) integer
    cells, distances in Angstrom, i == j only with a non-zero shift. Periodic along the
    directions flagged in ``periodic``, open along the others. Cost O(N log N) in time and
    O(N + pairs) in memory; the cell must be non-singular.
    """
    pos = np.asarray(positions, dtype=float)
    cell = np.asarray(cell, dtype=float)
    per = np.asarray(periodic, dtype=bool)
    n = len(pos)
    if n == 0:
        return (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3), np.int64), np.zeros(0))
    from scipy.spatial import cKDTree

    frac = pos @ np.linalg.inv(cell)
    wrap = np.where(per, -np.floor(frac), 0.0)  # integer cells that bring each atom into the cell
    frac = frac + wrap
    inside = pos + wrap @ cell
    # Images of atom j by shift s matter only if some point of the cell is within the cutoff:
    # along each periodic direction its shifted fractional coordinate then lies in [-m, 1 + m].
    margin = cutoff / face_distances(cell)
    reach = [int(np.ceil(m)) if p else 0 for m, p in zip(margin, per)]
    image_pos, image_atom, image_shift = [inside], [np.arange(n)], [np.zeros((n, 3), dtype=np.int64)]
    for s in product(*(range(-r, r + 1) for r in reach)):
        if not any(s):
            continue
        f = frac + np.asarray(s, dtype=float)
        near = np.all((f >= -margin) & (f <= 1.0 + margin) | ~per, axis=1)
        idx = np.flatnonzero(near)
        image_pos.append(inside[idx] + np.asarray(s, dtype=float) @ cell)
        image_atom.append(idx)
        image_shift.append(np.broadcast_to(np.asarray(s, dtype=np.int64), (len(idx), 3)))
    image_pos = np.concatenate(image_pos)
    image_atom = np.concatenate(image_atom)
    image_shift = np.concatenate(image_shift)
    found = cKDTree(inside).sparse_distance_matrix(cKDTree(image_pos), cutoff, output_type="ndarray")
    i, k, d = found["i"].astype(np.int64), found["j"].astype(np.int64), found["v"]
    keep = (d < cutoff) & (k != i)  # k == i: the atom itself (images start at index n)
    i, k, d = i[keep], k[keep], d[keep]
    j = image_atom[k]
    # back to the caller's (unwrapped) positions: x_j + S.cell - x_i with S = s + w_j - w_i
    shift = image_shift[k] + wrap[j].astype(np.int64) - wrap[i].astype(np.int64)
    return i, j, shift, d
