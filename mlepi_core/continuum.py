"""The Bistritzer-MacDonald continuum model of twisted bilayer graphene, from the
Slater-Koster p_z parameters (docs/physics.md#twisted-bilayers-the-slater-koster-p_z-model; Bistritzer & MacDonald, PNAS 108,
12233 (2011), in the form of Tarnopolsky, Kruchkov & Vishwanath, PRL 122, 106405 (2019)).

One valley, two layers twisted by +-theta/2, each a Dirac cone hbar v sigma.p about its
own K point (rotation of the sigma matrices neglected, the usual small-angle form), coupled
by three tunnelling terms with momentum transfers q_1 = k_theta (0, -1) and its 120-degree
rotations, k_theta = 2 |K| sin(theta / 2):

    T_j = w_AA sigma_0 + w_AB (cos phi_j sigma_x + sin phi_j sigma_y),  phi_j = 2 pi (j - 1) / 3.

The parameters come from the same Slater-Koster model as the tight-binding reference:
- hbar v from the monolayer: hbar v = |grad_k f(K)| / sqrt(2), f the A->B sum of the
  model's hoppings (exact slope of its Dirac cone, all neighbour shells included);
- w = t(|K|) / A_cell, the two-dimensional Fourier transform of the interlayer hopping
  between flat layers a distance d apart, t(rho) = V_pi(r) (1 - d^2/r^2) + V_sigma(r) d^2/r^2
  with r^2 = rho^2 + d^2 (times the reference's smooth switch), evaluated at the K-point
  momentum and divided by the area of graphene's unit cell (Bistritzer & MacDonald's
  two-centre approximation). Rigid layers: w_AA = w_AB = w.

Energies are in eV about the Dirac point, momenta in 1/Angstrom.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .reference import slater_koster as sk
from .units import GRAPHENE_A, VELOCITY_1E6_M_PER_S_PER_EV_A


def dirac_hbar_v(a: float = GRAPHENE_A) -> float:
    """hbar v (eV A) of the Slater-Koster monolayer's Dirac cone, from its hoppings."""
    from .structures import monolayer

    atoms = monolayer(a)
    i, j, shift, t = sk.hoppings(atoms)
    ab = (i == 0) & (j == 1)
    d = atoms.positions[1] + shift[ab] @ np.asarray(atoms.cell) - atoms.positions[0]
    recip = 2 * np.pi * np.linalg.inv(np.asarray(atoms.cell)).T
    k = np.array([2 / 3, 1 / 3, 0.0]) @ recip
    grad = (1j * d * (t[ab] * np.exp(1j * d @ k))[:, None]).sum(axis=0)
    return float(np.linalg.norm(grad) / np.sqrt(2.0))


def interlayer_w(d: float = sk.D0, a: float = GRAPHENE_A, n_rho: int = 20000) -> float:
    """Tunnelling amplitude w (eV) = t(|K|) / A_cell for flat layers ``d`` apart (see module)."""
    from scipy.special import j0

    rho_max = np.sqrt(max(sk.R_CUT ** 2 - d ** 2, 0.0))
    rho = np.linspace(0.0, rho_max, n_rho)
    r = np.sqrt(rho ** 2 + d ** 2)
    cos2 = (d / r) ** 2
    t = (sk.v_pi(r) * (1 - cos2) + sk.v_sigma(r) * cos2) * sk.switch(r)
    k = 4 * np.pi / (3 * a)
    ft = 2 * np.pi * np.trapezoid(rho * j0(k * rho) * t, rho)
    return float(ft / (np.sqrt(3) / 2 * a ** 2))


@dataclass(frozen=True)
class ContinuumModel:
    """Bistritzer-MacDonald model at twist ``theta_deg``; ``shells``: plane waves G = n1 b1 + n2 b2
    with |G| <= shells |b| (converged to < 0.1 meV in the central bands at 4 near 1 degree)."""

    theta_deg: float
    hbar_v: float  # eV A
    w_aa: float  # eV
    w_ab: float  # eV
    a: float = GRAPHENE_A
    shells: int = 5

    @classmethod
    def from_slater_koster(cls, theta_deg: float, d: float = sk.D0, **kw) -> "ContinuumModel":
        w = interlayer_w(d)
        return cls(theta_deg, dirac_hbar_v(), w, w, **kw)

    @property
    def k_theta(self) -> float:
        return 2 * (4 * np.pi / (3 * self.a)) * np.sin(np.radians(self.theta_deg) / 2)

    @property
    def alpha(self) -> float:
        """w_AB / (hbar v k_theta): the first magic angle is near alpha = 0.586."""
        return self.w_ab / (self.hbar_v * self.k_theta)

    def _lattice(self):
        kt = self.k_theta
        q = kt * np.array([[0.0, -1.0], [np.sqrt(3) / 2, 0.5], [-np.sqrt(3) / 2, 0.5]])
        b1, b2 = q[1] - q[0], q[2] - q[0]
        n = np.arange(-self.shells - 1, self.shells + 2)
        n1, n2 = (x.ravel() for x in np.meshgrid(n, n, indexing="ij"))
        g = n1[:, None] * b1 + n2[:, None] * b2
        keep = np.linalg.norm(g, axis=1) <= self.shells * np.linalg.norm(b1) + 1e-9
        return q, b1, b2, np.column_stack([n1[keep], n2[keep]]), g[keep]

    def path(self, points_per_segment: int = 40):
        """K_m - Gamma_m - M_m - K'_m of the moire zone: (k (P, 2), distances (P,), label positions, labels).
        K_m is layer 1's Dirac point, K'_m layer 2's."""
        kt = self.k_theta
        corners = {"K": np.array([0.0, 0.0]), "Γ": np.array([np.sqrt(3) / 2 * kt, kt / 2]),
                   "M": np.array([0.0, kt / 2]), "K'": np.array([0.0, kt])}
        names = ["K", "Γ", "M", "K'"]
        ks, dist, ticks, total = [], [], [0.0], 0.0
        for a_, b_ in zip(names[:-1], names[1:]):
            seg = np.linspace(0.0, 1.0, points_per_segment, endpoint=False)[:, None]
            ks.append(corners[a_] + seg * (corners[b_] - corners[a_]))
            dist.append(total + seg[:, 0] * np.linalg.norm(corners[b_] - corners[a_]))
            total += np.linalg.norm(corners[b_] - corners[a_])
            ticks.append(total)
        ks.append(corners["K'"][None])
        dist.append(np.array([total]))
        return np.concatenate(ks), np.concatenate(dist), np.array(ticks), names

    @cached_property
    def _tunnelling(self) -> tuple[np.ndarray, np.ndarray]:
        """(the k-independent tunnelling part of H, the plane waves' G vectors)."""
        q, b1, b2, nn, g = self._lattice()
        n_g = len(g)
        h = np.zeros((4 * n_g, 4 * n_g), dtype=complex)
        lookup = {tuple(v): i for i, v in enumerate(nn)}
        for j, (s1, s2) in enumerate([(0, 0), (1, 0), (0, 1)]):  # layer-1 G -> layer-2 G + (q_j - q_1)
            phi = 2 * np.pi * j / 3
            t = self.w_aa * np.eye(2) + self.w_ab * np.array([[0, np.exp(-1j * phi)], [np.exp(1j * phi), 0]])
            pairs = [(i1, lookup[(m1 + s1, m2 + s2)]) for i1, (m1, m2) in enumerate(nn)
                     if (m1 + s1, m2 + s2) in lookup]
            for i1, i2 in pairs:
                r0, c0 = 2 * i1, 2 * n_g + 2 * i2
                h[r0:r0 + 2, c0:c0 + 2] = t
                h[c0:c0 + 2, r0:r0 + 2] = t.conj().T
        return h, g

    def hamiltonian(self, k: np.ndarray) -> np.ndarray:
        """(2 layers x 2 sublattices x n_G)-dimensional H(k) (eV), k (2,) in 1/A from layer 1's
        Dirac point; layer 2's Dirac point is at k = -q_1."""
        h, g = self._tunnelling
        h = h.copy()
        q1 = self._lattice()[0][0]
        n_g = len(g)
        idx = 2 * np.arange(n_g)
        for layer, p in ((0, k + g), (1, k + g + q1)):
            base = 2 * layer * n_g
            h[base + idx, base + idx + 1] = self.hbar_v * (p[:, 0] - 1j * p[:, 1])
            h[base + idx + 1, base + idx] = self.hbar_v * (p[:, 0] + 1j * p[:, 1])
        return h

    def bands(self, ks: np.ndarray, n_bands: int = 8) -> np.ndarray:
        """(P, n_bands) eV: the ``n_bands`` eigenvalues nearest the Dirac point at each k."""
        out = []
        for k in ks:
            e = np.linalg.eigvalsh(self.hamiltonian(np.asarray(k, dtype=float)))
            mid = len(e) // 2
            out.append(e[mid - n_bands // 2: mid + n_bands // 2])
        return np.array(out)

    def central_width(self, points_per_segment: int = 20) -> float:
        """Width (eV) of the two central bands along the moire path."""
        ks, *_ = self.path(points_per_segment)
        e = self.bands(ks, 2)
        return float(e.max() - e.min())

    def k_point_velocity(self, dk_fraction: float = 1e-3) -> float:
        """Velocity (10^6 m/s) of the central bands at K_m (the Dirac point of the moire bands)."""
        dk = dk_fraction * self.k_theta
        e = self.bands(np.array([[dk, 0.0], [-dk, 0.0]]), 2)
        slope = 0.25 * ((e[0, 1] - e[0, 0]) + (e[1, 1] - e[1, 0])) / dk
        return float(slope * VELOCITY_1E6_M_PER_S_PER_EV_A)


def first_magic_angle(theta_range=(0.8, 1.4), steps: int = 25, d: float = sk.D0,
                      **model_kw) -> tuple[float, float]:
    """The twist (degrees) of the first minimum of |v(K_m)| for the Slater-Koster parameters
    with flat layers ``d`` apart, refined by a parabola through the smallest grid point and
    its neighbours; returns (theta, v at theta)."""
    thetas = np.linspace(*theta_range, steps)
    hv, w = dirac_hbar_v(), interlayer_w(d)
    vs = np.array([abs(ContinuumModel(t, hv, w, w, **model_kw).k_point_velocity()) for t in thetas])
    k = int(np.argmin(vs[1:-1])) + 1
    x, y = thetas[k - 1:k + 2], vs[k - 1:k + 2]
    c = np.polyfit(x, y, 2)
    theta = float(-c[1] / (2 * c[0])) if c[0] > 0 else float(thetas[k])
    return theta, float(abs(ContinuumModel(theta, hv, w, w, **model_kw).k_point_velocity()))
