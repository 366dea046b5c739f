"""MLEPICalculator: the ASE face of every force model (as MACE tests its calculator)."""

import numpy as np
import pytest
from ase.optimize import BFGS

from mlepi_core import MLEPICalculator, build, force_model, harmonic_phonons, shipped_model
from mlepi_core.structures import supercell


@pytest.fixture(scope="module")
def phonon_model():
    return force_model("phonon")  # the shipped HedgeNet-Phonon, float64


def rattled_bilayer(seed=0):
    atoms = supercell(build("AB"), 2)
    atoms.positions += np.random.default_rng(seed).normal(scale=0.03, size=atoms.positions.shape)
    return atoms


def test_forces_are_minus_the_energy_gradient_through_ase(phonon_model):
    atoms = rattled_bilayer()
    atoms.calc = MLEPICalculator(phonon_model)
    forces = atoms.get_forces()
    h = 1e-4
    for a, c in [(0, 0), (3, 2), (9, 1), (14, 2)]:
        energies = []
        for sign in (1, -1):
            displaced = atoms.copy()
            displaced.calc = MLEPICalculator(phonon_model)
            displaced.positions[a, c] += sign * h
            energies.append(displaced.get_potential_energy())
        fd = -(energies[0] - energies[1]) / (2 * h)
        assert abs(fd - forces[a, c]) < 1e-5 + 1e-4 * abs(forces[a, c]), (a, c, fd, forces[a, c])


def test_energy_is_extensive_and_free_energy_equals_energy(phonon_model):
    atoms = build("AB")
    atoms.calc = MLEPICalculator(phonon_model)
    e1 = atoms.get_potential_energy()
    big = supercell(build("AB"), 3)
    big.calc = MLEPICalculator(phonon_model)
    assert big.get_potential_energy() == pytest.approx(9 * e1, rel=1e-9)
    assert atoms.get_potential_energy(force_consistent=True) == pytest.approx(e1)


def test_names_resolve_to_shipped_models_and_references():
    calc = MLEPICalculator("phonon")
    assert calc.elements == frozenset({"C"})
    assert shipped_model("phonon").is_dir()
    with pytest.raises(ValueError, match="unknown force model"):
        MLEPICalculator("no-such-model")
    with pytest.raises(TypeError, match="not a force model"):
        MLEPICalculator(object())


def test_unlabelled_structures_get_layers_from_z(phonon_model):
    labelled = rattled_bilayer(1)
    bare = labelled.copy()
    del bare.arrays["layer"]
    labelled.calc, bare.calc = MLEPICalculator(phonon_model), MLEPICalculator(phonon_model)
    np.testing.assert_allclose(bare.get_forces(), labelled.get_forces(), atol=1e-12)


def test_relaxation_through_ase_and_phonons_through_the_calculator(phonon_model):
    atoms = build("AB")
    atoms.positions += np.random.default_rng(2).normal(scale=0.03, size=atoms.positions.shape)
    atoms.calc = MLEPICalculator(phonon_model)
    assert np.abs(atoms.get_forces()).max() > 0.1  # rattled: eV/A
    BFGS(atoms, logfile=None).run(fmax=5e-3, steps=200)
    assert np.abs(atoms.get_forces()).max() < 5e-3
    # the calculator is a force model: phonopy's displaced cells go through it in batches
    phonon = harmonic_phonons(build("AB"), MLEPICalculator(phonon_model), size=3)
    phonon.run_qpoints([[0, 0, 0]])
    freqs = phonon.qpoints.frequencies[0]
    assert np.sort(np.abs(freqs))[:3].max() < 0.05  # acoustic sum rule: three zero modes (THz)
