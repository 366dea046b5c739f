"""The unfolded spectral function A(k, E) along the primitive path, per sample and averaged."""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms

from .electrons import BlockTensors, Unfolder, bloch_pair, solve_generalized


SOLVE_BYTES = 512 * 2 ** 20  # memory of the matrices of one chunk of a path's solves
MATRICES_PER_K = 8  # complex (M, M) arrays alive per folded k in a solve: H, S, vectors, temporaries


class SpectralMap:
    """The unfolded spectral function A(k, E) of a supercell along the primitive path
    Gamma-M-K-Gamma, for averaging over Monte Carlo samples (docs/physics.md#band-unfolding).

        A(k, E) = sum_n W_n(k) g(E - E_n(k)),   g a normalised Gaussian of width ``broadening``

    with W the unfolded weights (Unfolder). Any primitive k folds onto one supercell k, so
    ``points_per_segment`` evenly spaced points per segment cost one eigen-solve each (a band
    structure's resolution). With ``points_per_segment=0`` the path points are those on the
    (n x grid)-fold grid instead, each supercell k serving up to n^2 / grid^2 of them (6x6,
    grid 3: 19 points, 5 solves): a coarse, cheap picture. Solved in complex64 with the states
    in ``window`` (eV about E_F) alone: a picture with 50 meV broadening, not a measurement
    (v_F comes from BandProbe in float64).
    """

    def __init__(self, primitive: Atoms, ideal: Atoms, unfolder: Unfolder, e_fermi: float,
                 grid: int = 3, window: tuple[float, float] = (-3.0, 3.0), n_energies: int = 241,
                 broadening: float = 0.05, device: str | None = None, points_per_segment: int = 0):
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
            if points_per_segment:
                pts.extend(a + t * (b - a) for t in np.arange(points_per_segment) / points_per_segment)
                continue
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
        folded = np.round(frac - np.floor(frac), 9) % 1.0
        keys, self.fold_index = np.unique(folded, axis=0, return_inverse=True)
        self.fold_index = self.fold_index.reshape(-1)
        self.k_fold = keys @ (2 * np.pi * np.linalg.inv(sc_cell).T)  # (U, 3)
        self.g = self.k_cart - self.k_fold[self.fold_index]  # (P, 3)

    @property
    def n_solves(self) -> int:
        return len(self.k_fold)

    def spectral_function(self, bt: BlockTensors) -> np.ndarray:
        """A(k, E) (n_path, n_energies) in states/eV of one sample's blocks."""
        e_path, w_path, _ = self._path_states(bt)
        return np.einsum("pn,pne->pe", w_path, self._gaussians(e_path))

    def _path_states(self, bt: BlockTensors, orbital_layer: np.ndarray | None = None, n_layers: int = 0):
        """The complex64 solve of ``spectral_function``: energies (P, nb) eV about E_F and
        clamped weights (P, nb) along the path, and with ``orbital_layer`` the clamped layer
        parts (P, nb, n_layers) of the weights (``unfolded_layer_weights``), else None. The
        folded k-points are solved a chunk at a time, as many as SOLVE_BYTES holds (a 6x6 MoS2
        bilayer's 1,944 orbitals take 60 MB per complex matrix); states past a k-point's own
        count carry weight 0."""
        from .layers import unfolded_layer_weights

        lo, hi = self.e_fermi + self.window[0] - 4 * self.broadening, self.e_fermi + self.window[1] + 4 * self.broadening
        size = max(1, SOLVE_BYTES // (MATRICES_PER_K * 16 * bt.n_orbitals ** 2))
        found = []
        for start in range(0, len(self.k_fold), size):
            stop = min(start + size, len(self.k_fold))
            k = torch.as_tensor(self.k_fold[start:stop], device=bt.h.device)
            h, s = (x.to(torch.complex64) for x in bloch_pair(bt, k))
            e, c, inside = solve_generalized(h, s, window=(lo, hi))
            points = np.flatnonzero((self.fold_index >= start) & (self.fold_index < stop))
            local = self.fold_index[points] - start
            w = self.unfolder.weights(c, s, self.g[points], k_index=local) * inside[local]  # (p, nb)
            parts = None
            if orbital_layer is not None:
                parts = unfolded_layer_weights(self.unfolder, c, s, self.g[points], orbital_layer, n_layers,
                                               k_index=local) * inside[local][..., None]
                parts = parts.clamp(min=0.0).double().cpu().numpy()
            found.append((points, (e[local] - self.e_fermi).double().cpu().numpy(),
                          w.clamp(min=0.0).double().cpu().numpy(), parts))
        nb = max(part[1].shape[1] for part in found)
        n = len(self.fold_index)
        e_path, w_path = np.full((n, nb), hi - self.e_fermi), np.zeros((n, nb))
        layer_parts = np.zeros((n, nb, n_layers)) if orbital_layer is not None else None
        for points, e, w, parts in found:
            e_path[points, :e.shape[1]], w_path[points, :w.shape[1]] = e, w
            if parts is not None:
                layer_parts[points, :parts.shape[1]] = parts
        return e_path, w_path, layer_parts

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
        e_path, w_path, parts = self._path_states(bt, orbital_layer, n_layers)  # parts (P, nb, L)
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
        h, s = (x.to(torch.complex128) for x in bloch_pair(bt, k))
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


def spectral_peaks(spectral: np.ndarray, energies: np.ndarray, distances: np.ndarray,
                   rel: float = 0.15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quasiparticle peaks of A(k, E) (n_k, n_E): the local maxima in E of each column above
    ``rel`` of the largest value, with their half widths at half maximum (eV, linear
    interpolation; includes the 50 meV broadening). A peak whose half maximum lies beyond
    the energy window on either side has no measurable width and is left out. Returns flat
    (k, E, HWHM) arrays."""
    a = np.asarray(spectral, dtype=float)
    e = np.asarray(energies, dtype=float)
    inner = (a[:, 1:-1] > a[:, :-2]) & (a[:, 1:-1] >= a[:, 2:]) & (a[:, 1:-1] > rel * a.max())
    ik, ie = np.nonzero(inner)
    ie = ie + 1
    half = a[ik, ie] / 2
    widths, closed = [], np.ones(len(ie), dtype=bool)
    for sign in (-1, 1):  # walk down each side to half maximum (vectorised over peaks)
        j = ie.copy()
        alive = np.ones(len(j), dtype=bool)
        while alive.any():
            nxt = j + sign
            ok = alive & (nxt >= 0) & (nxt < len(e))
            ok[ok] &= a[ik[ok], nxt[ok]] > half[ok]
            j[ok] = nxt[ok]
            alive = ok
        nxt = np.clip(j + sign, 0, len(e) - 1)
        closed &= a[ik, nxt] <= half
        y0, y1 = a[ik, j], a[ik, nxt]
        t = np.where(y0 != y1, (y0 - half) / np.where(y0 != y1, y0 - y1, 1.0), 0.0)
        widths.append(np.abs(e[j] + t * (e[nxt] - e[j]) - e[ie]))
    hwhm = 0.5 * (widths[0] + widths[1])
    return np.asarray(distances)[ik][closed], e[ie][closed], hwhm[closed]
