"""The phonon data set as extended XYZ, through ASE's own reader and writer.

In memory each frame is an ``ase.Atoms`` with ``info["energy"]`` (eV),
``arrays["forces"]`` (eV/A), ``arrays["layer"]`` and free-form info (``split``,
``config_id``, ...). In the file, energy and forces sit under ``REF_energy`` and
``REF_forces``, the names MACE users know: ASE 3.29 moves plain ``energy``/``forces``
into a SinglePointCalculator on reading, where they would be mixed up with the results
of whatever calculator is attached later.

Precision, as ASE writes it: info values (energy included) and the cell with Python's
repr, hence exactly; per-atom float arrays (positions, forces) with ``%16.8f``, i.e. to
within 5e-9 A and 5e-9 eV/A; integers (layer) exactly. Info strings that look like
numbers or T/F come back as numbers or booleans (ASE's parsing).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterable

import numpy as np
from ase import Atoms
from ase.io import read, write

from ..structures import assign_layers
from .deeph import DataFormatError

ENERGY_KEY = "REF_energy"  # eV, in atoms.info in the file
FORCES_KEY = "REF_forces"  # eV/A, in atoms.arrays in the file
POSITION_DECIMALS = 8  # ASE's %16.8f for per-atom float columns


def write_extxyz(path: str | Path, frames: Iterable[Atoms]) -> Path:
    """Write frames (energy in eV, forces in eV/A, layer, info) to ``path`` atomically."""
    path = Path(path)
    out = []
    for atoms in frames:
        a = atoms.copy()  # drops any calculator, whose results ASE would write as energy=
        if "energy" in a.info:
            a.info[ENERGY_KEY] = float(a.info.pop("energy"))
        if "forces" in a.arrays:
            forces = np.asarray(a.arrays.pop("forces"), dtype=np.float64)
            if forces.shape != (len(a), 3):
                raise ValueError(f"forces have shape {forces.shape}, need ({len(a)}, 3)")
            a.arrays[FORCES_KEY] = forces
        out.append(a)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp, out, format="extxyz", write_results=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_extxyz(path: str | Path) -> list[Atoms]:
    """Read frames written by ``write_extxyz`` (or any extxyz with energies and forces).

    Plain ``energy``/``forces`` that ASE put in a calculator are taken back into
    ``info``/``arrays`` and the calculator removed; frames without a "layer" column get
    layers detected from z.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: missing")
    if path.stat().st_size == 0:
        return []
    try:
        frames = read(path, index=":", format="extxyz")
    except Exception as err:  # ASE raises many types for a garbled file
        detail = str(err).splitlines()[0] if str(err) else "no details"
        raise DataFormatError(f"{path}: not a readable extxyz file "
                              f"({type(err).__name__}: {detail})") from None
    for k, a in enumerate(frames):
        results = a.calc.results if a.calc is not None else {}
        a.calc = None
        if ENERGY_KEY in a.info:
            a.info["energy"] = float(a.info.pop(ENERGY_KEY))
        elif "energy" in results:
            a.info["energy"] = float(results["energy"])
        if FORCES_KEY in a.arrays:
            a.arrays["forces"] = np.asarray(a.arrays.pop(FORCES_KEY), dtype=np.float64)
        elif "forces" in results:
            a.arrays["forces"] = np.asarray(results["forces"], dtype=np.float64)
        if "forces" in a.arrays and a.arrays["forces"].shape != (len(a), 3):
            raise DataFormatError(f"{path}: frame {k} forces have shape {a.arrays['forces'].shape}")
        if "layer" not in a.arrays:
            assign_layers(a)
    return frames
