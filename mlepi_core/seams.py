"""The two seams through which the engine sees its models (docs/physics.md#the-two-seams).

- A *force model* maps a batch of structures to energies (eV) and forces (eV/A):
  the ML force field, the REBO+KC reference, or any ASE calculator.
- A *Hamiltonian model* maps a batch of structures to real-space atom-pair blocks
  H_ij(R), S_ij(R) (eV, dimensionless): the ML network, tblite, or DeepH data.

The engine calls nothing else, so a reference and a trained network are
interchangeable by a choice of model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
from ase import Atoms


@runtime_checkable
class ForceModel(Protocol):
    """Batch of structures -> energies (eV, shape (B,)) and forces (eV/A, one (N_b, 3) each)."""

    elements: frozenset[str] | None  # elements the model knows (None: any)

    def energies_forces(self, structures: Sequence[Atoms]) -> tuple[np.ndarray, list[np.ndarray]]:
        ...


@dataclass
class Blocks:
    """Real-space Hamiltonian and overlap of one structure as atom-pair blocks.

    Pair p couples orbitals of atom ``i[p]`` in the home cell with orbitals of atom
    ``j[p]`` in the cell displaced by the integer lattice vector ``R[p]``:
    ``h[p, a, b] = <i, a, 0| H |j, b, R>`` in eV, ``s[p]`` likewise for the overlap.
    Blocks are padded to the largest orbital count; ``norb[i]`` is the number of
    orbitals of atom i (4 for carbon: s, p_y, p_z, p_x in tblite's order,
    real harmonics m = -1, 0, +1; e3nn 0.6 wants p as (x, y, z)). On-site blocks are the pairs i == j, R == 0.
    Hermiticity means the pair (j, i, -R) is present with block h[p].T.
    """

    i: np.ndarray  # (P,) int
    j: np.ndarray  # (P,) int
    R: np.ndarray  # (P, 3) int, lattice-vector offsets of atom j
    h: np.ndarray  # (P, nmax, nmax) eV
    s: np.ndarray  # (P, nmax, nmax) dimensionless
    norb: np.ndarray  # (N,) int, orbitals per atom
    orbital_order: str = "s,py,pz,px"
    meta: dict = field(default_factory=dict)

    @property
    def n_atoms(self) -> int:
        return len(self.norb)

    @property
    def n_orbitals(self) -> int:
        return int(self.norb.sum())

    def offsets(self) -> np.ndarray:
        """Index of each atom's first orbital in the full matrix."""
        return np.concatenate([[0], np.cumsum(self.norb)[:-1]])


@runtime_checkable
class HamiltonianModel(Protocol):
    """Batch of structures -> one Blocks (H and S on the graph's pairs) each. A model that
    knows a structure's elements but not the structure (a stack whose band alignment it
    gets wrong) says why in ``refuses`` (optional: ``refusal`` reads it). One whose
    ``blocks`` threads may call side by side says so with ``thread_safe = True`` (optional):
    the engine then evaluates a batch's samples in parallel."""

    elements: frozenset[str] | None

    def blocks(self, structures: Sequence[Atoms]) -> list[Blocks]:
        ...


def refusal(model, atoms: Atoms) -> str:
    """Why ``model`` does not describe ``atoms`` ("" when it does, or says nothing)."""
    refuses = getattr(model, "refuses", None)
    return refuses(atoms) if refuses is not None else ""
