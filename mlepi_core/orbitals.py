"""The orbital convention of mlepi's blocks: real spherical harmonics, m = -l..l.

Every ``Blocks`` holds each atom's orbitals shell by shell (the shells' l come from
the data: ``Blocks.meta["orbital_types"]``, DeepH's ``orbital_types.dat``), and
within a shell the real harmonics in the order m = -l..l with positive
coefficients (no Condon-Shortley sign):

    l = 0: 1
    l = 1: y, z, x
    l = 2: xy, yz, 3z^2 - r^2, xz, x^2 - y^2
    l = 3: y(3x^2 - y^2), xyz, y(4z^2 - x^2 - y^2), z(2z^2 - 3x^2 - 3y^2),
           x(4z^2 - x^2 - y^2), z(x^2 - y^2), x(x^2 - 3y^2)

This is tblite's order, GPAW's (``gpaw/sphere/spherical_harmonics.py``, used as is),
and DeepH-E3's "wiki" order; the DeepH files hold OpenMX's order and
``mlepi_core.data.deeph`` permutes on reading and writing. A rotation R of the
structure turns the block of shells (l1, l2) into D^l1(R) H D^l2(R)^T, with
``wigner_d(l, R)`` below. The network works in e3nn's basis, which for
every l is this one up to a fixed orthogonal change of basis, ``to_e3nn(l)``.
"""

from __future__ import annotations

import numpy as np

_NAMES = {0: ["s"], 1: ["py", "pz", "px"], 2: ["dxy", "dyz", "dz2", "dxz", "dx2-y2"],
          3: [f"f{m:+d}" for m in range(-3, 4)]}


def shell_names(orbital_types: list[int]) -> str:
    """One atom's orbital names in this order, e.g. [0, 1, 0, 1, 2] -> "s,py,pz,px,s,py,...,dx2-y2"."""
    return ",".join(n for ell in orbital_types for n in _NAMES[int(ell)])


def real_harmonics(l: int, xyz: np.ndarray) -> np.ndarray:
    """Real harmonics of degree l (unnormalised polynomials, this module's order) at points (..., 3)."""
    x, y, z = np.moveaxis(np.asarray(xyz, dtype=float), -1, 0)
    r2 = x * x + y * y + z * z
    table = {
        0: [np.ones_like(x)],
        1: [y, z, x],
        2: [np.sqrt(3) * x * y, np.sqrt(3) * y * z, (3 * z * z - r2) / 2, np.sqrt(3) * x * z,
            np.sqrt(3) / 2 * (x * x - y * y)],
        3: [np.sqrt(5 / 8) * y * (3 * x * x - y * y), np.sqrt(15) * x * y * z,
            np.sqrt(3 / 8) * y * (4 * z * z - x * x - y * y), z * (2 * z * z - 3 * x * x - 3 * y * y) / 2,
            np.sqrt(3 / 8) * x * (4 * z * z - x * x - y * y), np.sqrt(15) / 2 * z * (x * x - y * y),
            np.sqrt(5 / 8) * x * (x * x - 3 * y * y)],
    }
    return np.stack(table[l], axis=-1)


_POINTS = np.random.default_rng(12345).normal(size=(64, 3))


def wigner_d(l: int, rotation: np.ndarray) -> np.ndarray:
    """D^l(R) (2l+1, 2l+1) with Y_l(R r) = D^l(R) Y_l(r) in this module's basis (orthogonal)."""
    a = real_harmonics(l, _POINTS)
    b = real_harmonics(l, _POINTS @ np.asarray(rotation, dtype=float).T)
    return np.linalg.lstsq(a, b, rcond=None)[0].T


def block_rotation(orbital_types: list[int], rotation: np.ndarray) -> np.ndarray:
    """Block-diagonal D(R) over one atom's shells."""
    n = sum(2 * int(l) + 1 for l in orbital_types)
    out, o = np.zeros((n, n)), 0
    for l in orbital_types:
        d = 2 * int(l) + 1
        out[o:o + d, o:o + d] = wigner_d(int(l), rotation)
        o += d
    return out


def to_e3nn(l: int) -> np.ndarray:
    """Orthogonal U (2l+1, 2l+1) taking l-components in this order to e3nn's basis (v_e3nn = U v).

    e3nn's l = 1 is (x, y, z), a permutation; its l = 2 mixes dz2 and dx2-y2 (e3nn uses
    y as the polar axis), so d blocks need U, not a permutation."""
    import torch
    from e3nn import o3

    a = real_harmonics(l, _POINTS)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = o3.spherical_harmonics(l, torch.as_tensor(_POINTS), normalize=True).numpy()
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.linalg.lstsq(a, b, rcond=None)[0].T
