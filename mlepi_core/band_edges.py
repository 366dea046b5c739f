"""The band gap of a sample: the supercell's band edges at the pristine edges' k.

For a gapped layered material (hBN, MoS2, ...) the observable is the gap, as v_F is for
graphene (docs/physics.md#the-band-gap). The undisplaced lattice's valence-band maximum
and conduction-band minimum are found by unfolding: the top valence and the bottom
conduction level with weight at a primitive k. The k searched are every primitive
wavevector that folds onto the supercell k of Gamma, K or M: those points and the
supercell's reciprocal lattice vectors added to them (for an N x N supercell, the N x N
commensurate grid through Gamma, which holds K and M when 3 and 2 divide N, and MoS2's
conduction valley Q, half-way from Gamma to K, when 6 does). Every state the supercell has
at those k unfolds onto them, so the pristine edges are the extreme levels there, wherever
they lie. A sample's valence edge is the mean of its g_v highest occupied eigenvalues at the
VBM's k (a supercell k-point),

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
zero-point renormalisation). An edge between the commensurate k (e.g. a valley off the
grid of a small supercell) is found at the nearest of them: a finite-size error that a
larger supercell removes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from ase import Atoms

from .electrons import BlockTensors, Unfolder, bloch_pair, solve_generalized
from .seams import Blocks

GAPPED_EV = 0.1  # a pristine fundamental gap above this makes the gap the run's observable
POINTS = ("Γ", "K", "M")
DEGENERATE_EV = 1e-5  # pristine states closer than this are one level


def high_symmetry_points(primitive_cell: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """Labels and fractional k (of the primitive reciprocal vectors) of Gamma, K and M of a
    hexagonal primitive cell."""
    from .phonons import hexagonal_path

    frac = dict(hexagonal_path(primitive_cell))
    return POINTS, np.array([frac[p] for p in POINTS])


def point_label(frac: np.ndarray, primitive_cell: np.ndarray) -> str:
    """Γ, K, K′ or M for a fractional in-plane k equivalent to one of them, else "(a, b)" in
    fractions of the primitive reciprocal vectors, reduced to [0, 1)."""
    from fractions import Fraction

    from .phonons import hexagonal_path

    named = dict(hexagonal_path(primitive_cell))
    f = np.mod(np.asarray(frac, dtype=float)[:2], 1.0)

    def same(a, b):
        d = np.mod(a - b + 0.5, 1.0) - 0.5
        return bool(np.all(np.abs(d) < 1e-6))

    k = named["K"][:2]
    for label, point in (("Γ", np.zeros(2)), ("K", k), ("K′", -k), ("M", np.array([0.5, 0.0])),
                         ("M", np.array([0.0, 0.5])), ("M", np.array([0.5, 0.5]))):
        if same(f, point):
            return label
    return "(" + ", ".join(str(Fraction(float(x)).limit_denominator(1000)) for x in f) + ")"


def commensurate_points(primitive_cell: np.ndarray, supercell: np.ndarray,
                        base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P, 3) fractional primitive k: each of ``base`` (B, 3) plus every reciprocal lattice
    vector of ``supercell`` (the N of them that differ modulo the primitive reciprocal
    lattice), base points first, the first of any two equivalent points kept; and (P,) the
    base point each folds onto (its supercell k)."""
    prim, sc = np.asarray(primitive_cell, dtype=float), np.asarray(supercell, dtype=float)
    to_frac = (np.linalg.inv(sc).T @ prim.T).T  # rows: the supercell's b_i in primitive fractions
    n = int(round(abs(np.linalg.det(sc[:2, :2]) / np.linalg.det(prim[:2, :2]))))
    span = range(-n, n + 1)
    g = np.array([a * to_frac[0] + b * to_frac[1] for a in span for b in span])
    g = np.unique(np.round(np.mod(g, 1.0), 9) % 1.0, axis=0)

    def equivalent(a, b):
        return bool(np.all(np.abs(np.mod(a - b + 0.5, 1.0) - 0.5) < 1e-6))

    # base points that differ by a supercell reciprocal vector share a supercell k: the first's
    fold = [next(c for c in range(b + 1) if any(equivalent(base[b] - base[c], q) for q in g))
            for b in range(len(base))]
    points = [(fold[b], np.asarray(p, dtype=float)) for b, p in enumerate(base)]
    points += [(fold[b], p + q) for b, p in enumerate(base) for q in g]
    kept: list[tuple[int, np.ndarray]] = []
    for b, p in points:
        if not any(equivalent(p, q) for _, q in kept):
            kept.append((b, p))
    return np.array([p for _, p in kept]), np.array([b for b, _ in kept])


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
        _, base = high_symmetry_points(self.primitive.cell)
        frac, self.base_of = commensurate_points(self.primitive.cell, self.ideal.cell, base)
        recip = 2 * np.pi * np.linalg.inv(np.asarray(self.primitive.cell)).T
        self.k_cart, self.base_cart = frac @ recip, base @ recip
        self.labels = tuple(point_label(f, self.primitive.cell) for f in frac)

    def prepare(self, pristine: Blocks) -> "GapProbe":
        """The pristine edges, where they are, their degeneracies, and the static gap."""
        e, w = self._states(pristine, weights=True)
        self.mid = 0.5 * (e[:, self.n_occupied - 1].max() + e[:, self.n_occupied].min())
        levels = [self._levels(ek, wk) for ek, wk in zip(e, w)]  # per k: (valence, conduction) levels
        top = np.array([v[-1] if len(v) else -np.inf for v, _ in levels])
        bottom = np.array([c[0] if len(c) else np.inf for _, c in levels])
        # the first of equal edges: Γ, K and M before the other points
        self.k_v = int(np.flatnonzero(top > top.max() - DEGENERATE_EV)[0])
        self.k_c = int(np.flatnonzero(bottom < bottom.min() + DEGENERATE_EV)[0])
        vbm, cbm = top[self.k_v], bottom[self.k_c]
        n = self.n_occupied
        if e[self.k_v, n - 1] > vbm + DEGENERATE_EV or e[self.k_c, n] < cbm - DEGENERATE_EV:
            raise ValueError("a state of the supercell lies beyond the band edges found by unfolding "
                             f"(highest occupied {e[self.k_v, n - 1]:.4f} eV, VBM {vbm:.4f} eV; lowest empty "
                             f"{e[self.k_c, n]:.4f} eV, CBM {cbm:.4f} eV): is the cell a supercell of the primitive one?")
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
        return present[present < self.mid], present[present > self.mid]

    def _states(self, blocks: Blocks | BlockTensors, weights: bool = False, points=None):
        """Energies (K, M) of all states at the probe's k (``points``: indices of some of
        them), and with ``weights`` their unfolded weights (K, M). The states of the points
        that fold onto one supercell k come from one solve at their base point."""
        bt = blocks if isinstance(blocks, BlockTensors) else BlockTensors.from_blocks(
            blocks, self.ideal.positions, self.ideal.cell, device=self.device)
        points = np.arange(len(self.k_cart)) if points is None else np.asarray(points)
        bases = np.unique(self.base_of[points])
        k = torch.as_tensor(self.base_cart[bases], device=self.device)
        h, s = bloch_pair(bt, k)
        e, c, _ = solve_generalized(h, s)
        row = {b: r for r, b in enumerate(bases)}
        rows = np.array([row[b] for b in self.base_of[points]])
        energies = e.cpu().numpy()[rows]
        if not weights:
            return energies
        g = self.k_cart[points] - self.base_cart[self.base_of[points]]
        w = self.unfolder.weights(c, s, g, k_index=rows)  # (P, nb): each point with its base's states
        return energies, w.clamp(min=0.0).cpu().numpy()

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
                "vbm_at": self.labels[self.k_v], "cbm_at": self.labels[self.k_c], "direct": self.k_v == self.k_c}
