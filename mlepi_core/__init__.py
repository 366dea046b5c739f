"""mlepi: electron-phonon interactions in layered materials, accelerated by ML (MLEPI).

The scripting API (each name is imported on first use, so ``import mlepi_core`` is light
and changes nothing in the process)::

    import mlepi_core as mlepi

    atoms = mlepi.build("AB")                        # structures: build, load, supercell
    forces = mlepi.force_model("phonon")             # shipped HedgeNet-Phonon, or "empirical", a folder
    electrons = mlepi.hamiltonian_model("electron")  # shipped HedgeNet-Electron, or "reference", a folder
    settings = mlepi.MCSettings(temperatures=(300.0,), n_samples=8, supercell=6)
    engine = mlepi.MonteCarloEngine(atoms, forces, electrons, settings)
    for batch in engine.run_all():
        print(batch.n_done, batch.vf_mean, batch.vf_se)   # v_F in 10^6 m/s
    mlepi.write_results("ab_300K", {"ml": engine})

``MLEPICalculator`` is the ASE calculator of any force model; ``harmonic_phonons`` the
phonopy object of a structure under a force model.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    # structures
    "build": "structures", "load": "structures", "bilayer": "structures", "monolayer": "structures",
    "twisted_bilayer": "structures", "hbn_bilayer": "structures", "tmd_bilayer": "structures",
    "supercell": "structures", "assign_layers": "structures",
    "StructureError": "structures",
    # models
    "force_model": "model_names", "hamiltonian_model": "model_names", "load_model": "models",
    "shipped_model": "shipped", "shipped_model_names": "shipped", "MLEPICalculator": "calculator",
    # phonons, Monte Carlo, results
    "harmonic_phonons": "phonons", "relax_positions": "phonons",
    "MCSettings": "engine", "MonteCarloEngine": "engine", "write_results": "results",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mlepi_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
