"""Mode curvatures of the observables: control variates that cut the Monte Carlo's variance.

To second order in the displacements, an observable O (v_F, gamma_1, a gap) of a thermal
sample with standard normal mode amplitudes eta_nu is

    O = <O> + sum_nu g_nu(T) eta_nu + 1/2 sum_nu D_nu(T) (|eta_nu|^2 - <|eta_nu|^2>) + cross terms,

with D_nu(T) = sigma_nu(T)^2 d^2O/dQ_nu^2 the curvature along mode nu scaled by its thermal
variance and g_nu(T) = sigma_nu(T) dO/dQ_nu, non-zero only at q = Gamma (crystal momentum: O is
invariant under the primitive translations). Nearly all of the sample-to-sample scatter of
v_F in a 6x6 AB bilayer comes from the scatter of the squared amplitudes, not from the signs
(benchmarks/results/zg_bias.json). The two sums

    C(T) = 1/2 sum_nu D_nu(T) (|eta_nu|^2 - <|eta_nu|^2>),   L(T) = sum_nu g_nu(T) eta_nu

have mean exactly zero, are known for every sample from its normals and follow O closely, so
regressing O on them (``statistics.control_variate_mean``) removes most of the variance and
no bias.

The curvatures come from finite differences, once per structure and model: each moving mode
of the supercell displaced alone by one thermal standard deviation at ``REFERENCE_T`` (one
solve; two, +- the displacement, at q = Gamma, which also give the slopes g).
They are exact coefficients of nothing: any error in them costs variance, never bias.
Modes are phonopy's (``RandomDisplacements`` with ``sampling_matrix="eigenvector"``): set A
(q = -q + G) one real normal each, set B (pairs q, -q) a complex normal whose real and
imaginary parts are the two real modes cos(q.R) and sin(q.R); translations by lattice vectors
turn one into the other, so both have the same curvature and one solve serves the pair.
The Monte Carlo's own normals (``sampling_matrix="symmetric"``, the Hermitian square root)
become mode amplitudes through eta = E^dagger xi at each q.
"""

from __future__ import annotations

import numpy as np
from phonopy.phonon.random_displacements import RandomDisplacements, bose_einstein_dist

REFERENCE_T = 300.0  # K: the displacements of the finite differences, one sigma_nu(300 K) each
MOVING_THZ = 1e-3  # phonopy's modes below this (the acoustic ones at Gamma) have no amplitude


class ModeCurvature:
    """Finite-difference mode curvatures on a ``ThermalSampler``'s phonons and the control
    variates C(T) they give its samples.

    ``probes()`` lists the single-mode displacements to evaluate, ``displacements(probes)``
    gives them (Angstrom), ``fit(static, values)`` takes the observables there; after it,
    ``controls(temperature, index, seed)`` returns each observable's C(T) and L(T) for those
    samples.
    """

    def __init__(self, sampler):
        p = sampler._phonon
        self.sampler = sampler
        self.rd = RandomDisplacements(p.supercell, p.primitive, p.force_constants, dist_func="quantum",
                                      sampling_matrix="eigenvector")
        self.rd.frequencies = sampler._rd.frequencies  # imaginary modes zeroed as the sampler has them
        self.frequencies_thz = np.asarray(sampler._rd.frequencies)  # (n_A + n_B, n_bands)
        self.n_a = len(self.rd._eigvecs_ii)  # phonopy 4.8.6 (pinned): set A, then set B
        self.n_b = len(self.rd._eigvecs_ij)
        self.n_bands = self.frequencies_thz.shape[1]
        self.moving = self.frequencies_thz > MOVING_THZ
        gamma = np.all(np.abs(self.rd.qpoints[: self.n_a]) < 1e-12, axis=1)
        self.two_sided = np.zeros_like(self.moving)
        self.two_sided[: self.n_a][gamma] = True
        self.curvature: dict[str, np.ndarray] = {}  # observable -> D (n_A + n_B, n_bands), at REFERENCE_T
        self.slope: dict[str, np.ndarray] = {}  # observable -> g, non-zero at q = Gamma only

    def probes(self) -> list[tuple[int, int, float]]:
        """(row, band, sign) of every finite-difference displacement: row < n_A is a set-A
        q-point, n_A + i the i-th set-B pair."""
        out = []
        for row, band in zip(*np.nonzero(self.moving)):
            out += [(int(row), int(band), 1.0)] + ([(int(row), int(band), -1.0)] if self.two_sided[row, band] else [])
        return out

    def displacements(self, probes: list[tuple[int, int, float]]) -> np.ndarray:
        """(len(probes), N, 3) Angstrom: each probe's mode at one sigma(REFERENCE_T)."""
        ii = np.zeros((self.n_a, len(probes), self.n_bands))
        ij = np.zeros((self.n_b, 2, len(probes), self.n_bands))
        for k, (row, band, sign) in enumerate(probes):
            if row < self.n_a:
                ii[row, k, band] = sign
            else:
                ij[row - self.n_a, 0, k, band] = sign
        self.rd.run(REFERENCE_T, standard_normals=(ii, ij))
        return np.array(self.rd.u)

    def fit(self, static: dict[str, float], values: dict[str, np.ndarray]) -> None:
        """Curvatures and slopes from the observables ``values[name]`` (len(probes()),) at the
        probes and their static values: D = 2 (O(+1) - O_0), or O(+1) + O(-1) - 2 O_0 and
        g = (O(+1) - O(-1)) / 2 where two-sided."""
        probes = self.probes()
        rows = np.array([p[0] for p in probes])
        bands = np.array([p[1] for p in probes])
        signs = np.array([p[2] for p in probes])
        for name, v in values.items():
            shift = np.asarray(v, dtype=float) - static[name]
            d = np.zeros(self.moving.shape)
            g = np.zeros(self.moving.shape)
            np.add.at(d, (rows, bands), shift)
            np.add.at(g, (rows, bands), 0.5 * signs * shift)
            self.curvature[name] = np.where(self.two_sided, d, 2.0 * d)
            self.slope[name] = np.where(self.two_sided, g, 0.0)

    def thermal_scale(self, temperature: float) -> np.ndarray:
        """sigma_nu(T)^2 / sigma_nu(REFERENCE_T)^2 = (n_B(T) + 1/2) / (n_B(REFERENCE_T) + 1/2)."""
        f = np.where(self.moving, self.frequencies_thz, 1.0)
        occupation = lambda t: bose_einstein_dist(f, t) if t > 0 else np.zeros_like(f)
        return np.where(self.moving, (occupation(temperature) + 0.5) / (occupation(REFERENCE_T) + 0.5), 0.0)

    def amplitudes(self, index: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Mode amplitudes eta of samples ``index`` (the Monte Carlo's keyed normals,
        ``ThermalSampler.displacements``): set A (n, n_A, n_bands), real, and set B
        (n, n_B, n_bands), complex with <|eta|^2> = 2."""
        index = np.asarray(index, dtype=int)
        lo, hi = int(index.min()), int(index.max())
        ii, ij = self.sampler._rd.draw_standard_normals(hi - lo + 1, random_seed=seed, first_snapshot=lo)
        pick = index - lo
        ea, eb = np.asarray(self.rd._eigvecs_ii), np.asarray(self.rd._eigvecs_ij)
        eta_a = np.einsum("qnc,qcb->nqb", ii[:, pick], ea.conj()).real  # E real at q = -q + G
        eta_b = np.einsum("qnc,qcb->nqb", ij[:, 0, pick] + 1j * ij[:, 1, pick], eb.conj())
        return eta_a, eta_b

    def controls(self, temperature: float, index: np.ndarray, seed: int) -> dict[str, np.ndarray]:
        """{observable: (n, 2)} the control variates C(T) and L(T) of samples ``index`` (mean
        exactly zero)."""
        eta_a, eta_b = self.amplitudes(index, seed)
        sq = np.concatenate([eta_a ** 2 - 1.0, np.abs(eta_b) ** 2 - 2.0], axis=1) * self.moving[None]
        scale = self.thermal_scale(temperature)
        out = {}
        for name, d in self.curvature.items():
            c = 0.5 * np.einsum("nqb,qb->n", sq, d * scale)
            linear = np.einsum("nqb,qb->n", eta_a, (self.slope[name] * np.sqrt(scale))[: self.n_a])
            out[name] = np.stack([c, linear], axis=1)
        return out

    def second_order_shift(self, temperature: float) -> dict[str, float]:
        """<O>(T) - O_0 to second order from the diagonal curvatures alone (a rough guide: the
        finite differences at one sigma hold some of the fourth order too)."""
        scale = self.thermal_scale(temperature)
        weight = np.where(np.arange(self.n_a + self.n_b)[:, None] < self.n_a, 0.5, 1.0)
        return {name: float((weight * d * scale).sum()) for name, d in self.curvature.items()}
