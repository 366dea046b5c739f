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
# sampling -> ZG amplitude rule (special_displacements.RULES); "mc" draws Gaussian normals
ZG_RULES = {"zg": "sign", "zg-gh": "gauss-hermite"}
SAMPLINGS = ("mc", *ZG_RULES)


class ThermalSampler:
    """Draw thermally displaced copies of a phonopy supercell at temperature T (Kelvin).

    Imaginary modes (below -``imaginary_tol_cm1``) are reported with a warning and
    excluded, like the acoustic modes at Gamma (phonopy would otherwise give them the
    amplitude of a real mode of the same |omega|). With ``antithetic``, samples 2p
    and 2p + 1 are +u and -u of pair p's normals, a variance reduction for
    observables that are smooth in u.
    """

    def __init__(self, phonon: Phonopy, primitive: Atoms, imaginary_tol_cm1: float = IMAGINARY_TOL_CM1):
        if phonon.force_constants is None:
            raise ValueError("phonopy object has no force constants; produce them first")
        self.ideal = supercell_atoms(phonon, primitive)
        self._rd = RandomDisplacements(phonon.supercell, phonon.primitive,
                                       phonon.force_constants, dist_func="quantum")
        freqs = self._rd.frequencies  # THz, imaginary as negative
        imaginary = freqs * THZ_TO_CM1 < -imaginary_tol_cm1
        self.n_imaginary = int(imaginary.sum())
        self.lowest_cm1 = float(freqs.min() * THZ_TO_CM1)
        if self.n_imaginary:
            warnings.warn(f"{self.n_imaginary} imaginary mode(s) in the sampling supercell "
                          f"(lowest {self.lowest_cm1:.1f} cm^-1) are excluded from the sampling: "
                          f"the structure is not a minimum of the force model")
            self._rd.frequencies = np.where(imaginary, 0.0, freqs)  # below cutoff: no amplitude
        self._phonon = phonon
        self._special = None

    def displacements(self, temperature: float, first: int, count: int, seed: int,
                      antithetic: bool = False) -> np.ndarray:
        """Displacements (count, N, 3) in Angstrom of samples first .. first+count-1."""
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 K, got {temperature}")
        index = np.arange(first, first + count)
        key = index // 2 if antithetic else index
        lo, hi = int(key.min()), int(key.max())
        ii, ij = self._rd.draw_standard_normals(hi - lo + 1, random_seed=seed, first_snapshot=lo)
        pick = key - lo
        sign = np.where(index % 2 == 1, -1.0, 1.0) if antithetic else np.ones(count)
        normals = (ii[:, pick] * sign[None, :, None], ij[:, :, pick] * sign[None, None, :, None])
        self._rd.run(temperature, standard_normals=normals)
        return np.array(self._rd.u)

    def gamma_normals(self, first: int, count: int, seed: int, antithetic: bool = False) -> np.ndarray:
        """(count, 3 n_primitive) standard normals at q = Gamma of samples first .. first+count-1.

        The first-order response of an observable that is invariant under the primitive
        translations (v_F, gamma_1) is a linear function of these alone (crystal momentum),
        and their mean is exactly zero: the control variates of ``statistics.control_variate_mean``.
        """
        index = np.arange(first, first + count)
        key = index // 2 if antithetic else index
        lo, hi = int(key.min()), int(key.max())
        ii, _ = self._rd.draw_standard_normals(hi - lo + 1, random_seed=seed, first_snapshot=lo)
        gamma = int(np.flatnonzero(np.all(np.abs(self._rd.qpoints[: ii.shape[0]]) < 1e-12, axis=1))[0])
        sign = np.where(index % 2 == 1, -1.0, 1.0) if antithetic else np.ones(count)
        return ii[gamma, key - lo] * sign[:, None]

    @property
    def special(self):
        """The ZG configurations on these phonons (``special_displacements.SpecialDisplacements``)."""
        if self._special is None:
            from .special_displacements import SpecialDisplacements

            p = self._phonon
            rd = RandomDisplacements(p.supercell, p.primitive, p.force_constants, dist_func="quantum",
                                     sampling_matrix="eigenvector")
            self._special = SpecialDisplacements(rd, self._rd.frequencies, p.primitive.s2p_map)
        return self._special

    def special_displacements(self, temperature: float, first: int, count: int, seed: int,
                              rule: str = "sign") -> np.ndarray:
        """Displacements (count, N, 3) in Angstrom of ZG configurations first .. first+count-1
        (pairs +u, -u; amplitude ``rule``, ``special_displacements.py``), on the same phonons
        and amplitudes."""
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 K, got {temperature}")
        return self.special.sample_displacements(temperature, first, count, seed, rule)

    def samples(self, temperature: float, first: int, count: int, seed: int,
                antithetic: bool = False, sampling: str = "mc") -> list[Atoms]:
        """Displaced supercells (ASE atoms with layer labels) of samples first .. first+count-1:
        Monte Carlo (``sampling="mc"``) or ZG configurations (``"zg"``: amplitudes +-sigma;
        ``"zg-gh"``: Gauss-Hermite amplitudes, exact to fourth order)."""
        if sampling in ZG_RULES:
            displacements = self.special_displacements(temperature, first, count, seed, ZG_RULES[sampling])
        elif sampling == "mc":
            displacements = self.displacements(temperature, first, count, seed, antithetic)
        else:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        out = []
        for u in displacements:
            atoms = self.ideal.copy()
            atoms.positions += u
            out.append(atoms)
        return out
