"""The band gap observable (mlepi_core/band_edges.py) on a gapped toy model whose answer
is known: graphene's p_z model with on-site energies +Delta on one sublattice and -Delta
on the other (a Semenoff mass, the simplest model of hBN) has its gap 2 Delta at K, direct,
exactly: the sublattice-mixing hoppings vanish at K and the same-sublattice ones shift
both states alike."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mlepi_core.band_edges import GapProbe
from mlepi_core.electrons import Unfolder
from mlepi_core.reference.slater_koster import SlaterKosterPz
from mlepi_core.structures import monolayer, supercell

DELTA = 0.4  # eV


class StaggeredPz:
    """The Slater-Koster p_z model of the same lattice with on-site +Delta on boron and
    -Delta on nitrogen (graphene's hoppings: a toy hBN whose gap is known)."""

    elements = frozenset({"B", "N"})

    def __init__(self, delta: float = DELTA):
        self.delta, self.pz = delta, SlaterKosterPz()

    def blocks(self, structures):
        carbon = [a.copy() for a in structures]
        for a in carbon:
            a.set_chemical_symbols(["C"] * len(a))
        out = []
        for atoms, b in zip(structures, self.pz.blocks(carbon)):
            onsite = (b.i == b.j) & np.all(b.R == 0, axis=1)
            h = b.h.copy()
            h[onsite, 0, 0] += np.where(atoms.numbers[b.i[onsite]] == 5, self.delta, -self.delta)
            out.append(dataclasses.replace(b, h=h, meta={**b.meta, "valence_electrons": len(atoms)}))
        return out


def hbn_monolayer():
    atoms = monolayer()
    atoms.set_chemical_symbols(["B", "N"])
    return atoms


def staggered_cell(n: int):
    prim = hbn_monolayer()
    return prim, supercell(prim, n)


def probe_for(prim, ideal, model):
    (pristine,) = model.blocks([ideal])
    unfolder = Unfolder(prim.cell, ideal.positions, ideal.cell, pristine.norb)
    return GapProbe(prim, ideal, unfolder, n_occupied=len(ideal) // 2).prepare(pristine), pristine


@pytest.mark.parametrize("n", [1, 3, 4])
def test_the_static_gap_is_two_delta_at_k_at_any_supercell(n):
    prim, ideal = staggered_cell(n)
    probe, _ = probe_for(prim, ideal, StaggeredPz())
    assert probe.static["gap"] == pytest.approx(2 * DELTA, abs=1e-9)
    assert probe.static["vbm_at"] == probe.static["cbm_at"] == "K" and probe.static["direct"]


def test_no_gap_without_the_mass_and_a_rigid_shift_changes_nothing():
    prim, ideal = staggered_cell(3)
    probe, pristine = probe_for(prim, ideal, StaggeredPz())
    assert probe_for(prim, ideal, StaggeredPz(delta=1e-3))[0].static["gap"] == pytest.approx(2e-3, abs=1e-9)
    shifted = ideal.copy()
    shifted.positions += [0.3, -0.2, 0.1]  # a rigid translation: the same crystal
    (blocks,) = StaggeredPz().blocks([shifted])
    gaps = probe.gaps(probe.edges(blocks))
    assert gaps["gap"] == pytest.approx(2 * DELTA, abs=1e-8)


def test_a_displaced_sample_moves_the_gap_at_second_order_in_the_amplitude():
    """The gap of the pair (+u, -u), whose first-order changes cancel, moves at second order
    in the amplitude, as the electron-phonon renormalisation does."""
    prim, ideal = staggered_cell(3)
    probe, _ = probe_for(prim, ideal, StaggeredPz())
    u = np.random.default_rng(2).normal(0.0, 1.0, ideal.positions.shape)
    changes = []
    for scale in (0.005, 0.01, 0.02):
        pair = []
        for sign in (1, -1):
            atoms = ideal.copy()
            atoms.positions += sign * scale * u
            (blocks,) = StaggeredPz().blocks([atoms])
            pair.append(probe.gaps(probe.edges(blocks))["gap"])
        changes.append(np.mean(pair) - 2 * DELTA)
    assert abs(changes[0]) > 1e-7
    # quadratic: doubling the amplitude multiplies the change by about 4
    assert changes[2] / changes[1] == pytest.approx(4.0, rel=0.15)
    assert changes[1] / changes[0] == pytest.approx(4.0, rel=0.15)


def test_the_edges_carry_the_fan_term_of_second_order_perturbation_theory():
    """A small displacement moves the degenerate valence edge at K as degenerate second-order
    perturbation theory says: the mean over its g states of the first-order (diagonal) change
    plus the level repulsion sum_n |V_an|^2 / (E_0 - E_n) from every other state (the Fan
    term). The repulsion is a large part of the shift here, so an edge that dropped it (a
    first moment over the weight pushed away, which restores the diagonal value) fails."""
    import torch

    from mlepi_core.electrons import BlockTensors, bloch_sum

    prim, ideal = staggered_cell(3)
    probe, pristine = probe_for(prim, ideal, StaggeredPz())
    g, n = probe.degeneracy[0], probe.n_occupied
    k = torch.as_tensor(probe.k_cart[[probe.k_v]])

    def hamiltonian(blocks):
        return bloch_sum(BlockTensors.from_blocks(blocks, ideal.positions, ideal.cell), k, "h")[0].numpy()

    h0 = hamiltonian(pristine)
    e0, c0 = np.linalg.eigh(h0)
    edge, others = np.arange(n - g, n), np.r_[0:n - g, n:len(e0)]
    u = np.random.default_rng(5).normal(0.0, 1.0, ideal.positions.shape)
    for scale in (0.002, 0.004):
        atoms = ideal.copy()
        atoms.positions += scale * u
        (blocks,) = StaggeredPz().blocks([atoms])
        v = c0.conj().T @ (hamiltonian(blocks) - h0) @ c0
        first = np.real(np.trace(v[np.ix_(edge, edge)])) / g
        fan = np.sum(np.abs(v[np.ix_(edge, others)]) ** 2 / (e0[n - 1] - e0[others])[None, :]) / g
        shift = probe.edges(blocks)[0] - e0[n - 1]
        assert abs(fan) > 0.2 * abs(first)  # the test can tell the two apart
        assert shift == pytest.approx(first + fan, rel=0.02, abs=1e-7)


def test_a_monte_carlo_run_reports_the_gap_its_renormalisation_and_paired_changes(tmp_path):
    """The engine measures the gap of a gapped material sample by sample: the static lattice
    (displacement scale 0) gives 2 Delta exactly, thermal runs give a mean with its error,
    the change from 0 K to 300 K is paired, and a checkpoint keeps every sample's gap."""
    from mlepi_core.engine import MCSettings, MonteCarloEngine
    from mlepi_core.reference.lammps_forces import EmpiricalForceReference

    forces = EmpiricalForceReference()
    settings = MCSettings(temperatures=(0.0, 300.0), n_samples=6, batch_size=3, supercell=3, n_bands=2,
                          spectral_every=0)
    engine = MonteCarloEngine(hbn_monolayer(), forces, StaggeredPz(), settings)
    assert engine.gap_probe is not None
    assert engine.static["gap"] == pytest.approx(2 * DELTA, abs=1e-6)
    for _ in engine.run_all():
        pass
    cold, hot = engine.statistics(0.0), engine.statistics(300.0)
    for stats in (cold, hot):
        assert np.isfinite(stats["gap"]) and stats["gap_se"] > 0
        assert stats["gap_change"] == pytest.approx(stats["gap"] - 2 * DELTA)
    paired = engine.paired_difference(0.0, 300.0)
    assert paired["dgap"] == pytest.approx(hot["gap"] - cold["gap"], abs=1e-12)  # the same six samples
    assert paired["dgap_se"] > 0
    path = tmp_path / "run.npz"
    engine.save_checkpoint(path)
    again = MonteCarloEngine(hbn_monolayer(), forces, StaggeredPz(), settings,
                             lattice=(engine.primitive, engine.phonon))
    again.load_checkpoint(path)
    assert again.statistics(300.0)["gap"] == hot["gap"]
    still = MonteCarloEngine(hbn_monolayer(), forces, StaggeredPz(),
                             dataclasses.replace(settings, displacement_scale=0.0, temperatures=(300.0,),
                                                 n_samples=2), lattice=(engine.primitive, engine.phonon))
    for _ in still.run_all():
        pass
    assert still.statistics(300.0)["gap"] == pytest.approx(2 * DELTA, abs=1e-6)


def test_graphene_keeps_v_f_as_its_observable():
    from mlepi_core.engine import MCSettings, MonteCarloEngine
    from mlepi_core.reference.lammps_forces import EmpiricalForceReference

    engine = MonteCarloEngine(monolayer(), EmpiricalForceReference(), SlaterKosterPz(),
                              MCSettings(temperatures=(0.0,), n_samples=2, supercell=3, n_bands=2, spectral_every=0))
    assert engine.gap_probe is None and "gap" not in engine.static
    for _ in engine.run_all():
        pass
    assert "gap" not in engine.statistics(0.0) and "dgap" not in engine.paired_difference(0.0, 0.0)


def test_the_searched_k_are_every_primitive_k_that_folds_onto_those_of_gamma_k_and_m():
    """In a 6x6 cell Γ, K and M fold onto one supercell k, which holds the 36 points of the
    6x6 grid (MoS2's Q = K/2 among them); in a 4x4 cell K folds elsewhere: 16 + 16 points."""
    from mlepi_core.band_edges import commensurate_points, high_symmetry_points

    prim = hbn_monolayer()
    _, base = high_symmetry_points(prim.cell)
    for n, count, classes in ((6, 36, {0}), (4, 32, {0, 1})):
        frac, base_of = commensurate_points(prim.cell, supercell(prim, n).cell, base)
        assert len(frac) == count and set(base_of) == classes
        on_grid = np.abs(frac[:, :2] * n - np.round(frac[:, :2] * n)).max(axis=1) < 1e-6
        assert on_grid.all() if n == 6 else on_grid.sum() == 16  # in 4x4: Γ's 16 (K's are off it)
    probe, _ = probe_for(*staggered_cell(6), StaggeredPz())
    assert {"Γ", "K", "K′", "M", "(1/6, 1/6)"} <= set(probe.labels)


def test_an_edge_away_from_gamma_k_and_m_is_found_on_the_grid(monkeypatch):
    """Searching from Γ alone, the probe still finds the toy's edges wherever the supercell
    holds them: at K in a 6x6 cell (gap 2 Delta, named K), and in a 4x4 cell, which does not
    hold K, at the commensurate k with the smallest gap, as the primitive cell's own bands
    at the 4x4 grid say."""
    import torch

    from mlepi_core import band_edges
    from mlepi_core.electrons import BlockTensors, bloch_sum, solve_generalized

    full = band_edges.high_symmetry_points
    monkeypatch.setattr(band_edges, "high_symmetry_points", lambda cell: (("Γ",), full(cell)[1][:1]))
    probe, _ = probe_for(*staggered_cell(6), StaggeredPz())
    assert probe.static["gap"] == pytest.approx(2 * DELTA, abs=1e-9)
    assert probe.static["vbm_at"] in ("K", "K′") and probe.static["direct"]

    probe, _ = probe_for(*staggered_cell(4), StaggeredPz())
    prim = hbn_monolayer()
    (blocks,) = StaggeredPz().blocks([prim])
    grid = np.array([(a / 4, b / 4, 0.0) for a in range(4) for b in range(4)])
    k = torch.as_tensor(grid @ (2 * np.pi * np.linalg.inv(np.asarray(prim.cell)).T))
    bt = BlockTensors.from_blocks(blocks, prim.positions, prim.cell)
    e = solve_generalized(bloch_sum(bt, k, "h"), bloch_sum(bt, k, "s"))[0].numpy()  # (16, 2)
    assert probe.static["gap"] == pytest.approx(e[:, 1].min() - e[:, 0].max(), abs=1e-9)
    assert probe.static["gap"] > 2 * DELTA + 0.1
    assert not {"K", "K′"} & set(probe.labels)  # the 4x4 grid through Γ misses K
