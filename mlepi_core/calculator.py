"""An ASE calculator over any mlepi force model: the trained HedgeNet-Phonon or a reference.

    >>> from mlepi_core import MLEPICalculator, build
    >>> atoms = build("AB")
    >>> atoms.calc = MLEPICalculator("phonon")          # the shipped force field
    >>> atoms.get_potential_energy(), atoms.get_forces().shape

A model is given as an object with ``energies_forces`` (the force seam,
:class:`mlepi_core.seams.ForceModel`) or by name: a shipped model ("phonon"), a
trained model folder, or a reference ("empirical", "rebo", "gfn1"). Energies in eV,
forces in eV/A. The structure needs layer labels (``atoms.arrays["layer"]``) for the
heterogeneous network; unlabelled structures get them from their z coordinates.
"""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from .seams import ForceModel


class MLEPICalculator(Calculator):
    """ASE calculator: energy and forces of one structure from an mlepi force model.

    It is a force model too (``energies_forces`` on a batch, ``elements``), so phonopy's
    displaced supercells go through the network in batches rather than one by one.
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, model: ForceModel | str = "phonon", **kwargs):
        super().__init__(**kwargs)
        if isinstance(model, str):
            from .model_names import force_model_from_name

            model = force_model_from_name(model)
        if not hasattr(model, "energies_forces"):
            raise TypeError(f"{type(model).__name__} is not a force model (no energies_forces)")
        self.model = model

    @property
    def elements(self) -> frozenset[str] | None:
        """The elements the model knows (None: any)."""
        return getattr(self.model, "elements", None)

    def energies_forces(self, structures):
        """Energies (eV, (B,)) and forces (eV/A, one (N_b, 3) each) of a batch of structures."""
        return self.model.energies_forces(structures)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        structure = self.atoms
        if "layer" not in structure.arrays:
            from .structures import assign_layers

            structure = assign_layers(structure.copy())
        energies, forces = self.model.energies_forces([structure])
        energy = float(energies[0])
        self.results = {"energy": energy, "free_energy": energy,
                        "forces": np.asarray(forces[0], dtype=float)}
