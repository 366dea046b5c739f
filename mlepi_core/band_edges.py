"""The band gap of a sample: the supercell's band edges at the pristine edges' k.

For a gapped layered material (hBN, MoS2, ...) the observable is the gap, as v_F is for
graphene (docs/physics.md#the-band-gap). The undisplaced lattice's valence-band maximum
and conduction-band minimum are found among the high-symmetry points of the primitive
cell (Gamma, K, M) by unfolding: the top valence and the bottom conduction level with
weight there. A sample's valence edge is the mean of its g_v highest occupied
eigenvalues at the VBM's k (a supercell k-point),

    E_v = (1/g_v) sum_{n = N_occ - g_v}^{N_occ - 1} E_n(k_v),

where g_v is the number of the pristine supercell's states in the VBM level at k_v (its
degeneracy, valleys that fold together included: 4 for an hBN bilayer's K in a 6x6 cell);
likewise E_c from the g_c lowest empty eigenvalues at the CBM's k. This is the frozen-phonon
band edge (Zacharias, Patrick & Giustino, PRL 115, 177401 (2015); Monserrat, J. Phys.:
Condens. Matter 30, 083001 (2018)): the displaced crystal's own edge states, whose energies
carry the level repulsion of the second-order (Fan) term as well as the Debye-Waller shift.
A first moment of the unfolded spectral weight over a window as wide as the gap's sides
would instead pick up the weight those states push outwards, and with it cancel most of
the Fan shift. Averaging over the g degenerate partners keeps E continuous under any
displacement: a sum of the extreme eigenvalues of a Hermitian pencil is. The gap is
E_c - E_v, direct when both edges lie at the same k; averaged over the thermal ensemble it
gives E_g(T), and minus the static lattice's value the renormalisation (at 0 K the
zero-point renormalisation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from ase import Atoms

from .electrons import BlockTensors, Unfolder, bloch_sum, solve_generalized
from .seams import Blocks

GAPPED_EV = 0.1  # a pristine fundamental gap above this makes the gap the run's observable
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
    the undisplaced supercell's blocks): the k-points, the edges' degeneracies, the static gap."""

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
        """The pristine edges, where they are, their degeneracies, and the static gap."""
        e, w = self._states(pristine, weights=True)
        self.mid = 0.5 * (e[:, self.n_occupied - 1].max() + e[:, self.n_occupied].min())
        levels = [self._levels(ek, wk) for ek, wk in zip(e, w)]  # per k: (valence, conduction) levels
        self.k_v = int(np.argmax([v[-1] for v, _ in levels]))
        self.k_c = int(np.argmin([c[0] for _, c in levels]))
        vbm, cbm = levels[self.k_v][0][-1], levels[self.k_c][1][0]
        n = self.n_occupied
        if e[self.k_v, n - 1] > vbm + DEGENERATE_EV or e[self.k_c, n] < cbm - DEGENERATE_EV:
            raise ValueError("the supercell's band edge lies at a k other than Gamma, K and M of the primitive "
                             f"cell (highest occupied {e[self.k_v, n - 1]:.4f} eV above the VBM {vbm:.4f} eV, or "
                             f"lowest empty {e[self.k_c, n]:.4f} eV below the CBM {cbm:.4f} eV): the gap probe "
                             "looks for edges only there")
        self.degeneracy = (int(np.sum(e[self.k_v, :n] > vbm - DEGENERATE_EV)),
                           int(np.sum(e[self.k_c, n:] < cbm + DEGENERATE_EV)))
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

    def _states(self, blocks: Blocks | BlockTensors, weights: bool = False, points=None):
        """Energies (K, M) of all states at the probe's k (``points``: indices of some of
        them), and with ``weights`` their unfolded weights (K, M)."""
        bt = blocks if isinstance(blocks, BlockTensors) else BlockTensors.from_blocks(
            blocks, self.ideal.positions, self.ideal.cell, device=self.device)
        k = torch.as_tensor(self.k_cart if points is None else self.k_cart[list(points)], device=self.device)
        h, s = bloch_sum(bt, k, "h"), bloch_sum(bt, k, "s")
        e, c, _ = solve_generalized(h, s)
        if not weights:
            return e.cpu().numpy()
        w = self.unfolder.weights(c, s, np.zeros((1, 3)))[:, 0]
        return e.cpu().numpy(), w.clamp(min=0.0).cpu().numpy()

    def edges(self, blocks: Blocks | BlockTensors) -> np.ndarray:
        """(E_v, E_c) in eV of one sample: the mean of its g_v highest occupied eigenvalues at
        the VBM's k and of its g_c lowest empty ones at the CBM's k."""
        points = sorted({self.k_v, self.k_c})  # a direct gap needs one solve
        e = dict(zip(points, self._states(blocks, points=points)))
        e_v, e_c = e[self.k_v], e[self.k_c]
        (g_v, g_c), n = self.degeneracy, self.n_occupied
        return np.array([e_v[n - g_v:n].mean(), e_c[n:n + g_c].mean()])

    def gaps(self, edges: np.ndarray) -> dict:
        """The gap (eV) from edges (E_v, E_c), where they are, and whether it is direct."""
        return {"gap": float(edges[1] - edges[0]), "vbm": float(edges[0]), "cbm": float(edges[1]),
                "vbm_at": POINTS[self.k_v], "cbm_at": POINTS[self.k_c], "direct": self.k_v == self.k_c}
