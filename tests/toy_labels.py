"""Toy labels shared by the electron tests: Slater-Koster-like s, p blocks of carbon."""

import numpy as np

from mlepi_core.graph import neighbour_pairs
from mlepi_core.seams import Blocks


ELEMENT_FACTORS = {"C": (1.0, 1.0), "B": (0.7, 1.3), "N": (1.4, 0.6)}  # (s, p) factors of the integrals


def sk_blocks(atoms, rc=6.0) -> Blocks:
    """Slater-Koster-like H (eV) and S blocks of s, p atoms (C, B, N) within ``rc``, tblite order.

    Hoppings are two-centre functions of r_ij (sp along the bond, pp = V_pi 1 + (V_sigma -
    V_pi) u u^T) scaled per element pair: an integral between an s or p orbital on atom a and
    one on atom b carries the factors of a's and b's elements for those shells, so B-N's
    s-p integral differs from N-B's (carbon's factors are 1). On-site energies depend on the
    neighbourhood, S_ii = 1. Hermitian and equivariant by construction.
    """
    i, j, shift, d = neighbour_pairs(atoms, rc)
    r = atoms.positions[j] + shift @ np.asarray(atoms.cell) - atoms.positions[i]
    u = (r / d[:, None])[:, [1, 2, 0]]  # tblite's (p_y, p_z, p_x)
    f = np.exp(-(d - 1.42) / 0.6)

    factors = np.array([ELEMENT_FACTORS[s] for s in atoms.get_chemical_symbols()])
    fs, fp = factors[:, 0], factors[:, 1]

    def block(ss, sp, pi, sigma):
        b = np.zeros((len(d), 4, 4))
        b[:, 0, 0] = ss * fs[i] * fs[j]
        b[:, 0, 1:] = (sp * fs[i] * fp[j])[:, None] * u
        b[:, 1:, 0] = -(sp * fp[i] * fs[j])[:, None] * u
        pp = fp[i] * fp[j]
        b[:, 1:, 1:] = (pi * pp)[:, None, None] * np.eye(3) + ((sigma - pi) * pp)[:, None, None] * u[:, :, None] * u[:, None, :]
        return b

    n = len(atoms)
    env = np.bincount(i, weights=f, minlength=n)
    h_on = np.zeros((n, 4, 4))
    h_on[:, 0, 0] = -14.0 + 0.2 * env
    h_on[:, 1:, 1:] = (-10.0 + 0.1 * env)[:, None, None] * np.eye(3)
    s_on = np.tile(np.eye(4), (n, 1, 1))
    return Blocks(i=np.concatenate([np.arange(n), i]), j=np.concatenate([np.arange(n), j]),
                  R=np.concatenate([np.zeros((n, 3), dtype=np.int64), shift]),
                  h=np.concatenate([h_on, block(-5 * f, 4 * f, -2.7 * f, 6 * f)]),
                  s=np.concatenate([s_on, block(0.3 * f, -0.25 * f, 0.2 * f, -0.3 * f)]),
                  norb=np.full(n, 4), meta={"r_c_A": rc})
