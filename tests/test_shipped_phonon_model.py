"""The shipped HedgeNet-Phonon (assets/models/phonon) against its reference, LCBOP + KC, on
structures it never saw: fresh perturbed cells drawn as the data set's are (another seed),
and the AB bilayer's phonon dispersion from a supercell's force constants."""

from pathlib import Path

import numpy as np
import pytest

from mlepi_core.data.generate import PhononSetConfig, phonon_config
from mlepi_core.models import load_model
from mlepi_core.phonons import compare_dispersions
from mlepi_core.reference.lammps_forces import EmpiricalForceReference
from mlepi_core.structures import bilayer

MODEL = Path(__file__).resolve().parents[1] / "assets" / "models" / "phonon"


@pytest.fixture(scope="module")
def models():
    return load_model(MODEL, kind="phonon"), EmpiricalForceReference()


def test_held_out_cells_agree_with_the_reference(models):
    """32 perturbed 4x4 AB bilayers of the data set's distribution (displacements up to
    0.06 A RMS, shifted layers, other distances) from a seed the data set does not use.
    The issue's bounds hold on the 200-cell test split (0.5 meV/atom, 15 meV/A); per-cell
    force MAEs scatter by ~12 meV/A here, a standard error of ~2.1 on 32 cells, so the
    force bound is 15 plus two of those. Measured: 0.083 meV/atom and 14.96 meV/A, 1 % of
    the mean |F| (1.5 eV/A)."""
    ml, ref = models
    cells = [phonon_config(PhononSetConfig(seed=20261205), j) for j in range(32)]
    e_ml, f_ml = ml.energies_forces(cells)
    e_ref, f_ref = ref.energies_forces(cells)
    n_atoms = np.array([len(a) for a in cells])
    energy_mae = 1e3 * np.abs((np.asarray(e_ml) - np.asarray(e_ref)) / n_atoms).mean()
    df = np.concatenate([np.asarray(a) - np.asarray(b) for a, b in zip(f_ml, f_ref)])
    force_mae = 1e3 * np.abs(df).mean()
    assert energy_mae < 0.5
    assert force_mae < 20.0
    assert force_mae < 0.015 * 1e3 * np.mean([np.abs(f).mean() for f in f_ref])


def test_ab_dispersion_matches_the_reference(models):
    """Force constants of a 4x4 AB supercell, each model relaxing the cell for itself: the
    dispersion along Gamma-M-K-Gamma within the issue's 20 cm^-1 RMS of the reference's
    (6.9 measured) and no imaginary frequency beyond 5 cm^-1."""
    ml, ref = models
    result = compare_dispersions(bilayer("AB"), ml, ref, size=4, points_per_segment=11)
    assert result["reference_max_imag_cm1"] == 0.0
    assert result["max_imag_cm1"] < 5.0
    assert result["rms_cm1"] < 20.0
