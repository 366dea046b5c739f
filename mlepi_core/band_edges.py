"""The band gap of a sample: band edges of the unfolded spectral function.

For a gapped layered material (hBN, MoS2, ...) the observable is the gap, as v_F is for
graphene (docs/physics.md#the-band-gap). The undisplaced lattice's valence-band maximum
and conduction-band minimum are found among the high-symmetry points of the primitive
cell (Gamma, K, M). A sample's valence edge is the quasiparticle peak of the top valence
band at the VBM's k: the first moment of the unfolded spectral weight W_n(k) of the
sample's states in a window,

    E_v = sum_n W_n(k_v) E_n / sum_n W_n(k_v),   E_n in [E_v0 - w, mid-gap],

and likewise the conduction edge E_c at the CBM's k, in [mid-gap, E_c0 + w]. Outwards the
window reaches half-way to the next pristine level with weight at that k (at least
``MIN_HALF_WINDOW_EV``; ``LONE_HALF_WINDOW_EV`` where no further level has weight there);
inwards it reaches mid-gap: no pristine state of any k lies between the edges, so weight a
sample puts there belongs to the edge's broadened peak. A degenerate edge (hBN's K) is one
peak. The gap is E_c - E_v, direct when both edges lie at the same k; averaged over the
thermal ensemble it gives E_g(T), and minus the static lattice's value the renormalisation
(at 0 K the zero-point renormalisation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from ase import Atoms

from .electrons import BlockTensors, Unfolder, bloch_sum, solve_generalized
from .seams import Blocks

GAPPED_EV = 0.1  # a pristine fundamental gap above this makes the gap the run's observable
MIN_HALF_WINDOW_EV = 0.1  # eV, the least half-width of an edge's window
LONE_HALF_WINDOW_EV = 1.0  # eV, the half-width beyond an edge with no further band at its k
POINTS = ("Γ", "K", "M")
DEGENERATE_EV = 1e-5  # pristine states closer than this are one level


def high_symmetry_points(primitive_cell: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """Labels and Cartesian k (1/A) of Gamma, K and M of a hexagonal primitive cell."""
    from .phonons import hexagonal_path

    frac = dict(hexagonal_path(primitive_cell))
    recip = 2 * np.pi * np.linalg.inv(np.asarray(primitive_cell)).T
    return POINTS, np.array([frac[p] @ recip for p in POINTS])


@dataclass
class GapProbe:
    """What the gap measurement needs that does not depend on the sample (built once from
    the undisplaced supercell's blocks): the k-points, the windows, the static gap."""

    primitive: Atoms
    ideal: Atoms
    unfolder: Unfolder
    n_occupied: int  # doubly occupied bands of the supercell
    device: str | None = None
    labels: tuple[str, ...] = field(init=False)
    k_cart: np.ndarray = field(init=False)

    def __post_init__(self):
        self.labels, self.k_cart = high_symmetry_points(self.primitive.cell)

    def prepare(self, pristine: Blocks) -> "GapProbe":
        """The pristine edges, where they are, their windows, and the static gap."""
        e, w = self._states(pristine)
        self.mid = 0.5 * (e[:, self.n_occupied - 1].max() + e[:, self.n_occupied].min())
        levels = [self._levels(ek, wk) for ek, wk in zip(e, w)]  # per k: (valence, conduction) levels
        self.k_v = int(np.argmax([v[-1] for v, _ in levels]))
        self.k_c = int(np.argmin([c[0] for _, c in levels]))
        valence, conduction = levels[self.k_v][0], levels[self.k_c][1]
        half_v = max(MIN_HALF_WINDOW_EV, 0.5 * (valence[-1] - valence[-2]) if len(valence) > 1
                     else LONE_HALF_WINDOW_EV)
        half_c = max(MIN_HALF_WINDOW_EV, 0.5 * (conduction[1] - conduction[0]) if len(conduction) > 1
                     else LONE_HALF_WINDOW_EV)
        self.windows = np.array([[valence[-1] - half_v, self.mid], [self.mid, conduction[0] + half_c]])
        self.static = self.gaps(self.edges(pristine))
        return self

    def _levels(self, e: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The pristine levels with weight at one k (sorted, degenerate states merged), below
        and above mid-gap."""
        # a pristine level unfolds with weight 0 or 1 in all, which its degenerate states may share
        order = np.argsort(e)
        level = np.concatenate([[0], np.cumsum(np.diff(e[order]) > DEGENERATE_EV)])
        level_weight = np.bincount(level, weights=w[order])
        energy = np.bincount(level, weights=e[order]) / np.bincount(level)
        present = energy[level_weight > 0.5]
        valence, conduction = present[present < self.mid], present[present > self.mid]
        if not len(valence) or not len(conduction):
            raise ValueError("no band edge with weight at a high-symmetry point: is the cell a supercell "
                             "of the primitive one?")
        return valence, conduction

    def _states(self, blocks: Blocks | BlockTensors) -> tuple[np.ndarray, np.ndarray]:
        """Energies (K, n) and unfolded weights (K, n) of all states at the probe's k."""
        bt = blocks if isinstance(blocks, BlockTensors) else BlockTensors.from_blocks(
            blocks, self.ideal.positions, self.ideal.cell, device=self.device)
        k = torch.as_tensor(self.k_cart, device=self.device)
        h, s = bloch_sum(bt, k, "h"), bloch_sum(bt, k, "s")
        e, c, _ = solve_generalized(h, s)
        w = self.unfolder.weights(c, s, np.zeros((1, 3)))[:, 0]
        return e.cpu().numpy(), w.clamp(min=0.0).cpu().numpy()

    def edges(self, blocks: Blocks | BlockTensors) -> np.ndarray:
        """(E_v, E_c) in eV of one sample: first moments of the unfolded weight in the
        windows at the VBM's and the CBM's k (nan where a window holds no weight)."""
        e, w = self._states(blocks)
        out = np.empty(2)
        for edge, k in enumerate((self.k_v, self.k_c)):
            low, high = self.windows[edge]
            inside = (e[k] >= low) & (e[k] <= high)
            weight = (w[k] * inside).sum()
            out[edge] = (w[k] * inside * e[k]).sum() / weight if weight > 0 else float("nan")
        return out

    def gaps(self, edges: np.ndarray) -> dict:
        """The gap (eV) from edges (E_v, E_c), where they are, and whether it is direct."""
        return {"gap": float(edges[1] - edges[0]), "vbm": float(edges[0]), "cbm": float(edges[1]),
                "vbm_at": POINTS[self.k_v], "cbm_at": POINTS[self.k_c], "direct": self.k_v == self.k_c}
