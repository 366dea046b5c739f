"""Peak finding on the averaged spectral function (mlepi_core.spectral.spectral_peaks)."""

from __future__ import annotations

import numpy as np

from mlepi_core.spectral import spectral_peaks


def gaussian(e, centre, sigma, height=1.0):
    return height * np.exp(-0.5 * ((e - centre) / sigma) ** 2)


def test_a_peak_cut_by_the_energy_window_has_no_width_and_is_left_out():
    e = np.linspace(-3, 3, 241)
    a = (gaussian(e, 2.98, 0.05) + gaussian(e, 0.0, 0.05))[None]
    k, centre, hwhm = spectral_peaks(a, e, np.array([0.0]))
    assert np.allclose(centre, [0.0]) and np.allclose(hwhm, 0.05 * np.sqrt(2 * np.log(2)), rtol=0.05)


def test_peaks_above_the_threshold_with_their_half_widths_per_column():
    e = np.linspace(-3, 3, 1201)
    split = gaussian(e, -0.5, 0.05) + gaussian(e, 0.5, 0.1, 0.5) + gaussian(e, 2.0, 0.05, 0.1)
    a = np.stack([split, np.zeros_like(e), gaussian(e, 1.0, 0.2, 0.8)])
    k, centre, hwhm = spectral_peaks(a, e, np.array([0.0, 0.7, 1.4]))
    assert np.allclose(k, [0.0, 0.0, 1.4])  # the flat column has none; the 0.1 bump is under 15 %
    assert np.allclose(centre, [-0.5, 0.5, 1.0], atol=0.005)
    assert np.allclose(hwhm, np.array([0.05, 0.1, 0.2]) * np.sqrt(2 * np.log(2)), rtol=0.02)
    k, centre, _ = spectral_peaks(a, e, np.array([0.0, 0.7, 1.4]), rel=0.05)
    assert np.allclose(centre, [-0.5, 0.5, 2.0, 1.0], atol=0.005)
