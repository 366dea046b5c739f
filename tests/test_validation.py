"""The shipped HedgeNet-Electron against GFN1-xTB at the band level (the paper's Fig. 4d),
and `mlepi bands`."""

import json
from pathlib import Path

import numpy as np
import pytest

from mlepi_core.cli import main
from mlepi_core.models import load_model
from mlepi_core.reference.lammps_forces import EmpiricalForceReference
from mlepi_core.reference.tblite_electrons import GFN1Reference
from mlepi_core.structures import bilayer
from mlepi_core.validation import compare_bands, pristine_fermi_velocity, thermal_sample

MODEL = Path(__file__).resolve().parents[1] / "assets" / "models" / "electron"
pytestmark = pytest.mark.skipif(not (MODEL / "metadata.json").is_file(), reason="no shipped electron model")


@pytest.fixture(scope="module")
def models():
    return load_model(MODEL, kind="electron"), GFN1Reference()


def test_pristine_fermi_velocity_and_gamma1_match_the_reference(models):
    out = pristine_fermi_velocity(*models, bilayer("AB"), size=6)
    assert abs(out["vf_rel_diff"]) < 0.01 and abs(out["gamma1_rel_diff"]) < 0.01, out
    assert 0.68 < out["vf_ref"] < 0.78 and 0.12 < out["gamma1_ref"] < 0.15


def test_bands_of_an_unseen_300K_sample_match_the_reference(models):
    sample = thermal_sample(bilayer("AB"), EmpiricalForceReference(), 300.0, size=6)
    assert np.abs(sample.positions - thermal_sample(bilayer("AB"), EmpiricalForceReference(), 0.0,
                                                    size=6).positions).max() > 0.02  # really displaced
    out = compare_bands(*models, sample, points_per_segment=6)
    assert out["n_states"] > 50
    assert out["band_max_err_mev"] < 10.0, out


@pytest.mark.integration  # trains, or runs a subprocess
def test_cli_bands_writes_bands_dos_and_unfolded_spectrum(tmp_path, capsys):
    assert main(["bands", "AB", "--supercell", "3", "--points", "8", "--mesh", "6", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "bands.json").read_text())
    e = np.array(data["bands_ev_from_ef"])
    assert e.shape == (25, 144) and data["labels"] == ["Γ", "M", "K", "Γ"]
    # a 3x3 cell folds K onto Gamma: the Dirac point sits at E_F at Gamma
    assert np.sort(np.abs(e[0]))[:2].max() < 0.05
    assert (tmp_path / "bands.png").is_file() and (tmp_path / "spectral.png").is_file()
    assert np.array(data["unfolded"]["spectral"]).shape[0] == len(data["unfolded"]["distances"])


def test_bands_count_the_electrons_of_the_models_basis(tmp_path):
    """The p_z model holds one electron per carbon (GFN1's s, p basis four): its Fermi level
    lies at the Dirac point, both in the ML-vs-reference comparison and in ``mlepi bands``
    (with four per carbon the level index ran past the one-orbital basis)."""
    from mlepi_core.reference.slater_koster import SlaterKosterPz
    from mlepi_core.structures import supercell

    sk = SlaterKosterPz()
    out = compare_bands(sk, sk, supercell(bilayer("AB"), 3), points_per_segment=3)
    assert out["band_max_err_mev"] == 0.0 and out["n_states"] > 0
    # K and K' fold onto Gamma of the 3x3 cell: four levels at E_F, the dimer levels at +-gamma_1
    e_gamma = np.sort(np.abs(out["_plot"]["e_ref"][0]))
    assert e_gamma[3] < 1e-6 and e_gamma[4] == pytest.approx(0.31, abs=0.01)
    assert main(["bands", "AB", "--electrons", "slater-koster", "--out", str(tmp_path / "sk")]) == 0


def test_physics_section_of_the_shipped_slater_koster_network(tmp_path):
    """`mlepi evaluate electron --physics` on the p_z network: it finds its reference (the
    Slater-Koster model, from the basis when the data set is absent), and its bands of an
    unseen 300 K sample, pristine v_F, gamma_1 and the coupling at d = 3.35 A agree with it."""
    from mlepi_core.validation import electron_physics

    sk = MODEL.parent / "electron_sk"
    if not (sk / "metadata.json").is_file():
        pytest.skip("no shipped Slater-Koster-trained network")
    out = electron_physics(sk, figure=str(tmp_path / "bands.png"))
    assert out["mc_sample_300K"]["reference"] == "slater-koster"
    assert out["mc_sample_300K"]["n_states"] > 50 and out["mc_sample_300K"]["band_max_err_mev"] < 10.0
    assert abs(out["pristine"]["vf_rel_diff"]) < 0.01 and abs(out["pristine"]["gamma1_rel_diff"]) < 0.01
    r = out["reference"]
    assert r["gamma1_ev"] == pytest.approx(0.339, abs=1e-3)  # the p_z model's own value (test_slater_koster)
    assert abs(r["gamma1_ml_ev"] / r["gamma1_ev"] - 1) < 0.01
    assert (tmp_path / "bands.png").stat().st_size > 10_000
