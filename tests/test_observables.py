"""Fermi velocity and band observables on reference Hamiltonians; running statistics."""

import numpy as np
import pytest

from mlepi_core.observables import BandProbe, RunningStats
from mlepi_core.reference.tblite_electrons import GFN1Reference
from mlepi_core.structures import bilayer, monolayer, supercell


@pytest.fixture(scope="module")
def ab_probe():
    prim = bilayer("AB")
    sc = supercell(prim, 6)
    ref = GFN1Reference()
    shaken = sc.copy()
    shaken.positions += np.random.default_rng(1).normal(0.0, 0.04, sc.positions.shape)
    pristine, displaced = ref.blocks([sc, shaken])
    probe = BandProbe(prim, sc, n_bands=4, q_values=(0.06, 0.10), directions_deg=(0, 30, 60))
    return probe.prepare(pristine), pristine, displaced


def test_static_fermi_velocity_of_gfn1_ab_bilayer(ab_probe):
    probe, pristine, _ = ab_probe
    # GFN1-xTB's AB bilayer: v_F 0.70-0.76e6 m/s and gamma_1 ~0.13 eV (DESIGN.md section 4)
    assert 0.68 < probe.static < 0.78
    fit = probe.four_band_fit(probe.pristine_bands)
    assert 0.12 < fit["gamma1_ev"] < 0.15
    # the slope definition sees the hyperbolic bands' slope, a little below v
    assert probe.static < fit["v_1e6_m_per_s"] < 1.05 * probe.static
    # the sample path on undisplaced blocks returns the static numbers exactly
    assert np.array_equal(probe.band_energies(pristine), probe.pristine_bands)


def test_displaced_sample_renormalises_bands(ab_probe):
    probe, _, displaced = ab_probe
    bands = probe.band_energies(displaced)
    assert bands.shape == (6, 2, 4)
    v = probe.fermi_velocity(bands)
    # disorder slows the carriers by a few per cent (the reference's thermal -7 %)
    assert 0.85 * probe.static < v < 0.99 * probe.static


def test_monolayer_gives_a_linear_dirac_cone():
    prim = monolayer()
    sc = supercell(prim, 6)
    (blocks,) = GFN1Reference().blocks([sc])
    probe = BandProbe(prim, sc, n_bands=2, q_values=(0.02, 0.04, 0.06),
                      directions_deg=(0, 30)).prepare(blocks)
    fit = probe.four_band_fit(probe.pristine_bands)
    # massless: the fitted gap only absorbs the cone's slight curvature (trigonal warping)
    assert fit["gap_ev"] < 0.01
    assert fit["v_1e6_m_per_s"] == pytest.approx(probe.static, rel=0.01)  # linear: slope = v
    e = probe.pristine_bands
    assert np.allclose(e[..., 1] - fit["e0_ev"], fit["e0_ev"] - e[..., 0], atol=0.02)


def test_running_stats_merge_equals_one_pass():
    x = np.random.default_rng(0).normal(3.0, 2.0, 1000)
    one = RunningStats()
    for v in x:
        one.add(v)
    parts = [RunningStats() for _ in range(3)]
    for k, v in enumerate(x):
        parts[k % 3].add(v)
    merged = parts[0].merge(parts[1]).merge(parts[2])
    assert merged.n == one.n == 1000
    assert merged.mean == pytest.approx(x.mean(), abs=1e-12)
    assert merged.std_error == pytest.approx(x.std(ddof=1) / np.sqrt(1000), rel=1e-10)
    assert one.std_error == pytest.approx(merged.std_error, rel=1e-10)
