"""Phonons through phonopy with a force model: sum rules, paths, units, honest imaginary modes."""

import json

import numpy as np
import pytest
from ase.calculators.emt import EMT

from mlepi_core.cli import main
from mlepi_core.phonons import (compare_dispersions, convert_frequencies, density_of_states,
                                dispersion, harmonic_phonons,
                                hexagonal_path, relax_positions, supercell_modes, write_dispersion)
from mlepi_core.reference.ase_adapter import AseForceModel
from mlepi_core.reference.lammps_forces import EmpiricalForceReference
from mlepi_core.structures import bilayer, twisted_bilayer
from mlepi_core.units import THZ_TO_CM1


@pytest.fixture(scope="module")
def ab_phonons():
    model = EmpiricalForceReference()
    prim = relax_positions(bilayer("AB"), model)
    return prim, harmonic_phonons(prim, model, 4)


def test_relaxed_ab_has_no_residual_force():
    model = EmpiricalForceReference()
    relaxed = relax_positions(bilayer("AB"), model)
    _, (f,) = model.energies_forces([relaxed])
    assert np.abs(f).max() < 1e-4


def test_acoustic_sum_rule_and_zero_gamma_acoustic_modes(ab_phonons):
    _, phonon = ab_phonons
    fc = phonon.force_constants  # (N, N, 3, 3) eV/A^2
    assert np.abs(fc.sum(axis=1)).max() < 1e-10
    gamma = np.sort(phonon.run_qpoints([[0, 0, 0]]).frequencies[0]) * THZ_TO_CM1
    assert np.abs(gamma[:3]).max() < 0.1  # cm^-1
    # layer-breathing and G modes in the expected ranges for graphene bilayers
    assert 60 < gamma[5] < 100 and 1400 < gamma[-1] < 1700


def test_hexagonal_path_finds_the_zone_corner():
    for atoms in (bilayer("AB"), twisted_bilayer(2, 3)):
        path = dict(hexagonal_path(atoms.cell))
        recip = 2 * np.pi * np.linalg.inv(np.asarray(atoms.cell)).T
        b = np.linalg.norm(recip[0])
        assert np.linalg.norm(path["K"] @ recip) == pytest.approx(b / np.sqrt(3))
        assert np.linalg.norm(path["M"] @ recip) == pytest.approx(b / 2)
    cell120 = np.array([[2.46, 0, 0], [-1.23, 2.46 * np.sqrt(3) / 2, 0], [0, 0, 20]])
    k = dict(hexagonal_path(cell120))["K"]
    assert np.allclose(k, [1 / 3, 1 / 3, 0])
    with pytest.raises(ValueError, match="not hexagonal"):
        hexagonal_path(np.diag([3.0, 4.0, 20.0]))


def test_dispersion_dos_and_units(ab_phonons, tmp_path):
    _, phonon = ab_phonons
    d = dispersion(phonon, points_per_segment=11)
    assert d.freq_thz.shape == (33, 12) and d.labels == ["Γ", "M", "K", "Γ"]
    freq, dos = density_of_states(phonon, mesh=12)
    assert np.trapezoid(dos, freq) == pytest.approx(12, rel=0.05)  # 3N modes per cell
    assert convert_frequencies(1.0, "cm1") == pytest.approx(33.35641)
    assert convert_frequencies(1.0, "meV") == pytest.approx(4.135667696)
    with pytest.raises(ValueError, match="unknown frequency unit"):
        convert_frequencies(1.0, "kelvin")
    summary = write_dispersion(tmp_path, {"ref": d, "same": d}, unit="cm1", dos={"ref": (freq, dos)})
    assert summary["models"]["same"]["rms_vs_ref"] == 0.0
    assert (tmp_path / "dispersion.png").stat().st_size > 10_000
    q, f, v = supercell_modes(phonon)
    assert len(q) == 16 and f.shape == (16, 12) and v.shape == (16, 12, 12)


def test_imaginary_modes_are_reported_not_dropped(tmp_path):
    # EMT knows nothing of graphene: its force constants on this lattice are unstable
    phonon = harmonic_phonons(bilayer("AB"), AseForceModel(EMT()), 3)
    summary = write_dispersion(tmp_path, {"emt": dispersion(phonon, points_per_segment=7)})
    assert summary["models"]["emt"]["n_imaginary"] > 0
    assert summary["models"]["emt"]["min_freq"] < 0


def test_phonons_command_writes_plot_and_data(tmp_path, capsys):
    assert main(["phonons", "AB", "--supercell", "3", "--out", str(tmp_path), "--unit", "mev"]) == 0
    out = capsys.readouterr().out
    assert "imaginary modes on the path: 0" in out
    summary = json.loads((tmp_path / "dispersion.json").read_text())
    assert summary["unit"] == "mev" and summary["models"]["empirical"]["n_imaginary"] == 0
    assert (tmp_path / "supercell_modes_3x3.npz").exists()


def test_compare_dispersions_is_zero_for_the_same_model_and_sees_a_difference():
    ref = EmpiricalForceReference()
    same = compare_dispersions(bilayer("AB"), ref, ref, size=3, points_per_segment=7)
    assert same["rms_cm1"] == 0.0 and same["max_imag_cm1"] == 0.0
    rebo = EmpiricalForceReference(intralayer="rebo")
    other = compare_dispersions(bilayer("AB"), rebo, ref, size=3, points_per_segment=7)
    assert 50 < other["rms_cm1"] < 200  # REBO's optical branches sit ~100 cm^-1 above LCBOP's
