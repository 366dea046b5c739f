"""Special displacements (ZG): one configuration that carries the thermal average.

Zacharias and Giustino, PRB 94, 075125 (2016), Eq. 4-5, and PRR 2, 013357 (2020), Eq. 2-4:
instead of Gaussian normal coordinates, every mode of the supercell is displaced by
exactly +-sigma_{q nu}(T), sigma^2 = l_{q nu}^2 (2 n_B + 1) (the Monte Carlo's coth
amplitude, acoustic modes at Gamma frozen), with signs chosen so that the cross terms
between branches nu != nu' at the same q cancel in the sum over q.

It is built on the sampler's own phonons: phonopy's ``RandomDisplacements`` with
``sampling_matrix="eigenvector"``, whose standard normals are mode amplitudes, fed
normals of modulus exactly 1 (set A, q = -q + G: one real normal per mode; set B, the
pairs (q, -q): the complex normal (1 + i) S, |.|^2 = 2 as <|a + ib|^2> of the Monte Carlo).

Signs. At each q-point the branches (in order of frequency) start from a row of the Walsh
(Sylvester-Hadamard) matrix, W_{k nu} = (-1)^popcount(k & nu): the "+,-,+,-" patterns
and their block permutations, whose rows are orthogonal, so over any 2^m q-points that use
every row once each product S_nu S_nu' is added as often as it is subtracted. Which q
gets which row (a random permutation, repeated to cover all q) and a global sign per q
come from a keyed stream, SeedSequence([seed, pair]); single sign flips, steepest first,
then lower the error function until no flip does (ZG.x tries random permutations of the
rows instead). Inside a degenerate subspace the eigenvectors are any orthonormal basis;
the one used (``gauge``) jointly diagonalises the subspace's couplings, so that a
degenerate pair (the interlayer shear mode at Gamma) adds no cross term to <u_alpha^2>.

Error function (PRR 2020, Eq. 4; ZG.x's ``error_thresh``): the mean over primitive
atoms kappa and directions alpha of |<u_{kappa alpha}^2>_cells / <u_{kappa alpha}^2>_T - 1|,
the configuration's mean-square displacement averaged over the supercell against the
thermal one. Terms between different q average to zero over the supercell exactly, so
what remains is the same-q cross-branch terms over the diagonal ones.

Configurations come in ZG pairs: configuration 2p + 1 is -1 times configuration 2p,
which cancels every odd order of the observable; the spread of pair means over pairs
p (different sign patterns) is the error estimate.

Fourth order (rule ``"gauss-hermite"``). Amplitudes of exactly +-sigma have <x^4> = sigma^4
where the Gaussian has 3 sigma^4, so an observable with a quartic term in the displacements
is biased at fourth order. The three-point Gauss-Hermite rule, x in
{-sqrt(3), 0, +sqrt(3)} sigma with weights 1/6, 2/3, 1/6, has the Gaussian's moments through
the fifth. Its configurations come in blocks of three ZG pairs (six configurations): a keyed
draw gives each mode to one pair of the block, where it moves by +-sqrt(3) sigma, and holds it
at rest in the other two, so over the block every mode has exactly the rule's moments and the
block's diagonal terms are the thermal ones. Signs start random (keyed) rather than from Walsh
rows, whose products of four branches do not average to zero; pair by pair, the flips lower
the cross terms of the block so far. The error function is the block's (the mean of its three
pairs' <u^2>), and the spread of block means is the error estimate.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from phonopy.phonon.random_displacements import RandomDisplacements

ERROR_THRESHOLD = 0.05  # ZG.x's default error_thresh: cross terms below 5 % of the diagonal ones
RULES = {"sign": 2, "gauss-hermite": 6}  # amplitude rule: configurations per independent unit
_GAUSS_HERMITE_KEY = 3  # third entry of the Gauss-Hermite streams' SeedSequence keys


@dataclass(frozen=True)
class ZGConfiguration:
    """One ZG pair's signs: ``signs`` (n_q, n_bands) +-1 per q-point (set A then set B,
    phonopy's order) and branch, ``error`` (dimensionless, the error function above)
    and the ``pair`` index that keyed them."""

    signs: np.ndarray
    error: float
    pair: int


def walsh_rows(n_bands: int) -> np.ndarray:
    """(2^m, n_bands) +-1, 2^m >= n_bands: rows k of the Sylvester-Hadamard matrix, orthogonal."""
    m = max(1, int(np.ceil(np.log2(n_bands))))
    k = np.arange(2 ** m)[:, None]
    nu = np.arange(n_bands)[None, :]
    bits = np.vectorize(lambda x: bin(x).count("1"))(k & nu)
    return np.where(bits % 2 == 0, 1, -1).astype(float)


class SpecialDisplacements:
    """ZG configurations on the phonons of a ``ThermalSampler`` (``sampler.special_displacements``).

    ``rd`` is phonopy's RandomDisplacements of the same supercell, primitive cell and
    force constants in the mode basis; ``frequencies_thz`` the sampler's (imaginary modes
    zeroed), so the amplitudes sigma_{q nu}(T) are the Monte Carlo's.
    """

    def __init__(self, rd: RandomDisplacements, frequencies_thz: np.ndarray, primitive_index: np.ndarray,
                 threshold: float = ERROR_THRESHOLD):
        self.rd = rd
        self.rd.frequencies = frequencies_thz
        self.threshold = float(threshold)
        self.n_a = len(rd._eigvals_ii)  # phonopy 4.8.6 (pinned): set A then set B
        self.n_b = len(rd._eigvals_ij) if rd._ij else 0
        self.n_bands = rd._eigvals_ii.shape[1]
        q = rd.qpoints
        gamma = np.flatnonzero(np.all(np.abs(q[: self.n_a]) < 1e-12, axis=1))
        self.frozen = np.zeros((self.n_a + self.n_b, self.n_bands), dtype=bool)
        self.frozen[gamma, :3] = True  # the acoustic modes at Gamma: a rigid translation
        self.rows = walsh_rows(self.n_bands)
        _, self.kappa = np.unique(primitive_index, return_inverse=True)  # primitive atom of each atom
        self.n_kappa = int(self.kappa.max()) + 1
        self._coupling: dict[float, np.ndarray] = {}
        self._gauge: dict[float, np.ndarray] = {}
        self._found: dict[tuple, ZGConfiguration] = {}

    # --- displacements from signs ------------------------------------------------------------
    def normals(self, signs: np.ndarray, temperature: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """phonopy's standard normals (mode basis) of sign sets ``signs`` (S, n_q, n_bands) given
        in the ZG gauge of ``temperature`` (each degenerate subspace rotated by ``gauge``)."""
        s = np.where(self.frozen[None], 0.0, signs)
        if temperature is not None:
            s = np.einsum("qnm,sqm->sqn", self.gauge(temperature), s)
        ii = np.ascontiguousarray(s[:, : self.n_a].transpose(1, 0, 2))
        b = s[:, self.n_a:].transpose(1, 0, 2)
        ij = np.ascontiguousarray(np.stack([b, b], axis=1))  # (1 + i) S: real and imaginary parts
        return ii, ij

    def displacements(self, temperature: float, signs: np.ndarray, gauge: bool = True) -> np.ndarray:
        """Displacements (S, N, 3) in Angstrom of sign sets ``signs`` (S, n_q, n_bands) at T (K)."""
        normals = self.normals(np.asarray(signs, dtype=float), temperature if gauge else None)
        self.rd.run(temperature, standard_normals=normals)
        return np.array(self.rd.u)

    def gauge(self, temperature: float) -> np.ndarray:
        """(n_q, n_bands, n_bands) orthogonal: the basis of each degenerate subspace (|df| < 1e-4
        THz) that jointly diagonalises its couplings M_q[., ., kappa, alpha] / <u_{kappa alpha}^2>
        (Jacobi rotations, closed-form angle): cross terms inside a subspace vanish where they can."""
        t = float(temperature)
        if t not in self._gauge:
            m = self._raw_coupling(t)
            thermal = np.einsum("qnnka->ka", m)
            w = np.where(thermal > 1e-12 * thermal.max(), 1.0 / np.where(thermal > 0, thermal, 1.0), 0.0)
            freqs = self.rd.frequencies
            rot = np.tile(np.eye(self.n_bands), (len(freqs), 1, 1))
            for q, f in enumerate(freqs):
                mq = (m[q] * w).reshape(self.n_bands, self.n_bands, -1)
                for group in np.split(np.arange(self.n_bands), np.flatnonzero(np.diff(f) > 1e-4) + 1):
                    if len(group) < 2 or self.frozen[q, group].any():
                        continue
                    r = np.eye(len(group))
                    block = mq[np.ix_(group, group)]
                    for _ in range(10):  # sweeps
                        for a in range(len(group)):
                            for b in range(a + 1, len(group)):
                                g = np.stack([block[a, b], 0.5 * (block[b, b] - block[a, a])])
                                _, vec = np.linalg.eigh(g @ g.T)
                                theta = 0.5 * np.arctan2(vec[1, 0], vec[0, 0])
                                c, s_ = np.cos(theta), np.sin(theta)
                                j = np.eye(len(group))
                                j[a, a], j[a, b], j[b, a], j[b, b] = c, s_, -s_, c
                                block = np.einsum("in,nmk,jm->ijk", j, block, j)
                                r = r @ j.T
                    rot[q][np.ix_(group, group)] = r
            self._gauge[t] = rot
        return self._gauge[t]

    # --- the error function ------------------------------------------------------------------
    def _raw_coupling(self, temperature: float, gauge: bool = False) -> np.ndarray:
        n_q, nb = self.n_a + self.n_b, self.n_bands
        unit = np.zeros((n_q * nb, n_q, nb))
        unit[np.arange(n_q * nb), np.repeat(np.arange(n_q), nb), np.tile(np.arange(nb), n_q)] = 1.0
        u = self.displacements(temperature, unit, gauge).reshape(n_q, nb, -1, 3)  # frozen modes: zero
        m = np.zeros((n_q, nb, nb, self.n_kappa, 3))
        for k in range(self.n_kappa):
            uk = u[:, :, self.kappa == k]
            m[..., k, :] = np.einsum("qnia,qmia->qnma", uk, uk) / uk.shape[2]
        return m

    def coupling(self, temperature: float) -> np.ndarray:
        """(n_q, n_bands, n_bands, n_kappa, 3) Angstrom^2: M_q[nu, nu', kappa, alpha], the supercell
        average over the images of kappa of u^{q nu}_alpha u^{q nu'}_alpha, u^{q nu} the displacement
        of mode (q, nu) with unit sign. <u_{kappa alpha}^2>_cells of signs S is sum_q S_q M_q S_q
        (terms between different q average to zero); its diagonal nu = nu' is the thermal value."""
        t = float(temperature)
        if t not in self._coupling:
            self._coupling[t] = self._raw_coupling(t, gauge=True)
        return self._coupling[t]

    def thermal_msd(self, temperature: float) -> np.ndarray:
        """(n_kappa, 3) Angstrom^2: the thermal <u_{kappa alpha}^2>, the diagonal terms of ``coupling``."""
        m = self.coupling(temperature)
        return np.einsum("qnnka->ka", m)

    def _cross(self, temperature: float, signs: np.ndarray) -> np.ndarray:
        """(S, n_kappa, 3): the cross terms nu != nu' of sign sets ``signs`` over the thermal value."""
        m = self.coupling(temperature)
        total = np.einsum("sqn,qnmka,sqm->ska", signs, m, signs)
        thermal = self.thermal_msd(temperature)
        return (total - thermal) / np.where(thermal > 0, thermal, 1.0)

    def errors(self, temperature: float, signs: np.ndarray) -> np.ndarray:
        """The ZG error function (dimensionless) of each sign set in ``signs`` (S, n_q, n_bands):
        mean over kappa, alpha of |cross terms / diagonal terms|."""
        signs = np.where(self.frozen[None], 0.0, np.asarray(signs, dtype=float))
        thermal = self.thermal_msd(temperature)
        moving = thermal > 1e-12 * thermal.max()
        return np.abs(self._cross(temperature, signs)[:, moving]).mean(axis=1)

    # --- the search ---------------------------------------------------------------------------
    def start(self, seed: int, pair: int) -> np.ndarray:
        """(n_q, n_bands): pair ``pair``'s starting signs from its keyed stream: Walsh rows in a
        random order (each row once per 2^m q-points), a random global sign per q."""
        rng = np.random.default_rng(np.random.SeedSequence([seed, pair]))
        n_q, n_rows = self.n_a + self.n_b, len(self.rows)
        order = np.concatenate([rng.permutation(n_rows) for _ in range(-(-n_q // n_rows))])[:n_q]
        return self.rows[order] * rng.choice([-1.0, 1.0], size=n_q)[:, None]

    def descend(self, temperature: float, signs: np.ndarray,
                target: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """Single sign flips, steepest first, while the error function decreases: the signs
        (n_q, n_bands) and their error. The error measures <u^2>_cells against ``target``
        (n_kappa, 3; default the thermal <u^2>) in units of the thermal one. Deterministic
        (ties go to the first mode)."""
        m = self.coupling(temperature)
        thermal = self.thermal_msd(temperature)
        moving = thermal > 1e-12 * thermal.max()
        scale = np.where(moving, 1.0 / np.where(moving, thermal, 1.0), 0.0)
        n_moving = moving.sum()
        s = np.where(self.frozen, 0.0, np.asarray(signs, dtype=float))
        cross = np.einsum("qn,qnmka,qm->ka", s, m, s) - (thermal if target is None else target)
        # field[q, nu] = sum_{nu' != nu} M_q[nu, nu'] S_{q nu'}: flipping S_{q nu} changes cross by -4 S field
        diag = np.einsum("qnnka->qnka", m)
        field = np.einsum("qnmka,qm->qnka", m, s) - diag * s[..., None, None]
        error = float(np.abs(cross * scale).sum() / n_moving)
        while True:
            trial = cross[None, None] - 4.0 * s[..., None, None] * field
            err = np.abs(trial * scale).sum(axis=(2, 3)) / n_moving
            err[self.frozen] = np.inf
            q, n = np.unravel_index(int(np.argmin(err)), err.shape)
            if err[q, n] >= error - 1e-12:
                break
            old = s[q, n]
            s[q, n] = -old
            cross = trial[q, n]
            field[q] += m[q, :, n] * (-2.0 * old)
            field[q, n] -= m[q, n, n] * (-2.0 * old)  # field excludes the mode itself
            error = float(err[q, n])
        return np.where(self.frozen, 1.0, s), error

    def configuration(self, temperature: float, seed: int, pair: int, rule: str = "sign") -> ZGConfiguration:
        """The signs of ZG pair ``pair`` under amplitude ``rule`` (``RULES``): for "sign" its
        keyed start (``start``), then ``descend``; for "gauss-hermite" its block's
        (``gauss_hermite_block``). A warning if the error function stays above the threshold."""
        if rule not in RULES:
            raise ValueError(f"the ZG amplitude rule must be one of {sorted(RULES)}, got {rule!r}")
        key = (float(temperature), int(seed), int(pair), rule)
        if key not in self._found:
            if rule == "sign":
                signs, error = self.descend(temperature, self.start(seed, pair))
                configs = {pair: ZGConfiguration(signs, error, pair)}
            else:
                configs = self.gauss_hermite_block(temperature, seed, pair // 3)
            for p, config in configs.items():
                if config.error >= self.threshold:
                    warnings.warn(f"the ZG error function stays at {config.error:.3f} >= {self.threshold} "
                                  f"at {temperature} K (pair {p})")
                self._found[(float(temperature), int(seed), p, rule)] = config
        return self._found[key]

    def amplitude_masks(self, seed: int, block: int) -> np.ndarray:
        """(3, n_q, n_bands): sqrt(3) in the one pair of Gauss-Hermite block ``block`` that
        carries each mode (a keyed uniform draw), 0 in the other two."""
        rng = np.random.default_rng(np.random.SeedSequence([seed, block, _GAUSS_HERMITE_KEY]))
        owner = rng.integers(0, 3, size=self.frozen.shape)
        return np.where(owner[None] == np.arange(3)[:, None, None], np.sqrt(3.0), 0.0)

    def gauss_hermite_block(self, temperature: float, seed: int, block: int) -> dict[int, ZGConfiguration]:
        """The three pairs 3 block .. 3 block + 2 of a Gauss-Hermite block: amplitudes from
        ``amplitude_masks``, keyed random starting signs, ``descend``; each pair's ``error`` is
        the block's error function, that of the mean of its pairs' <u^2>."""
        m = self.coupling(temperature)
        diagonal = np.einsum("qnnka->qnka", m)
        masks = self.amplitude_masks(seed, block)
        signs, left = [], np.zeros_like(self.thermal_msd(temperature))  # cross terms of the pairs so far
        for k, pair in enumerate(range(3 * block, 3 * block + 3)):
            rng = np.random.default_rng(np.random.SeedSequence([seed, pair, _GAUSS_HERMITE_KEY]))
            start = np.where(self.frozen, 0.0, rng.choice([-1.0, 1.0], size=self.frozen.shape) * masks[k])
            own = np.einsum("qn,qnka->ka", start ** 2, diagonal)  # flips leave the diagonal terms
            s, _ = self.descend(temperature, start, target=own - left)
            s = np.where(self.frozen, 0.0, s)
            left += np.einsum("qn,qnmka,qm->ka", s, m, s) - own
            signs.append(np.where(self.frozen, 1.0, s))
        signs = np.array(signs)
        thermal = self.thermal_msd(temperature)
        moving = thermal > 1e-12 * thermal.max()
        error = float(np.abs(self._cross(temperature, np.where(self.frozen[None], 0.0, signs)).mean(axis=0)[moving]).mean())
        return {3 * block + k: ZGConfiguration(signs[k], error, 3 * block + k) for k in range(3)}

    def sample_displacements(self, temperature: float, first: int, count: int, seed: int,
                             rule: str = "sign") -> np.ndarray:
        """Displacements (count, N, 3) in Angstrom of ZG configurations first .. first+count-1
        under amplitude ``rule``: configuration 2p is pair p's, 2p + 1 its negative (keyed, any
        batch gives the same)."""
        index = np.arange(first, first + count)
        signs = np.array([self.configuration(temperature, seed, j // 2, rule).signs * (-1.0 if j % 2 else 1.0)
                          for j in index])
        return self.displacements(temperature, signs)
