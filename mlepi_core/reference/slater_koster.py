"""The Slater-Koster p_z model: the field's standard electron reference for twisted graphene.

One p_z orbital per carbon, orthogonal (S = 1), and the two-centre hopping between
orbitals i and j at separation d = r_j - r_i, u = d / |d| (docs/physics.md#twisted-bilayers-the-slater-koster-p_z-model),

    t_ij = V_pi(|d|) [n_i.n_j - (n_i.u)(n_j.u)] + V_sigma(|d|) (n_i.u)(n_j.u)  (eV),
    V_pi(r) = V_PI0 exp(-(r - A_CC) / DELTA),  V_sigma(r) = V_SIGMA0 exp(-(r - D0) / DELTA),

times a smooth switch F(r) from 1 at R_ON to 0 at R_CUT. n_i is atom i's local layer
normal (the normal of the plane fitted through its in-layer neighbours, oriented along
+z, the stacking direction), so every matrix element is a rotation-invariant scalar; for
flat layers n = z and t reduces to the familiar V_pi (1 - cos^2) + V_sigma cos^2 with
cos = d_z / |d|. On-site energies are zero (the Dirac point of a flat monolayer sits at
the on-site energy minus the second-neighbour shift).

Parameters (Moon & Koshino, PRB 85, 195458 (2012); Trambly de Laissardiere, Mayou and
Magaud, Nano Lett. 10, 804 (2010)): V_PI0 = -2.7 eV at the C-C bond A_CC = 1.42 A,
V_SIGMA0 = 0.48 eV at the interlayer distance D0 = 3.35 A, decay length DELTA = 0.184 a
with a = 2.46 A. Their model has no cutoff; at 6 A the hoppings are below 1e-5 eV
(in-plane) and 1e-3 eV (interlayer), and F(r) switches them off between 5 and 6 A, which
keeps every term smooth when atoms move.

Behind the Hamiltonian-model seam (``blocks``, in the DeepH layout mlepi uses
everywhere: one 1x1 block per pair within R_CUT, orbital "p_z along the local normal")
and as sparse matrices for large cells (``sparse_hk``: the 11,164-atom magic-angle cell).
The orbital follows the local normal, so under rotations it is a scalar: to the DeepH
layout and the equivariant networks it is an l = 0 orbital (``orbital_types`` 0, order
"s"), and ``meta["orbital"]`` says what it is.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms

from ..graph import neighbour_pairs
from ..seams import Blocks

# --- the parameters, in one place (eV, Angstrom) ----------------------------------------
V_PI0 = -2.7  # eV, in-plane pi hopping at the bond length (Moon & Koshino 2012)
A_CC = 2.46 / np.sqrt(3.0)  # 1.420 A, C-C bond of graphene with a = 2.46 A
V_SIGMA0 = 0.48  # eV, sigma hopping at the interlayer distance (Moon & Koshino 2012)
D0 = 3.35  # A, interlayer distance of the parametrisation
DELTA = 0.184 * 2.46  # 0.4526 A, decay length (0.184 a; Moon & Koshino 2012)
R_ON, R_CUT = 5.0, 6.0  # A, smooth switch-off of the hoppings
NEIGHBOUR_CUT = 1.8  # A, in-layer neighbours that define an atom's local normal
ORBITAL = "p_z along the local normal"


def switch(r: np.ndarray) -> np.ndarray:
    """Smooth step from 1 (r <= R_ON) to 0 (r >= R_CUT) with zero first and second derivatives."""
    x = np.clip((np.asarray(r) - R_ON) / (R_CUT - R_ON), 0.0, 1.0)
    return 1.0 - x ** 3 * (10.0 - 15.0 * x + 6.0 * x ** 2)


def v_pi(r: np.ndarray) -> np.ndarray:
    return V_PI0 * np.exp(-(np.asarray(r) - A_CC) / DELTA)


def v_sigma(r: np.ndarray) -> np.ndarray:
    return V_SIGMA0 * np.exp(-(np.asarray(r) - D0) / DELTA)


def local_normals(atoms: Atoms) -> np.ndarray:
    """(N, 3) unit normals: per atom, the normal of the plane through it that best fits its
    in-layer neighbours within NEIGHBOUR_CUT (smallest principal axis of sum_j v_ij v_ij^T),
    oriented along +z. An atom with fewer than two such neighbours gets z."""
    n = len(atoms)
    layer = np.asarray(atoms.arrays["layer"]) if "layer" in atoms.arrays else np.zeros(n, int)
    i, j, shift, _ = neighbour_pairs(atoms, NEIGHBOUR_CUT)
    keep = layer[i] == layer[j]
    i, j, shift = i[keep], j[keep], shift[keep]
    v = atoms.positions[j] + shift @ np.asarray(atoms.cell) - atoms.positions[i]
    cov = np.zeros((n, 3, 3))
    np.add.at(cov, i, v[:, :, None] * v[:, None, :])
    _, vecs = np.linalg.eigh(cov)  # ascending: the first is the plane normal
    normals = vecs[:, :, 0]
    normals *= np.where(normals[:, 2] < 0, -1.0, 1.0)[:, None]
    few = np.bincount(i, minlength=n) < 2
    normals[few] = (0.0, 0.0, 1.0)
    return normals


def hoppings(atoms: Atoms, normals: np.ndarray | None = None):
    """Every ordered pair within R_CUT: (i, j, shift (P, 3) int, t (P,) eV)."""
    if normals is None:
        normals = local_normals(atoms)
    i, j, shift, dist = neighbour_pairs(atoms, R_CUT)
    d = atoms.positions[j] + shift @ np.asarray(atoms.cell) - atoms.positions[i]
    u = d / dist[:, None]
    ni, nj = normals[i], normals[j]
    niu, nju = np.einsum("pk,pk->p", ni, u), np.einsum("pk,pk->p", nj, u)
    t = (v_pi(dist) * (np.einsum("pk,pk->p", ni, nj) - niu * nju) + v_sigma(dist) * niu * nju) * switch(dist)
    return i, j, shift, t


class SlaterKosterPz:
    """The Slater-Koster p_z reference behind the Hamiltonian-model seam (carbon only)."""

    elements = frozenset({"C"})
    r_c = R_CUT
    thread_safe = True  # blocks() holds no state

    def __repr__(self) -> str:
        return (f"SlaterKosterPz(V_pi={V_PI0} eV, V_sigma={V_SIGMA0} eV, delta={DELTA:.4f} A, "
                f"switch {R_ON}-{R_CUT} A)")

    def _check(self, atoms: Atoms) -> None:
        bad = set(atoms.get_chemical_symbols()) - self.elements
        if bad:
            raise ValueError(f"the Slater-Koster p_z model describes carbon only, not {sorted(bad)}")

    def blocks(self, structures: Sequence[Atoms]) -> list[Blocks]:
        """Hamiltonian-model seam: 1x1 blocks H_ij(R) for every pair within R_CUT plus the
        on-site zeros; S is the identity."""
        out = []
        for atoms in structures:
            self._check(atoms)
            n = len(atoms)
            i, j, shift, t = hoppings(atoms)
            i = np.concatenate([np.arange(n), i])
            j = np.concatenate([np.arange(n), j])
            shift = np.concatenate([np.zeros((n, 3), dtype=np.int64), shift])
            h = np.concatenate([np.zeros(n), t])
            s = np.concatenate([np.ones(n), np.zeros(len(t))])
            order = np.lexsort((shift[:, 2], shift[:, 1], shift[:, 0], j, i))
            out.append(Blocks(i=i[order], j=j[order], R=shift[order], h=h[order, None, None],
                              s=s[order, None, None], norb=np.ones(n, dtype=np.int64), orbital_order="s",
                              meta={"source": "Slater-Koster p_z (Moon & Koshino 2012)", "orbital": ORBITAL,
                                    "orbital_types": [[0]] * n, "r_c_A": R_CUT, "units": "H: eV",
                                    "valence_electrons": n}))
        return out

    def sparse_hk(self, atoms: Atoms, k_frac: Sequence[float]):
        """H(k) (scipy.sparse CSR, complex, eV) at fractional k of the cell, in the cell
        gauge (phases exp(i 2 pi k.R)); S = 1. For large cells and sparse eigen-solvers."""
        import scipy.sparse as sp

        self._check(atoms)
        i, j, shift, t = hoppings(atoms)
        phase = np.exp(2j * np.pi * shift @ np.asarray(k_frac, dtype=float))
        n = len(atoms)
        hk = sp.csr_matrix((t * phase, (i, j)), shape=(n, n))
        return 0.5 * (hk + hk.getH())  # exactly Hermitian (pairs come in both orders)
