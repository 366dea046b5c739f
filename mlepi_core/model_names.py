"""Models by the names users give them: a reference solver's name or a trained model's folder.

The command line, the dashboard and the Dask workers all resolve ``--forces``/``--electrons``
style names here, so a name means the same model everywhere.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from .shipped import resolve_model_name


class UnknownModelError(ValueError):
    """A model name that is neither a known reference nor a model folder."""


def force_model_from_name(name: str):
    """'empirical' (LCBOP+KC), 'rebo' (REBO+KC), 'gfn1' (tblite), 'module:Class' (ASE
    calculator), a shipped model ("phonon") or the folder of a trained model."""
    name = resolve_model_name(name)
    if Path(name).is_dir():
        from .models import load_model

        return load_model(name, kind="phonon")
    if name in ("empirical", "lcbop", "rebo"):
        from .reference.lammps_forces import EmpiricalForceReference

        return EmpiricalForceReference(**({"intralayer": "rebo"} if name == "rebo" else {}))
    if name == "gfn1":
        from .reference.tblite_electrons import GFN1Reference

        return GFN1Reference()
    if ":" in name:
        from .reference.ase_adapter import AseForceModel

        module, cls = name.split(":", 1)
        try:
            calculator = getattr(importlib.import_module(module), cls)()
        except (ImportError, AttributeError) as err:
            raise UnknownModelError(f"cannot create ASE calculator {name!r}: {err}") from None
        return AseForceModel(calculator)
    raise UnknownModelError(f"unknown force model {name!r} (empirical, rebo, gfn1, module:Class "
                            f"or a model folder)")


def hamiltonian_model_from_name(name: str):
    """'reference' (GFN1-xTB, tblite), 'slater-koster' (the p_z model), 'gpaw' (GPAW LCAO,
    PBE, dzp; minutes per 6x6 cell) or the folder of a
    trained electron model, which then runs in float32, the precision it was trained in
    (faster than float64 on a CPU; H blocks equal to ~1e-7 relative). ``load_model``'s
    float64 default is for the tests of equivariance and Hermiticity at machine precision.
    Shipped models go by their names ("electron", "electron_sk")."""
    name = resolve_model_name(name)
    if name == "reference":
        from .reference.tblite_electrons import GFN1Reference

        return GFN1Reference()
    if name in ("slater-koster", "sk"):
        from .reference.slater_koster import SlaterKosterPz

        return SlaterKosterPz()
    if name == "gpaw":
        from .reference.gpaw_electrons import GPAWReference

        return GPAWReference()
    if Path(name).is_dir():
        import torch

        from .models import load_model

        return load_model(name, kind="electron", dtype=torch.float32)
    raise UnknownModelError(f"unknown Hamiltonian model {name!r} (reference, slater-koster, gpaw "
                            f"or a model folder)")


def relaxation_force_model(name: str):
    """The force model of a relaxation: a trained model folder runs in float32 (its training
    precision; forces move by ~1e-7 eV/A against float64, far below any fmax, at half the
    time and memory), a reference as ``force_model_from_name`` gives it."""
    name = resolve_model_name(name)
    if Path(name).is_dir():
        import torch

        from .models import load_model

        return load_model(name, kind="phonon", dtype=torch.float32)
    return force_model_from_name(name)


def model_identity(name: str) -> str:
    """Which model a result came from: a trained model folder by its weights' sha256 (the
    folder's path may hold other weights later), a reference by its name. Saved with
    relaxed cells and Monte Carlo checkpoints, which are reused only with the same models."""
    name = resolve_model_name(name)
    if Path(name).is_dir():
        from .models import read_metadata

        return f"weights sha256 {read_metadata(name).get('weights_sha256')}"
    return name


force_model = force_model_from_name  # the scripting API's names (mlepi_core.force_model)
hamiltonian_model = hamiltonian_model_from_name
