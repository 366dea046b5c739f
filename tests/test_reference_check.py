"""A Monte Carlo sample's unfolded bands against a reference (Fig. 4d of the MLEPI paper)."""

import dataclasses

import numpy as np
import pytest

import mlepi_core.reference.slater_koster as slater_koster
from mlepi_core.engine import MCSettings, MonteCarloEngine
from mlepi_core.reference.lammps_forces import EmpiricalForceReference
from mlepi_core.reference_check import Cancelled, check_sample
from mlepi_core.structures import bilayer

T = 300.0


class ScaledHamiltonian:
    """A model's blocks with H scaled by ``factor`` (S kept): every eigenvalue of
    H c = E S c, E_F included, scales by ``factor``."""

    def __init__(self, model, factor):
        self.model, self.factor, self.elements = model, factor, model.elements

    def blocks(self, structures):
        out = self.model.blocks(structures)
        for b in out:
            b.h = b.h * self.factor
        return out


class StifferPi(slater_koster.SlaterKosterPz):
    """The Slater-Koster model with V_pi^0 (t_0) 1 % stronger; V_sigma^0 as it was."""

    def blocks(self, structures):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(slater_koster, "V_PI0", 1.01 * slater_koster.V_PI0)  # read by v_pi at call time
            return super().blocks(structures)


@pytest.fixture(scope="module")
def engine():
    settings = MCSettings(temperatures=(T,), n_samples=4, batch_size=4, supercell=3)
    return MonteCarloEngine(bilayer("AB"), EmpiricalForceReference(), slater_koster.SlaterKosterPz(), settings)


def test_sample_atoms_are_the_samples_the_engine_used(engine):
    ideal = engine.sampler.ideal.positions
    batch = engine.compute_batch(T, 0, 3, displacements=True)["displacements_a"]
    for j in range(3):
        u = engine.sample_atoms(T, j).positions - ideal
        # phonopy's batched products round differently in the last digit (1e-15 A)
        np.testing.assert_allclose(u, batch[j], rtol=0, atol=1e-12)
        assert np.array_equal(u, engine.compute_batch(T, j, 1, displacements=True)["displacements_a"][j])
        assert np.abs(u).max() > 0.02
    saved = engine.settings
    try:
        engine.settings = dataclasses.replace(saved, antithetic=True, displacement_scale=0.5)
        plus, minus = (engine.sample_atoms(T, j).positions - ideal for j in (2, 3))
        np.testing.assert_allclose(minus, -plus, atol=1e-12)  # an antithetic pair
        # pair 1's normals are plain sample 1's (keyed by pair), here at half amplitude
        np.testing.assert_allclose(plus, 0.5 * batch[1], atol=1e-12)
        pair = engine.compute_batch(T, 2, 2, displacements=True)["displacements_a"]
        np.testing.assert_allclose(pair[2], plus, atol=1e-12)
    finally:
        engine.settings = saved


def test_the_engine_model_as_reference_agrees_exactly(engine):
    out = check_sample(engine, T, 1, engine.hamiltonian_model)
    assert out["max_abs_diff_mev"] < 1e-6 and out["n_compared"] > 0
    assert out["e_fermi_reference_ev"] == out["e_fermi_ml_ev"] == engine.probe.sigma
    n_path = len(engine.spectral.k_cart)
    assert out["ml"]["energies_ev"].shape[0] == n_path == len(out["k_distances"])
    assert out["k_labels"] == ["Γ", "M", "K", "Γ"]
    np.testing.assert_allclose(out["ml"]["spectral"], out["reference"]["spectral"], atol=1e-12)
    # the float64 spectrum of the sample is the engine's own (complex64) one for sample 1
    sample = engine.compute_batch(T, 1, 1)["spectra"][1]
    assert np.abs(out["ml"]["spectral"] - sample).max() < 1e-3 * sample.max()
    assert set(out["seconds"]) >= {"sampling", "hamiltonian_ml", "hamiltonian_reference", "bands_ml",
                                   "bands_reference", "total"}


def test_a_one_percent_stronger_reference_differs_by_one_percent_of_the_energies(engine):
    # H x 1.01: every E - E_F scales by 1.01, so the largest difference within 1 eV is
    # exactly 1 % of the largest |E - E_F| compared (a little below 10 meV)
    out = check_sample(engine, T, 2, ScaledHamiltonian(engine.hamiltonian_model, 1.01), window_ev=1.0)
    assert out["e_fermi_reference_ev"] == pytest.approx(1.01 * out["e_fermi_ml_ev"], rel=1e-12)
    pairs = out["pairs"]
    np.testing.assert_allclose(pairs["reference"], 1.01 * pairs["ml"], atol=1e-12)
    expected = 10.0 * np.abs(pairs["ml"][pairs["compared"]]).max()  # meV
    assert out["max_abs_diff_mev"] == pytest.approx(expected, rel=1e-9)
    assert 8.0 < out["max_abs_diff_mev"] <= 10.0
    assert 0 < out["max_abs_diff_visible_mev"] <= out["max_abs_diff_mev"]
    # the reference's E_F handed back skips its pristine solve and changes nothing
    again = check_sample(engine, T, 2, ScaledHamiltonian(engine.hamiltonian_model, 1.01),
                         reference_e_fermi=out["e_fermi_reference_ev"])
    assert again["max_abs_diff_mev"] == out["max_abs_diff_mev"] and "e_fermi_reference" not in again["seconds"]
    # t_0 alone 1 % stronger: V_sigma^0 is kept, which sets gamma_1 and partly cancels
    # V_pi in the skew interlayer (and buckled in-plane) hoppings, so the bands do not
    # simply scale; the difference is still of the size of 1 % of the energies (12 meV)
    stiff = check_sample(engine, T, 2, StifferPi(), window_ev=1.0)
    assert 0.5 * expected < stiff["max_abs_diff_mev"] < 1.5 * expected


def test_cancel_stops_the_check(engine):
    with pytest.raises(Cancelled):
        check_sample(engine, T, 0, engine.hamiltonian_model, cancelled=lambda: True)
    polls = []

    def after_three():
        polls.append(1)
        return len(polls) > 3

    with pytest.raises(Cancelled, match="after hamiltonian_reference"):
        check_sample(engine, T, 0, engine.hamiltonian_model, cancelled=after_three)
