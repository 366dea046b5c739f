"""Harmonic phonons through phonopy, with any force model as the calculator.

Finite displacements (0.01 A by default) in an n x n x 1 supercell of the
primitive cell give force constants (eV/A^2), symmetrized with the acoustic sum
rule. Frequencies leave phonopy in THz and are converted at the edge.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.optimize import BFGS
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms

from .seams import ForceModel

DISPLACEMENT_A = 0.01  # Angstrom, finite-displacement amplitude


def to_phonopy(atoms: Atoms) -> PhonopyAtoms:
    """ASE -> PhonopyAtoms (same cell, positions, masses)."""
    return PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=np.asarray(atoms.cell),
                        positions=atoms.positions, masses=atoms.get_masses())


def supercell_atoms(phonon: Phonopy, primitive: Atoms) -> Atoms:
    """Phonopy's supercell as ASE atoms, carrying the primitive cell's layer labels."""
    sc = phonon.supercell
    atoms = Atoms(sc.symbols, positions=sc.positions, cell=sc.cell, pbc=True, masses=sc.masses)
    layer = np.asarray(primitive.arrays["layer"])
    unit_index = np.array([sc.u2u_map[k] for k in sc.s2u_map])  # supercell atom -> unit-cell atom
    atoms.arrays["layer"] = layer[unit_index]
    return atoms


def from_phonopy(cell: PhonopyAtoms, like: Atoms) -> Atoms:
    """PhonopyAtoms -> ASE, copying the layer labels of ``like`` (same atom order)."""
    atoms = Atoms(cell.symbols, positions=cell.positions, cell=cell.cell, pbc=True,
                  masses=cell.masses)
    atoms.arrays["layer"] = np.asarray(like.arrays["layer"]).copy()
    return atoms


class _ForceModelCalculator(Calculator):
    """Minimal ASE calculator over a force model (for ASE's optimizers)."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, model: ForceModel):
        super().__init__()
        self.model = model

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        energies, forces = self.model.energies_forces([self.atoms])
        self.results = {"energy": float(energies[0]), "free_energy": float(energies[0]),
                        "forces": np.asarray(forces[0])}


def relax_positions(atoms: Atoms, model: ForceModel, fmax: float = 1e-4, steps: int = 500) -> Atoms:
    """Copy of ``atoms`` with positions relaxed (fixed cell) until max |F| < fmax eV/A.

    Phonons need a force-free reference: flat AB layers carry +-0.05 eV/A from the
    interlayer potential, relieved by a ~0.003 A buckling.
    """
    relaxed = atoms.copy()
    relaxed.calc = _ForceModelCalculator(model)
    BFGS(relaxed, logfile=None).run(fmax=fmax, steps=steps)
    fmax_found = np.abs(relaxed.get_forces()).max()
    relaxed.calc = None
    if fmax_found > 10 * fmax:
        raise RuntimeError(f"relaxation did not converge (max force {fmax_found:.2e} eV/A)")
    return relaxed


def harmonic_phonons(primitive: Atoms, model: ForceModel, size: int | tuple[int, int] = 6,
                     displacement: float = DISPLACEMENT_A, symmetrize: bool = True) -> Phonopy:
    """Phonopy object with force constants of ``primitive`` from ``model``.

    ``size`` is the in-plane supercell n (or (n1, n2)); the stacking axis is
    never repeated. Force constants are symmetrized (acoustic sum rule,
    index permutation) unless ``symmetrize`` is False.
    """
    n1, n2 = (size, size) if np.isscalar(size) else size
    phonon = Phonopy(to_phonopy(primitive), supercell_matrix=np.diag([n1, n2, 1]),
                     primitive_matrix="P")
    phonon.generate_displacements(distance=displacement)
    ideal = supercell_atoms(phonon, primitive)
    cells = [from_phonopy(c, ideal) for c in phonon.supercells_with_displacements]
    _, forces = model.energies_forces(cells)
    phonon.forces = np.array(forces)
    phonon.produce_force_constants()
    if symmetrize:
        phonon.symmetrize_force_constants()
    return phonon
