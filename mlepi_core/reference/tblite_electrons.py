"""The electron reference: GFN1-xTB through tblite, split into real-space blocks.

tblite solves a periodic cell at the Gamma point only. Its converged Fock matrix
F = S C diag(eps) C^T S (C^T S C = 1) and overlap S of a supercell are split into
atom-pair blocks H_ij(R), S_ij(R) by the minimal-image convention: the Gamma
element between atoms i and j is assigned to the one lattice vector R that puts
j closest to i, and kept if that distance is below r_c. This is exact for pairs
within r_c when the cell is wide enough (docs/physics.md#electrons-gfn1-xtb-through-tblite: r_c = 6 A on a 6x6
AB bilayer reproduces tblite's eigenvalues to ~0.03 meV).

Trap avoided here: ``res.get("hamiltonian-matrix")`` is the *core* Hamiltonian
H0 before self-consistency, not the label we want.

Orbital order per carbon atom: s, p_y, p_z, p_x (real harmonics m = -1, 0, +1,
standard signs; checked on C2 dimers in the tests). Note that e3nn 0.6 orders l = 1
as (x, y, z) with D(R) = R, so the p block maps to e3nn's basis by the permutation
``P_TO_E3NN`` (no sign change).
"""

from __future__ import annotations

import ctypes
import os
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from ase import Atoms

from .block_split import OrbitalTable, pair_list
from ..seams import Blocks
from ..units import BOHR_A, HARTREE_EV, KB_EV_PER_K

OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0"
DEFAULT_RC = 6.0  # Angstrom, block cutoff for labels (docs/physics.md#electrons-gfn1-xtb-through-tblite)
# GFN1's s, p and d shells on S and Mo are nearly linearly dependent (MoS2: smallest overlap
# eigenvalue 0.004 at Gamma), so their pair blocks reach further and S(k) is taken by
# canonical orthogonalisation (electrons.bloch_pair; benchmarks/mos2_gfn1_blocks.py)
NEAR_DEPENDENT_Z = frozenset({16, 42})
NEAR_DEPENDENT_RC = 8.0  # Angstrom
OVERLAP_FLOOR = 0.01
ELECTRONIC_T_K = 300.0  # Kelvin, Fermi smearing of the SCF
P_TO_E3NN = [2, 0, 1]  # tblite (p_y, p_z, p_x)[P_TO_E3NN] = e3nn's (x, y, z)
# GFN1 valence shells (l) per Z in tblite's order (S: s, p, d; Mo: d, s, p)
SHELLS = {1: (0,), 6: (0, 1), 5: (0, 1), 7: (0, 1), 8: (0, 1), 16: (0, 1, 2), 42: (2, 0, 1)}


def _load_tblite():
    """Import tblite, first exposing OpenBLAS globally so tblite's BLAS calls use it.

    The tblite wheel bundles reference netlib BLAS/LAPACK; OpenBLAS (Debian
    libopenblas0-pthread, installed by our set-up) gives identical results 4-10x
    faster. Without it the reference still runs, slowly.
    """
    if os.path.exists(OPENBLAS) and os.environ.get("MLEPI_NO_OPENBLAS") != "1":
        ctypes.CDLL(OPENBLAS, mode=ctypes.RTLD_GLOBAL)
    else:
        warnings.warn("OpenBLAS not found: tblite runs on its bundled reference BLAS (slow)")
    from tblite.interface import Calculator

    return Calculator


@dataclass
class TBLiteResult:
    """One converged GFN1-xTB calculation at Gamma, in engine units."""

    energy: float  # eV
    forces: np.ndarray  # (N, 3) eV/A
    fock: np.ndarray  # (M, M) eV, converged Fock matrix F = S C eps C^T S
    overlap: np.ndarray  # (M, M)
    orbital_energies: np.ndarray  # (M,) eV
    occupations: np.ndarray  # (M,) electrons per orbital (0..2)
    norb: np.ndarray  # (N,) orbitals per atom


def orbitals_per_atom(numbers: np.ndarray) -> np.ndarray:
    """Number of GFN1-xTB basis functions of each atom (s: 1, s+p: 4)."""
    try:
        return np.array([sum(2 * l + 1 for l in SHELLS[int(z)]) for z in numbers])
    except KeyError as err:
        raise ValueError(f"element Z={err.args[0]} has no GFN1 basis defined in mlepi") from None


def check_cell_for_cutoff(cell: np.ndarray, r_c: float) -> None:
    """Raise ValueError unless every in-plane lattice vector is at least 2 r_c + 1 A long.

    Then at most one periodic image of an atom lies within r_c of another, so the
    minimal-image split of the Gamma-point matrices is unambiguous.
    """
    a1, a2 = np.asarray(cell)[:2]
    shortest = min(np.linalg.norm(v) for v in (a1, a2, a1 + a2, a1 - a2))
    if shortest < 2 * r_c + 1:
        raise ValueError(f"cell too small for r_c = {r_c} A: its shortest in-plane lattice "
                         f"vector is {shortest:.2f} A, need >= {2 * r_c + 1:.2f} A "
                         f"(use a larger supercell)")


class GFN1Reference:
    """GFN1-xTB (tblite) as Hamiltonian model and (slow, quantum) force model."""

    elements = frozenset({"H", "B", "C", "N", "O", "S", "Mo"})

    def __init__(self, r_c: float | None = None, electronic_temperature: float = ELECTRONIC_T_K,
                 accuracy: float = 1.0):
        self.r_c = r_c  # None: DEFAULT_RC, or NEAR_DEPENDENT_RC with S or Mo
        self.electronic_temperature = electronic_temperature
        self.accuracy = accuracy
        self._calculator = _load_tblite()

    def __repr__(self) -> str:
        return (f"GFN1Reference(r_c={self.r_c}, electronic_temperature={self.electronic_temperature}, "
                f"accuracy={self.accuracy})")

    def refuses(self, atoms: Atoms) -> str:
        """Graphene next to hBN: GFN1-xTB puts hBN's highest valence state at K 0.15 eV
        below graphene's Dirac point, where PBE (GPAW, dzp) has it 1.26 eV below
        (benchmarks/graphene_hbn_alignment.py), so the bands it gives such a stack near
        E_F are not graphene's."""
        from ..structures import detect_layers

        layer = atoms.arrays["layer"] if "layer" in atoms.arrays else detect_layers(atoms)
        symbols = np.asarray(atoms.get_chemical_symbols())
        sheets = [set(symbols[layer == k]) for k in np.unique(layer)]
        if {"C"} in sheets and any(sheet & {"B", "N"} for sheet in sheets):
            return ("GFN1-xTB puts hBN's valence band at K 0.15 eV below graphene's Dirac point (PBE: 1.26 eV; "
                    "benchmarks/graphene_hbn_alignment.py), so its bands of graphene on hBN are not graphene's; "
                    "no electron reference here describes this stack yet")
        return ""

    def solve(self, atoms: Atoms) -> TBLiteResult:
        """Run one SCF calculation of ``atoms`` (periodic, Gamma point)."""
        bad = set(atoms.get_chemical_symbols()) - self.elements
        if bad:
            raise ValueError(f"GFN1 reference in mlepi supports {sorted(self.elements)}, "
                             f"not {sorted(bad)}")
        calc = self._calculator("GFN1-xTB", atoms.numbers, atoms.positions / BOHR_A,
                                lattice=np.asarray(atoms.cell) / BOHR_A,
                                periodic=np.array([True, True, True]))
        calc.set("verbosity", 0)
        calc.set("save-integrals", 1)
        calc.set("accuracy", self.accuracy)
        calc.set("temperature", self.electronic_temperature * KB_EV_PER_K / HARTREE_EV)
        res = calc.singlepoint()
        s = res.get("overlap-matrix")
        c = res.get("orbital-coefficients")
        eps = res.get("orbital-energies")
        sc = s @ c
        fock = (sc * eps) @ sc.T
        return TBLiteResult(
            energy=float(res.get("energy")) * HARTREE_EV,
            forces=-res.get("gradient") * HARTREE_EV / BOHR_A,
            fock=0.5 * (fock + fock.T) * HARTREE_EV,
            overlap=s,
            orbital_energies=eps * HARTREE_EV,
            occupations=res.get("orbital-occupations"),
            norb=orbitals_per_atom(atoms.numbers),
        )

    def cutoff(self, atoms: Atoms) -> float:
        """The block cutoff r_c (A) for ``atoms``."""
        if self.r_c is not None:
            return self.r_c
        return NEAR_DEPENDENT_RC if set(atoms.numbers) & NEAR_DEPENDENT_Z else DEFAULT_RC

    def split_blocks(self, atoms: Atoms, result: TBLiteResult, r_c: float | None = None) -> Blocks:
        """Minimal-image split of Gamma-point F and S into pair blocks within ``r_c``."""
        r_c = self.cutoff(atoms) if r_c is None else r_c
        check_cell_for_cutoff(atoms.cell, r_c)
        i, j, shift = pair_list(atoms, r_c)
        norb = result.norb
        table = OrbitalTable(norb)
        h, s = table.gather(result.fock, i, j), table.gather(result.overlap, i, j)
        return Blocks(i=i, j=j, R=shift, h=h, s=s, norb=norb.copy(),
                      meta={"source": "GFN1-xTB (tblite)", "r_c_A": r_c, "units": "H: eV",
                            "electronic_temperature_K": self.electronic_temperature,
                            "overlap_floor": OVERLAP_FLOOR if set(atoms.numbers) & NEAR_DEPENDENT_Z else 0.0})

    def blocks(self, structures: Sequence[Atoms]) -> list[Blocks]:
        """Hamiltonian-model seam: real-space blocks of every structure."""
        return [self.split_blocks(a, self.solve(a)) for a in structures]

    def energies_forces(self, structures: Sequence[Atoms]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Force-model seam (GFN1 energies and forces; not our force reference, see docs/physics.md#electrons-gfn1-xtb-through-tblite)."""
        results = [self.solve(a) for a in structures]
        return np.array([r.energy for r in results]), [r.forces for r in results]

    def as_ase_calculator(self):
        """tblite's own ASE calculator with the same settings."""
        _load_tblite()
        from tblite.ase import TBLite

        return TBLite(method="GFN1-xTB", accuracy=self.accuracy,
                      electronic_temperature=self.electronic_temperature, verbosity=0)
