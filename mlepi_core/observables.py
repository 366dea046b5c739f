"""Observables of a sample: band energies near K, the Fermi velocity, running statistics.

The Fermi velocity (DESIGN.md section 10) is one function used everywhere:
band energies at primitive k = K + q e for q in ``q_values`` (1/A, 0.3-0.5 eV from
E_F) and directions e around K, taken as first moments of the unfolded spectral
weight in windows around the undisplaced lattice's bands; v_F is (1/hbar) x the mean
least-squares slope |dE/dq| of the bands near E_F (electron and hole branches, both
valleys). It is insensitive to the spurious gap that commensurate K-point phonons
open at K itself. Time reversal (real H(R)) gives E(K + q e) = E(K' - q e), and K'
comes from the same supercell k when K' - K is a supercell reciprocal vector
(n x n with 3 | n), so each direction solved at K also gives the opposite one.

Directions: DESIGN.md averages 12 (every 30 degrees). We solve 0 and 90 degrees,
which with K' give 0, 90, 180 and 270: modulo the 120-degree rotation about K these
are 0, 90, 60 and 30 degrees, one direction of each class of the twelve. A band
energy at K + q e_theta, averaged over the thermal ensemble (which has the lattice's
C3 symmetry), depends on theta modulo 120 degrees only, so the expected v_F is the
12-direction one exactly, and on the undisplaced lattice the two agree to rounding
(tests/test_observables.py). Per sample the four directions scatter as much as twelve
in a 6x6 AB cell at 300 K (sd ratio 0.97, 16 samples), for a third of the eigen-solves;
in a 3x3 cell, where a sample breaks the symmetry far more, 1.7x as much (200 samples),
which there costs about what the fewer solves save (benchmarks/direction_spread.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from ase import Atoms
from scipy.optimize import least_squares

from .electrons import BlockTensors, Unfolder, bloch_sum, solve_generalized, solve_near
from .seams import Blocks
from .units import VELOCITY_1E6_M_PER_S_PER_EV_A

Q_VALUES = (0.06, 0.08, 0.10)  # 1/A
DIRECTIONS_DEG = (0, 90)  # with K': 0, 90, 180, 270 degrees, one of each C3 class of the 12
# The band fits converge to rounding, not to scipy's default 1e-8: stopped at that
# tolerance, gamma_1 moved by 1.7e-9 eV when the bands moved by 1e-15 (another batch size).
# Their Jacobians are analytic: with scipy's finite differences (errors ~ sqrt(eps)) the
# stopping point still moved by 1e-9 - 1e-8 eV with the bands at 1e-14.
FIT_TOLERANCES = {"xtol": 1e-15, "ftol": 1e-15, "gtol": 1e-15}
# Even so the stopping point is set by rounding: on displaced 3x3 cells, bands moved by
# 1e-14 eV moved gamma_1 by up to 9e-9 eV, and a resumed run's gamma_1 differed from the
# straight run's by 1.05e-9 eV (tests/test_observables.py keeps such fits within this bound).
# gamma_1 of the same sample computed twice agrees to this, not better.
GAMMA1_FIT_PRECISION_EV = 1e-7


def valley_points(primitive_cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cartesian K and K' (1/A) of a hexagonal primitive cell (K' = -K modulo G)."""
    from .phonons import hexagonal_path

    k_frac = dict(hexagonal_path(primitive_cell))["K"]
    recip = 2 * np.pi * np.linalg.inv(np.asarray(primitive_cell)).T
    return k_frac @ recip, -k_frac @ recip


def valley_band_moments(e: np.ndarray, w: np.ndarray, e_fermi: float, n_bands: int) -> np.ndarray:
    """First moments of the unfolded weight in windows around each valley's bands.

    ``e`` (K, n) are the states nearest E_F at each k, ``w`` (K, 2, n) their unfolded weight
    on each valley. The window centres are the states carrying most of the valley's weight
    (the quasiparticle peaks; a sample shifts them by tens of meV, e.g. strain moves the two
    valleys' Dirac points apart, so fixed pristine windows would not do), n_bands / 2 below
    E_F and n_bands / 2 above it: near K the bands keep their side of E_F (here 0.2 eV or
    more away), while a band's weight may split between two nearly degenerate states of a
    displaced cell (two of ~0.5 each), and picking the heaviest states regardless of side
    then took a second centre from the other side's pair and the band from the wrong side.
    Windows end half-way to the neighbouring centre (at least 0.1 eV outwards). Returns
    (K, 2, n_bands) in eV.
    """
    half = n_bands // 2
    below = np.broadcast_to(e[:, None, :] < e_fermi, w.shape)
    w_below, w_above = np.where(below, w, -1.0), np.where(below, -1.0, w)
    top = np.concatenate([np.argsort(-w_below, axis=-1)[..., :half],
                          np.argsort(-w_above, axis=-1)[..., :n_bands - half]], -1)
    # fewer than half of the states on one side (not seen): the heaviest states, any side
    lopsided = (below.sum(-1) < half) | ((~below).sum(-1) < n_bands - half)
    top = np.where(lopsided[..., None], np.argsort(-w, axis=-1)[..., :n_bands], top)
    centres = np.sort(np.take_along_axis(np.broadcast_to(e[:, None, :], w.shape), top, -1), -1)
    mid = 0.5 * (centres[..., 1:] + centres[..., :-1])
    lower = np.concatenate([centres[..., :1] - np.maximum(mid[..., :1] - centres[..., :1], 0.1), mid], -1)
    upper = np.concatenate([mid, centres[..., -1:] + np.maximum(centres[..., -1:] - mid[..., -1:], 0.1)], -1)
    inside = (e[:, None, None, :] >= lower[..., None]) & (e[:, None, None, :] < upper[..., None])
    wb = w[:, :, None, :] * inside  # (K, 2, n_bands, n)
    return (wb * e[:, None, None, :]).sum(-1) / wb.sum(-1)


@dataclass
class BandProbe:
    """Everything the Fermi-velocity measurement needs that does not depend on the sample.

    Built once from the undisplaced supercell's blocks: the k-points, the unfolder, the
    pristine band energies per (k, valley) that define the windows, the pristine
    eigenvectors that warm-start every sample's solve, and the static v_F.
    """

    primitive: Atoms
    ideal: Atoms
    n_bands: int  # bands followed per valley: 4 (bilayer), 2 (monolayer)
    q_values: tuple[float, ...] = Q_VALUES
    directions_deg: tuple[int, ...] = DIRECTIONS_DEG
    device: str | None = None
    # residual tolerance of the eigen-solve (eV): eigenvalue errors ~ tol^2 / gap, about
    # 1e-8 eV here (measured against full diagonalisation), far below any v_F change
    tol: float = 1e-4
    k_cart: np.ndarray = field(init=False)
    valley_g: np.ndarray = field(init=False)

    def __post_init__(self):
        k_valley, kp_valley = valley_points(self.primitive.cell)
        dirs = np.radians(np.asarray(self.directions_deg, dtype=float))
        e = np.column_stack([np.cos(dirs), np.sin(dirs), np.zeros_like(dirs)])
        # k[q, d] = K + q e_d ; grid (n_q, n_dir)
        self.k_cart = k_valley[None, None, :] + np.asarray(self.q_values)[:, None, None] * e[None]
        recip_sc = 2 * np.pi * np.linalg.inv(np.asarray(self.ideal.cell)).T
        shift = kp_valley - k_valley
        frac = np.linalg.solve(recip_sc.T, shift)
        if np.abs(frac - np.round(frac)).max() > 1e-6:
            raise ValueError("K' does not fold onto K in this supercell: use n x n with n a "
                             "multiple of 3 (6x6, 9x9, 12x12, ...)")
        self.valley_g = np.array([np.zeros(3), shift])  # weights on k and k + (K' - K)

    @property
    def n_k(self) -> int:
        return self.k_cart.shape[0] * self.k_cart.shape[1]

    def prepare(self, pristine: Blocks) -> "BandProbe":
        """Pristine bands, windows and warm-start vectors from the undisplaced lattice."""
        self.unfolder = Unfolder(self.primitive.cell, self.ideal.positions, self.ideal.cell,
                                 pristine.norb)
        electrons = pristine.meta.get("valence_electrons", self.valence_electrons(self.ideal))
        n_occ = int(round(electrons / 2))
        h, s = self._bloch(pristine)
        e, c, _ = solve_generalized(h, s)
        self.sigma = float(0.5 * (e[:, n_occ - 1].max() + e[:, n_occ].min()))
        self.n_states = 2 * self.n_bands  # both valleys' bands; the next levels are ~1 eV away
        self.guess = canonical_guess(e, c, self.sigma, self.n_states + 4)
        energies, vectors = solve_near(h, s, self.sigma, self.n_states, guess=self.guess, tol=self.tol)
        self.pristine_bands = self._moments(energies, self.unfolder.weights(vectors, s, self.valley_g))
        self.static = self.fermi_velocity(self.pristine_bands)
        return self

    @staticmethod
    def valence_electrons(atoms: Atoms) -> int:
        valence = {1: 1, 5: 3, 6: 4, 7: 5, 8: 6}
        return int(sum(valence[int(z)] for z in atoms.numbers))

    def fermi_level(self, pristine: Blocks) -> float:
        """E_F (eV) of undisplaced blocks on the ideal supercell, defined as in ``prepare``:
        mid-gap at the probe's k-points with the blocks' valence electrons (for another
        Hamiltonian model of the same lattice, e.g. a reference)."""
        electrons = pristine.meta.get("valence_electrons", self.valence_electrons(self.ideal))
        n_occ = int(round(electrons / 2))
        e, _, _ = solve_generalized(*self._bloch(pristine))
        return float(0.5 * (e[:, n_occ - 1].max() + e[:, n_occ].min()))

    def _bloch(self, blocks: Blocks | BlockTensors) -> tuple[torch.Tensor, torch.Tensor]:
        bt = blocks if isinstance(blocks, BlockTensors) else self.tensors(blocks)
        k = torch.as_tensor(self.k_cart.reshape(-1, 3), device=self.device)
        return bloch_sum(bt, k, "h"), bloch_sum(bt, k, "s")

    def tensors(self, blocks: Blocks) -> BlockTensors:
        """A sample's blocks on the device, in the atomic gauge of the ideal supercell."""
        return BlockTensors.from_blocks(blocks, self.ideal.positions, self.ideal.cell, device=self.device)

    def band_energies(self, blocks: Blocks | BlockTensors) -> np.ndarray:
        """Band energies (n_k, 2 valleys, n_bands) in eV of one sample (any blocks on the
        ideal supercell's atoms, displaced or not)."""
        t0 = time.perf_counter()
        h, s = self._bloch(blocks)
        t1 = time.perf_counter()
        e, c = solve_near(h, s, self.sigma, self.n_states, guess=self.guess, tol=self.tol)
        t2 = time.perf_counter()
        bands = self._moments(e, self.unfolder.weights(c, s, self.valley_g))
        self.last_seconds = {"bloch": t1 - t0, "eig": t2 - t1, "unfold": time.perf_counter() - t2}
        return bands

    def _moments(self, energies: torch.Tensor, weights: torch.Tensor) -> np.ndarray:
        """Band energies (K, 2, n_bands) of states ``energies`` (K, n) with unfolded
        ``weights`` (K, 2 valleys, n): ``valley_band_moments`` around E_F = ``sigma``."""
        return valley_band_moments(energies.cpu().numpy(), weights.clamp(min=0.0).cpu().numpy(),
                                   self.sigma, self.n_bands)

    def fermi_velocity(self, bands: np.ndarray) -> float:
        """v_F in 10^6 m/s from band energies (n_k, 2, n_bands): mean |least-squares slope|."""
        q = np.asarray(self.q_values)
        grid = bands.reshape(len(q), -1)  # (n_q, directions x valleys x bands)
        qc = q - q.mean()
        slopes = (qc[:, None] * (grid - grid.mean(axis=0))).sum(axis=0) / (qc ** 2).sum()
        return float(np.mean(np.abs(slopes)) * VELOCITY_1E6_M_PER_S_PER_EV_A)

    def four_band_fit(self, bands: np.ndarray) -> dict:
        """Bilayer: E = e0 + s1 g/2 + s2 sqrt(g^2/4 + (hbar v q)^2) -> v (10^6 m/s), gamma_1 (eV).
        Monolayer (2 bands): E = e0 +- sqrt(Delta^2 + (hbar v q)^2) -> v, gap 2 Delta (eV)."""
        sorted_b = np.sort(bands.reshape(len(self.q_values), -1, self.n_bands), axis=-1)
        y = sorted_b.reshape(-1)
        qq = np.repeat(np.asarray(self.q_values), sorted_b.shape[1] * self.n_bands)
        idx = np.tile(np.arange(self.n_bands), len(self.q_values) * sorted_b.shape[1])
        if self.n_bands == 4:
            # ascending: outer valence, inner valence, inner conduction, outer conduction
            s1 = np.array([-1.0, 1.0, -1.0, 1.0])[idx]
            s2 = np.array([-1.0, -1.0, 1.0, 1.0])[idx]

            def bilayer_bands(p):
                e0, hv, g = p
                return e0 + s1 * g / 2 + s2 * np.sqrt(g ** 2 / 4 + (hv * qq) ** 2)

            def jacobian(p):
                e0, hv, g = p
                r = np.sqrt(g ** 2 / 4 + (hv * qq) ** 2)
                return np.column_stack([np.ones_like(qq), s2 * hv * qq ** 2 / r, s1 / 2 + s2 * g / (4 * r)])
            fit = least_squares(lambda p: bilayer_bands(p) - y, x0=[np.mean(y), 5.0, 0.3], jac=jacobian,
                                **FIT_TOLERANCES)
            e0, hv, g = fit.x
            return {"v_1e6_m_per_s": float(abs(hv) * VELOCITY_1E6_M_PER_S_PER_EV_A),
                    "gamma1_ev": float(abs(g)), "e0_ev": float(e0)}
        sign = np.where(idx == 0, -1.0, 1.0)

        def dirac_bands(p):
            e0, hv, d = p
            return e0 + sign * np.sqrt(d ** 2 + (hv * qq) ** 2)

        def dirac_jacobian(p):
            e0, hv, d = p
            r = np.sqrt(d ** 2 + (hv * qq) ** 2)
            return np.column_stack([np.ones_like(qq), sign * hv * qq ** 2 / r, sign * d / r])
        fit = least_squares(lambda p: dirac_bands(p) - y, x0=[np.mean(y), 5.0, 0.01], jac=dirac_jacobian,
                            **FIT_TOLERANCES)
        e0, hv, d = fit.x
        return {"v_1e6_m_per_s": float(abs(hv) * VELOCITY_1E6_M_PER_S_PER_EV_A),
                "gap_ev": float(2 * abs(d)), "e0_ev": float(e0)}


class SpectralMap:
    """The unfolded spectral function A(k, E) of a supercell along the primitive path
    Gamma-M-K-Gamma, for averaging over Monte Carlo samples (DESIGN.md section 10).

        A(k, E) = sum_n W_n(k) g(E - E_n(k)),   g a normalised Gaussian of width ``broadening``

    with W the unfolded weights (Unfolder). The path points are the primitive k on the
    (n x grid)-fold grid that lie on the path: with the n x n supercell, each folds onto
    one of grid^2 supercell k-points, so one eigen-solve serves up to n^2 / grid^2 path
    points (6x6, grid 3: 19 points, 9 solves). Solved in complex64 with all states in
    ``window`` (eV about E_F): a picture with 50 meV broadening, not a measurement (v_F
    comes from BandProbe in float64).
    """

    def __init__(self, primitive: Atoms, ideal: Atoms, unfolder: Unfolder, e_fermi: float,
                 grid: int = 3, window: tuple[float, float] = (-3.0, 3.0), n_energies: int = 241,
                 broadening: float = 0.05, device: str | None = None):
        from .phonons import hexagonal_path

        self.unfolder, self.e_fermi, self.device = unfolder, float(e_fermi), device
        self.window, self.broadening = window, float(broadening)
        self.energies = np.linspace(window[0], window[1], n_energies)  # eV, relative to E_F
        n = int(round(np.sqrt(unfolder.n_cells)))
        size = n * grid
        path = hexagonal_path(primitive.cell)
        pts, labels, label_index = [], [], []
        for (name_a, a), (_, b) in zip(path[:-1], path[1:]):
            labels.append(name_a)
            label_index.append(len(pts))
            for t in np.linspace(0.0, 1.0, 2 * size + 1)[:-1]:
                f = a + t * (b - a)
                if np.abs(f[:2] * size - np.round(f[:2] * size)).max() < 1e-8:
                    pts.append(f)
        labels.append(path[-1][0])
        label_index.append(len(pts))
        pts.append(path[-1][1])
        recip = 2 * np.pi * np.linalg.inv(np.asarray(primitive.cell)).T
        self.k_cart = np.array(pts) @ recip  # (P, 3)
        steps = np.linalg.norm(np.diff(self.k_cart, axis=0), axis=1)
        self.distances = np.concatenate([[0.0], np.cumsum(steps)])
        self.labels = labels
        self.label_distances = self.distances[label_index]
        # fold each path point onto the supercell zone: k = k_fold + g, g a supercell G vector
        sc_cell = np.asarray(ideal.cell)
        frac = self.k_cart @ sc_cell.T / (2 * np.pi)
        folded = np.round(frac - np.round(frac), 8) % 1.0
        keys, self.fold_index = np.unique(np.round(folded * size).astype(int) % size, axis=0,
                                          return_inverse=True)
        self.fold_index = self.fold_index.reshape(-1)
        self.k_fold = (keys / size) @ (2 * np.pi * np.linalg.inv(sc_cell).T)  # (U, 3)
        self.g = self.k_cart - self.k_fold[self.fold_index]  # (P, 3)

    @property
    def n_solves(self) -> int:
        return len(self.k_fold)

    def spectral_function(self, bt: BlockTensors) -> np.ndarray:
        """A(k, E) (n_path, n_energies) in states/eV of one sample's blocks."""
        e_path, w_path, _ = self._path_states(bt)
        return np.einsum("pn,pne->pe", w_path, self._gaussians(e_path))

    def _path_states(self, bt: BlockTensors):
        """The complex64 solve of ``spectral_function``: energies (P, nb) eV about E_F and
        clamped weights (P, nb) along the path, and (c, s, inside) at the folded k-points."""
        k = torch.as_tensor(self.k_fold, device=bt.h.device)
        h = bloch_sum(bt, k, "h").to(torch.complex64)
        s = bloch_sum(bt, k, "s").to(torch.complex64)
        lo, hi = self.e_fermi + self.window[0] - 4 * self.broadening, self.e_fermi + self.window[1] + 4 * self.broadening
        e, c, inside = solve_generalized(h, s, window=(lo, hi))
        w = self.unfolder.weights(c, s, self.g)  # (U, P, nb)
        p = np.arange(len(self.g))
        w_path = (w[self.fold_index, p] * inside[self.fold_index]).clamp(min=0.0).double().cpu().numpy()
        e_path = (e[self.fold_index] - self.e_fermi).double().cpu().numpy()  # (P, nb)
        return e_path, w_path, (c, s, inside)

    def _gaussians(self, e_path: np.ndarray) -> np.ndarray:
        """g(E - E_n(k)) (P, nb, n_energies) in 1/eV for energies ``e_path`` (P, nb) about E_F."""
        x = (self.energies[None, None, :] - e_path[:, :, None]) / self.broadening
        return np.exp(-0.5 * x ** 2) / (np.sqrt(2 * np.pi) * self.broadening)

    def layer_spectral_function(self, bt: BlockTensors, orbital_layer: np.ndarray, n_layers: int,
                                return_total: bool = False):
        """Layer-projected A_L(k, E) (n_layers, n_path, n_energies) in states/eV, with
        sum_L A_L = ``spectral_function(bt)`` to rounding (and, with ``return_total``, that
        A itself from the same solve, bit for bit equal to ``spectral_function``'s).

        The unfolding weight W_n(k) is a sum over orbitals m; its layer part W_nL keeps the
        orbitals of layer L (``mlepi_core.layers.unfolded_layer_weights``). A shows the
        clamped total max(W_n, 0), so each state's shown weight is shared in proportion to
        its clamped layer parts: w_nL = max(W_n, 0) max(W_nL, 0) / sum_L' max(W_nL', 0)
        (equally if no part is positive). With S = 1 the parts are >= 0 and w_nL = W_nL.
        ``orbital_layer`` (M,): the layer of each orbital (``mlepi_core.layers.orbital_layers``).
        """
        from .layers import unfolded_layer_weights

        e_path, w_path, (c, s, inside) = self._path_states(bt)
        parts = unfolded_layer_weights(self.unfolder, c, s, self.g, orbital_layer, n_layers,
                                       k_index=self.fold_index)  # (P, nb, L)
        parts = (parts * inside[self.fold_index][..., None]).clamp(min=0.0).double().cpu().numpy()
        norm = parts.sum(axis=-1, keepdims=True)
        share = np.where(norm > 0, parts / np.where(norm > 0, norm, 1.0), 1.0 / n_layers)
        gauss = self._gaussians(e_path)
        layers = np.einsum("pnl,pne->lpe", w_path[..., None] * share, gauss)
        if return_total:
            return np.einsum("pn,pne->pe", w_path, gauss), layers
        return layers

    def unfolded_bands(self, bt: BlockTensors, e_fermi: float | None = None,
                       window: tuple[float, float] | None = None) -> dict:
        """Unfolded bands along the path in float64 (complex128 solve): for each path point
        every state n whose band index lies in the contiguous range holding all states
        within ``window`` (eV about ``e_fermi``; default the map's window widened by 4
        broadenings) at some folded k.

        Returns {"energies_ev": (P, nb) about ``e_fermi`` (default the map's E_F),
        "weights": (P, nb) unfolded weights W_n(k) (not clamped), "band_index": (nb,) index
        of each column among all states of the supercell, ascending energy}. For checks
        of a sample against a reference (Fig. 4d of the MLEPI paper), not for averaging.
        """
        from .layers import unfolded_layer_weights

        ef = self.e_fermi if e_fermi is None else float(e_fermi)
        if window is None:
            window = (self.window[0] - 4 * self.broadening, self.window[1] + 4 * self.broadening)
        k = torch.as_tensor(self.k_fold, device=bt.h.device)
        h = bloch_sum(bt, k, "h").to(torch.complex128)
        s = bloch_sum(bt, k, "s").to(torch.complex128)
        e, c, _ = solve_generalized(h, s)
        inside = (e >= ef + window[0]) & (e <= ef + window[1])
        lo = int(inside.float().argmax(dim=1).min())
        hi = int((inside.shape[1] - inside.flip(1).float().argmax(dim=1)).max())
        e, c = e[:, lo:hi], c[:, :, lo:hi]
        zeros = np.zeros(bt.n_orbitals, dtype=int)
        w = unfolded_layer_weights(self.unfolder, c, s, self.g, zeros, 1, k_index=self.fold_index)[..., 0]
        return {"energies_ev": (e[self.fold_index] - ef).cpu().numpy(), "weights": w.cpu().numpy(),
                "band_index": np.arange(lo, hi)}

    def spectrum_from_bands(self, energies_ev: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """A(k, E) (n_path, n_energies) in states/eV from ``unfolded_bands``' energies (eV about
        E_F) and weights: as ``spectral_function`` (weights clamped at 0, states within the
        window widened by 4 broadenings), from the float64 solve."""
        pad = 4 * self.broadening
        keep = (energies_ev >= self.window[0] - pad) & (energies_ev <= self.window[1] + pad)
        w = np.where(keep, np.clip(weights, 0.0, None), 0.0)
        return np.einsum("pn,pne->pe", w, self._gaussians(energies_ev))


def canonical_guess(energies: torch.Tensor, vectors: torch.Tensor, sigma: float, count: int,
                    tol_ev: float = 1e-6) -> torch.Tensor:
    """Warm-start vectors for ``solve_near`` that depend only on the eigen-*space* of the
    ``count`` states closest to ``sigma`` (per k), not on how LAPACK rotated degenerate
    eigenvectors (which can differ between processes).

    The block is V V^H R, the projection of fixed random vectors R on the space V spans
    (V -> V U leaves it unchanged), and the cut at ``count`` moves forward (columns
    zeroed; ``solve_near`` fills them at random) where it would split states equally far
    from ``sigma`` (degenerate, or mirrored about it), whose span would be arbitrary. So
    every engine, wherever it is built, starts its samples' iterations from the same block.
    """
    n_k, m, _ = vectors.shape
    dist, order = torch.sort((energies - sigma).abs(), dim=1)
    v = torch.gather(vectors, 2, order[:, None, :count].expand(-1, m, -1))
    col = torch.arange(count, device=vectors.device)
    clean = (dist[:, 1:count + 1] - dist[:, :count]) > tol_ev  # [:, g - 1]: a cut after column g - 1
    cut = torch.where(clean, col[None, :] + 1, torch.zeros_like(col)[None, :]).amax(dim=1)  # (K,)
    keep = (col[None, :] < cut[:, None])[:, None, :]  # (K, 1, count)
    v = torch.where(keep, v, torch.zeros_like(v))
    gen = torch.Generator().manual_seed(12345)
    r = torch.randn(m, count, generator=gen, dtype=torch.float64).to(device=vectors.device, dtype=vectors.dtype)
    x = v @ (v.mH @ r)
    return torch.where(keep, x, torch.zeros_like(x))


@dataclass
class RunningStats:
    """Mean and standard error of a stream of values, mergeable (Chan et al.'s parallel formula)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: float) -> "RunningStats":
        return self.merge(RunningStats(1, float(x), 0.0))

    def merge(self, other: "RunningStats") -> "RunningStats":
        n = self.n + other.n
        if n == 0:
            return self
        delta = other.mean - self.mean
        self.mean += delta * other.n / n
        self.m2 += other.m2 + delta ** 2 * self.n * other.n / n
        self.n = n
        return self

    @property
    def std_error(self) -> float:
        return float(np.sqrt(self.m2 / (self.n - 1) / self.n)) if self.n > 1 else float("nan")


def running_error(values: np.ndarray) -> np.ndarray:
    """Standard error of the mean of the first m values, m = 1 .. len (NaN for m = 1): Fig. 4e."""
    v = np.asarray(values, dtype=float)
    m = np.arange(1, len(v) + 1)
    mean = np.cumsum(v) / m
    var = (np.cumsum(v ** 2) - m * mean ** 2) / np.maximum(m - 1, 1)
    return np.where(m > 1, np.sqrt(np.maximum(var, 0.0) / m), np.nan)
