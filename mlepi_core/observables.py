"""Observables of a sample: band energies near K and the Fermi velocity.

The Fermi velocity (docs/physics.md#the-fermi-velocity) is one function used everywhere:
band energies at primitive k = K + q e for q in ``q_values`` (1/A, 0.3-0.5 eV from
E_F) and directions e around K, taken as first moments of the unfolded spectral
weight in windows around the undisplaced lattice's bands; v_F is (1/hbar) x the mean
least-squares slope |dE/dq| of the bands near E_F (electron and hole branches, both
valleys). It is insensitive to the spurious gap that commensurate K-point phonons
open at K itself. Time reversal (real H(R)) gives E(K + q e) = E(K' - q e), and K'
comes from the same supercell k when K' - K is a supercell reciprocal vector
(n x n with 3 | n), so each direction solved at K also gives the opposite one.

Directions: the definition averages 12 (every 30 degrees). We solve 0 and 90 degrees,
which with K' give 0, 90, 180 and 270: modulo the 120-degree rotation about K these
are 0, 90, 60 and 30 degrees, one direction of each class of the twelve. A band
energy at K + q e_theta, averaged over the thermal ensemble (which has the lattice's
C3 symmetry), depends on theta modulo 120 degrees only, so the expected v_F is the
12-direction one exactly, and on the undisplaced lattice the two agree to rounding
(tests/test_observables.py). Per sample the four directions scatter as much as twelve,
for a third of the eigen-solves: sd ratio 0.95 in a 6x6 AB cell at 300 K (16 samples) and
1.01 in a 3x3 cell (200 samples), where a sample breaks the symmetry far more
(benchmarks/direction_spread.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from ase import Atoms
from scipy.optimize import least_squares

from .electrons import BlockTensors, Unfolder, bloch_pair, solve_generalized, solve_near
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
    """Band energies per valley: first moments of consecutive equal slices of its unfolded weight.

    ``e`` (K, n) are the states nearest E_F at each k, ``w`` (K, 2, n) their unfolded weight
    on each valley. On each side of E_F (near K the bands keep their side, 0.2 eV or more
    away) a valley's weight, taken in order of distance from E_F, is cut into n_bands / 2
    slices of equal weight, the first slice being the band nearest E_F; a band's energy is
    the first moment of its slice. A state's weight may fall into two slices in part. A
    displaced cell mixes states of both valleys (K + q e and K' + q e of a mirror-symmetric
    direction fold onto one supercell k and are degenerate), so a band's weight may be
    spread over several nearly degenerate states of ~0.5 each: the slices follow the weight
    wherever it goes, and the band energies are continuous functions of the states'
    energies and weights (choosing states as window centres was not: its ties broke either
    way under displacements of 0.001 A). A side's weight below the bands' count (the
    quasiparticle weight lost to states further away) is shared equally. With fewer than
    n_bands / 2 states on one side (not seen) the n_bands slices are taken over all states
    from the lowest up. Returns (K, 2, n_bands) in eV, ascending.
    """
    half = n_bands // 2
    below = e < e_fermi
    lopsided = (below.sum(-1) < half) | ((~below).sum(-1) < n_bands - half)  # (K,)
    holes = _weight_slices(e, np.where(below[:, None, :], w, 0.0), e_fermi - e, half)[..., ::-1]
    electrons = _weight_slices(e, np.where(below[:, None, :], 0.0, w), e - e_fermi, n_bands - half)
    joint = _weight_slices(e, w, e, n_bands)
    return np.where(lopsided[:, None, None], joint, np.concatenate([holes, electrons], -1))


def _weight_slices(e: np.ndarray, w: np.ndarray, order_key: np.ndarray, n_slices: int) -> np.ndarray:
    """First moments (K, 2, n_slices) of ``n_slices`` equal slices of the weight ``w``
    (K, 2, n) of states ``e`` (K, n), taken in ascending ``order_key`` (K, n)."""
    order = np.argsort(order_key, axis=-1, kind="stable")
    es = np.take_along_axis(e, order, -1)[:, None, :]
    ws = np.take_along_axis(w, order[:, None, :], -1)
    upto = np.cumsum(ws, -1)  # (K, 2, n): weight up to and including each state
    total = upto[..., -1:]
    width = np.where(total > 0, total, 1.0) / n_slices
    lo = width * np.arange(n_slices)  # (K, 2, n_slices) slice bounds
    part = np.clip(np.minimum(upto[..., None, :], (lo + width)[..., None])
                   - np.maximum((upto - ws)[..., None, :], lo[..., None]), 0.0, None)
    return (part * es[..., None, :]).sum(-1) / width


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
    # 1e-8 eV here (measured against full diagonalisation); the eigenvectors' errors move
    # the band energies' weight slices by ~3e-6 eV and v_F by ~2e-6 (1e-5 costs 12 % more)
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
        valence = {1: 1, 5: 3, 6: 4, 7: 5, 8: 6, 16: 6, 34: 6, 42: 6, 74: 6}  # GFN1-xTB's, Mo and W with 4d/5d
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
        return bloch_pair(bt, k)

    def tensors(self, blocks: Blocks) -> BlockTensors:
        """A sample's blocks on the device, in the atomic gauge of the ideal supercell."""
        return BlockTensors.from_blocks(blocks, self.ideal.positions, self.ideal.cell, device=self.device)

    def band_energies(self, blocks: Blocks | BlockTensors, seconds: dict | None = None) -> np.ndarray:
        """Band energies (n_k, 2 valleys, n_bands) in eV of one sample (any blocks on the
        ideal supercell's atoms, displaced or not); the seconds of each stage are added to
        ``seconds`` ("bloch", "eig", "unfold") if given."""
        t0 = time.perf_counter()
        h, s = self._bloch(blocks)
        t1 = time.perf_counter()
        e, c = solve_near(h, s, self.sigma, self.n_states, guess=self.guess, tol=self.tol)
        t2 = time.perf_counter()
        bands = self._moments(e, self.unfolder.weights(c, s, self.valley_g))
        if seconds is not None:
            for key, value in (("bloch", t1 - t0), ("eig", t2 - t1), ("unfold", time.perf_counter() - t2)):
                seconds[key] = seconds.get(key, 0.0) + value
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
