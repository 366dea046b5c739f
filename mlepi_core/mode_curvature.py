"""Mode curvatures of the observables: control variates that cut the Monte Carlo's variance.

To second order in the displacements, an observable O (v_F, gamma_1, a gap) of a thermal
sample is

    O(eta) = O_0 + g . eta + 1/2 sum_nu D_nu(T) (|eta_nu|^2 - <|eta_nu|^2>) + <O> - O_0 + cross terms,

with eta_nu the sample's standard normal mode amplitudes and D_nu(T) = sigma_nu(T)^2 d^2O/dQ_nu^2
the curvature along mode nu scaled by its thermal variance. Nearly all of the sample-to-sample
scatter of v_F in a 6x6 AB bilayer comes from the scatter of the squared amplitudes, not from the
signs (benchmarks/results/zg_bias.json): the sum

    C(T) = 1/2 sum_nu D_nu(T) (|eta_nu|^2 - <|eta_nu|^2>)

has mean exactly zero, is known for every sample from its normals, and follows O closely, so
regressing O on it (``statistics.control_variate_mean``) removes most of the variance and no
bias. The linear term needs no curvature: by crystal momentum it is carried by the Gamma
normals alone (``ThermalSampler.gamma_normals``), the other control.

The curvatures come from finite differences, once per structure and model: each moving mode
of the supercell displaced alone by one thermal standard deviation at ``REFERENCE_T`` (one
solve; two, +- the displacement, at q = Gamma, where the linear term is not zero by symmetry).
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
    ``controls(temperature, index, seed)`` returns each observable's C(T) for those samples.
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
        self.curvature: dict[str, np.ndarray] = {}  # observable -> (n_A + n_B, n_bands), at REFERENCE_T

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
        """Curvatures from the observables ``values[name]`` (len(probes()),) at the probes and
        their static values: D = 2 (O(+1) - O_0), or O(+1) + O(-1) - 2 O_0 where two-sided."""
        probes = self.probes()
        for name, v in values.items():
            total = np.zeros(self.moving.shape)
            count = np.zeros(self.moving.shape)
            for (row, band, _), x in zip(probes, np.asarray(v, dtype=float)):
                total[row, band] += x - static[name]
                count[row, band] += 1
            self.curvature[name] = np.where(count > 0, 2.0 * total / np.maximum(count, 1), 0.0)

    def thermal_scale(self, temperature: float) -> np.ndarray:
        """sigma_nu(T)^2 / sigma_nu(REFERENCE_T)^2 = (n_B(T) + 1/2) / (n_B(REFERENCE_T) + 1/2)."""
        f = np.where(self.moving, self.frequencies_thz, 1.0)
        occupation = lambda t: bose_einstein_dist(f, t) if t > 0 else np.zeros_like(f)
        return np.where(self.moving, (occupation(temperature) + 0.5) / (occupation(REFERENCE_T) + 0.5), 0.0)

    def squared_amplitudes(self, index: np.ndarray, seed: int) -> np.ndarray:
        """(n, n_A + n_B, n_bands): |eta|^2 - <|eta|^2> of samples ``index`` (the Monte Carlo's
        keyed normals, sampler.displacements), mean zero."""
        index = np.asarray(index, dtype=int)
        lo, hi = int(index.min()), int(index.max())
        ii, ij = self.sampler._rd.draw_standard_normals(hi - lo + 1, random_seed=seed, first_snapshot=lo)
        pick = index - lo
        ea, eb = self.rd._eigvecs_ii, self.rd._eigvecs_ij
        eta_a = np.einsum("qnc,qcb->qnb", ii[:, pick], np.conj(np.asarray(ea)))
        z = ij[:, 0, pick] + 1j * ij[:, 1, pick]
        eta_b = np.einsum("qnc,qcb->qnb", z, np.conj(np.asarray(eb)))
        sq = np.concatenate([np.abs(eta_a) ** 2 - 1.0, np.abs(eta_b) ** 2 - 2.0], axis=0)
        return sq.transpose(1, 0, 2) * self.moving[None]

    def controls(self, temperature: float, index: np.ndarray, seed: int) -> dict[str, np.ndarray]:
        """{observable: (n,)} the control variates C(T) of samples ``index`` (mean exactly zero)."""
        sq = self.squared_amplitudes(index, seed)
        scale = self.thermal_scale(temperature)
        return {name: 0.5 * np.einsum("nqb,qb->n", sq, d * scale) for name, d in self.curvature.items()}

    def second_order_shift(self, temperature: float) -> dict[str, float]:
        """<O>(T) - O_0 to second order from the diagonal curvatures alone (a rough guide: the
        finite differences at one sigma hold some of the fourth order too)."""
        scale = self.thermal_scale(temperature)
        weight = np.where(np.arange(self.n_a + self.n_b)[:, None] < self.n_a, 0.5, 1.0)
        return {name: float((weight * d * scale).sum()) for name, d in self.curvature.items()}
