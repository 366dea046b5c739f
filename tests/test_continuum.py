"""The Bistritzer-MacDonald continuum model from the Slater-Koster parameters."""

import numpy as np
import pytest

from mlepi_core.continuum import ContinuumModel, dirac_hbar_v, first_magic_angle, interlayer_w
from mlepi_core.units import VELOCITY_1E6_M_PER_S_PER_EV_A


def test_parameters_from_the_slater_koster_model():
    hv, w = dirac_hbar_v(), interlayer_w()
    assert hv * VELOCITY_1E6_M_PER_S_PER_EV_A == pytest.approx(0.794, abs=0.005)  # its monolayer cone
    assert w == pytest.approx(0.110, abs=0.01)  # Bistritzer-MacDonald's own estimate: 110 meV
    assert interlayer_w(3.6) < w < interlayer_w(3.2)  # tunnelling weakens with distance


def test_uncoupled_layers_keep_the_dirac_velocity_and_the_cone_is_protected():
    hv = dirac_hbar_v()
    free = ContinuumModel(1.1, hv, 0.0, 0.0)
    assert free.k_point_velocity() == pytest.approx(hv * VELOCITY_1E6_M_PER_S_PER_EV_A, rel=1e-4)
    coupled = ContinuumModel(1.5, hv, interlayer_w(), interlayer_w())
    e = coupled.bands(np.array([[0.0, 0.0]]), 2)[0]  # K_m: the central bands touch (C2T)
    assert abs(e[1] - e[0]) < 1e-6
    assert coupled.k_point_velocity() < 0.5 * free.k_point_velocity()  # renormalised by tunnelling


def test_plane_wave_cutoff_is_converged():
    hv, w = dirac_hbar_v(), interlayer_w()
    k = np.array([[0.3, 0.1]]) * ContinuumModel(1.08, hv, w, w).k_theta
    e4 = ContinuumModel(1.08, hv, w, w, shells=4).bands(k, 4)
    e6 = ContinuumModel(1.08, hv, w, w, shells=6).bands(k, 4)
    np.testing.assert_allclose(e4, e6, atol=1e-4)


def test_first_magic_angle_flattens_the_central_bands():
    theta, v = first_magic_angle(theta_range=(0.9, 1.4), steps=11)
    hv, w = dirac_hbar_v(), interlayer_w()
    model = ContinuumModel(theta, hv, w, w)
    assert 0.55 < model.alpha < 0.65  # the known first magic alpha = w / (hbar v k_theta) ~ 0.6
    assert v < 0.01  # K_m velocity (10^6 m/s) nearly zero
    widths = [ContinuumModel(t, hv, w, w).central_width(6) for t in (theta - 0.25, theta, theta + 0.25)]
    assert widths[1] < widths[0] and widths[1] < widths[2]


def test_cli_writes_bands_and_width(tmp_path, capsys):
    import json

    from mlepi_core.cli import main

    assert main(["continuum", "--angle", "1.2", "--points", "4", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "continuum.json").read_text())
    assert data["w_ev"] == pytest.approx(0.110, abs=0.01)
    (row,) = data["angles"]
    assert row["theta_deg"] == 1.2 and 0 < row["central_width_mev"] < 100
    assert np.array(row["bands_ev"]).shape == (13, 8) and (tmp_path / "continuum_bands.png").stat().st_size > 0
    assert "central bands" in capsys.readouterr().out
