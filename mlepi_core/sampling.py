"""Thermal displacements of a supercell from its harmonic phonons (Eq. 2 of the MLEPI paper).

Each normal coordinate is Gaussian with variance
<v^2> = hbar / (2 M omega) coth(hbar omega / 2 k_B T)  (quantum; zero-point motion at T = 0),
the three acoustic modes at Gamma excluded. phonopy's RandomDisplacements does
exactly this; the standard normals of sample j come from
SeedSequence([seed, j]) (keyed streams), so sample j is the same whatever the
batch size, worker or temperature (common random numbers across T).
"""

from __future__ import annotations

import warnings

import numpy as np
from ase import Atoms
from phonopy import Phonopy
from phonopy.phonon.random_displacements import RandomDisplacements

from .phonons import supercell_atoms
from .units import THZ_TO_CM1

IMAGINARY_TOL_CM1 = 5.0  # cm^-1: softer "imaginary" modes are numerical noise of the acoustic branch


class ThermalSampler:
    """Draw thermally displaced copies of a phonopy supercell at temperature T (Kelvin)."""

    def __init__(self, phonon: Phonopy, primitive: Atoms):
        if phonon.force_constants is None:
            raise ValueError("phonopy object has no force constants; produce them first")
        self.ideal = supercell_atoms(phonon, primitive)
        self._rd = RandomDisplacements(phonon.supercell, phonon.primitive,
                                       phonon.force_constants, dist_func="quantum")
        freqs_cm1 = self._rd.frequencies * THZ_TO_CM1
        self.n_imaginary = int(np.sum(freqs_cm1 < -IMAGINARY_TOL_CM1))
        if self.n_imaginary:
            warnings.warn(f"{self.n_imaginary} imaginary mode(s) in the sampling supercell "
                          f"(lowest {freqs_cm1.min():.1f} cm^-1); the structure is not a minimum "
                          f"of the force model")

    def displacements(self, temperature: float, first: int, count: int, seed: int) -> np.ndarray:
        """Displacements (count, N, 3) in Angstrom of samples first .. first+count-1."""
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 K, got {temperature}")
        normals = self._rd.draw_standard_normals(count, random_seed=seed, first_snapshot=first)
        self._rd.run(temperature, standard_normals=normals)
        return np.array(self._rd.u)

    def samples(self, temperature: float, first: int, count: int, seed: int) -> list[Atoms]:
        """Displaced supercells (ASE atoms with layer labels) of samples first .. first+count-1."""
        out = []
        for u in self.displacements(temperature, first, count, seed):
            atoms = self.ideal.copy()
            atoms.positions += u
            out.append(atoms)
        return out
