"""Any ASE calculator as a force model (seams.ForceModel), so a user's DFT replaces ours.

``AseForceModel(Vasp(...))``, ``AseForceModel(GPAW(...))`` or a foundation model's
calculator then labels phonons and data sets exactly where the empirical reference
(``lammps_forces.EmpiricalForceReference``) would (docs/physics.md#any-ase-calculator-any-deeph-data-set).
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator  # for the annotations

from ..structures import StructureError


class AseForceModel:
    """Force model around an ASE calculator: energies (eV, (B,)) and forces (eV/A, (N_b, 3)).

    ``calculator`` is an ASE calculator, shared by all structures (each is copied and
    the copy gets the calculator, so the caller's atoms are left untouched), or a
    zero-argument callable (a calculator class, a lambda) that returns a fresh
    calculator per structure, for codes that keep per-system state. ``elements``
    (symbols) limits the structures accepted; None accepts any. Energies are
    ``get_potential_energy()``, i.e. ASE's "energy".
    """

    def __init__(self, calculator: BaseCalculator | Callable[[], BaseCalculator],
                 elements: Iterable[str] | None = None):
        self.calculator = calculator
        self.elements = frozenset(elements) if elements is not None else None

    def __repr__(self) -> str:
        return f"AseForceModel({self.calculator!r}, elements={self.elements})"

    def _calculator_for_one(self) -> BaseCalculator:
        calc = self.calculator
        if not isinstance(calc, type) and hasattr(calc, "get_potential_energy"):  # an instance
            return calc
        return calc()

    def energies_forces(self, structures: Sequence[Atoms]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Energies (eV, shape (B,)) and forces (eV/A, one (N_b, 3) array each)."""
        energies, forces = [], []
        for atoms in structures:
            if self.elements is not None:
                unknown = sorted(set(atoms.get_chemical_symbols()) - self.elements)
                if unknown:
                    raise StructureError(f"element(s) {', '.join(unknown)} not known to this "
                                         f"model (it knows {', '.join(sorted(self.elements))})")
            work = atoms.copy()
            work.calc = self._calculator_for_one()
            energies.append(float(work.get_potential_energy()))
            forces.append(np.array(work.get_forces(), dtype=float))
        return np.array(energies, dtype=float), forces
