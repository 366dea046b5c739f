"""Layer-resolved views: Mulliken layer weights, layer parts of the unfolded spectral
function (sample, static lattice and Monte Carlo mean), layer-projected DOS."""

import pickle

import numpy as np
import pytest
import torch

from mlepi_core.electrons import BlockTensors, Unfolder, bloch_sum, solve_generalized
from mlepi_core.engine import MCSettings, MonteCarloEngine
from mlepi_core.layers import (layer_dos, mulliken_layer_weights, orbital_layers,
                               unfolded_layer_weights)
from mlepi_core.observables import valley_points
from mlepi_core.spectral import SpectralMap
from mlepi_core.reference.lammps_forces import EmpiricalForceReference
from mlepi_core.reference.slater_koster import SlaterKosterPz
from mlepi_core.structures import bilayer, monolayer, supercell

SK = SlaterKosterPz()


def with_overlap(blocks, strength=0.08):
    """The Slater-Koster blocks with a non-orthogonal overlap S = 1 + strength * H / |V_pi|:
    positive definite (|H| < 3.5 |V_pi| in the spectrum), so every S-term is exercised."""
    blocks.s = blocks.s + strength * blocks.h / 2.7
    return blocks


def states_at(atoms, blocks, k_cart):
    bt = BlockTensors.from_blocks(blocks, atoms.positions, atoms.cell)
    k = torch.as_tensor(np.atleast_2d(k_cart))
    s = bloch_sum(bt, k, "s")
    e, c, _ = solve_generalized(bloch_sum(bt, k, "h"), s)
    return e, c, s


def test_orbital_layers_follow_the_compact_layout():
    layer = np.array([0, 0, 1, 1, 0])
    assert orbital_layers(layer, np.array([4, 1, 4, 1, 2])).tolist() == [0] * 5 + [1] * 5 + [0] * 2
    prim = bilayer("AB")
    (b,) = SK.blocks([prim])
    assert orbital_layers(prim, b).tolist() == prim.arrays["layer"].tolist()  # one p_z each
    with pytest.raises(ValueError, match="orbital counts"):
        orbital_layers(layer, np.ones(3, int))


def test_mulliken_weights_sum_to_one_for_a_random_generalized_problem():
    rng = np.random.default_rng(0)
    m, n_layers = 14, 3
    a = rng.normal(size=(2, m, m)) + 1j * rng.normal(size=(2, m, m))
    h = a + a.conj().transpose(0, 2, 1)
    b = rng.normal(size=(2, m, m)) + 1j * rng.normal(size=(2, m, m))
    s = b @ b.conj().transpose(0, 2, 1) / m + 0.3 * np.eye(m)  # positive definite, far from 1
    _, c, _ = solve_generalized(torch.as_tensor(h), torch.as_tensor(s))
    layer = rng.integers(0, n_layers, m)
    w = mulliken_layer_weights(c.numpy(), s, layer, n_layers)  # numpy in, numpy out
    assert isinstance(w, np.ndarray) and w.shape == (2, m, n_layers)
    np.testing.assert_allclose(w.sum(axis=-1), 1.0, atol=1e-10)
    # over all states a layer holds its orbital count: sum_n c c^H S = S^-1 S = 1
    np.testing.assert_allclose(w.sum(axis=1), np.broadcast_to(np.bincount(layer, minlength=n_layers), (2, n_layers)),
                               atol=1e-10)
    assert w.min() < 0 or w.max() > 1  # Mulliken parts need not lie in [0, 1] when S != 1


@pytest.mark.parametrize("stacking", ["AB", "AA"])
def test_bilayer_states_are_shared_equally_between_layers(stacking):
    """Inversion x time reversal (AB) or the mirror z -> -z (AA) maps every k onto itself
    and swaps the layers, so each non-degenerate state has weight 1/2 on both. At K in AB
    the dimer states (B1-A2 bonded, split by gamma_1) are such states; the degenerate
    non-dimer pair at E_F mixes freely but holds one state's worth on each layer."""
    prim = bilayer(stacking)
    (b,) = SK.blocks([prim])
    b = with_overlap(b)
    k_valley, _ = valley_points(prim.cell)
    e, c, s = states_at(prim, b, [k_valley, k_valley + [0.05, 0.02, 0.0], [0.3, 0.1, 0.0]])
    w = mulliken_layer_weights(c, s, orbital_layers(prim, b), 2).numpy()  # (3 k, 4 states, 2)
    if stacking == "AB":
        assert e[0, 2] - e[0, 1] < 1e-9 and e[0, 3] - e[0, 0] > 0.5  # the pair at E_F, the dimers at +-gamma_1
        np.testing.assert_allclose(w[0, [0, 3]], 0.5, atol=1e-10)
        np.testing.assert_allclose(w[0, [1, 2]].sum(axis=0), 1.0, atol=1e-10)
        np.testing.assert_allclose(w[1:], 0.5, atol=1e-10)
    else:
        np.testing.assert_allclose(w, 0.5, atol=1e-10)  # degenerate pairs at K share a parity


def test_monolayer_states_lie_on_their_one_layer():
    prim = monolayer()
    (b,) = SK.blocks([prim])
    b = with_overlap(b)
    _, c, s = states_at(prim, b, [[0.2, 0.1, 0.0], [1.0, 0.3, 0.0]])
    np.testing.assert_allclose(mulliken_layer_weights(c, s, orbital_layers(prim, b), 1), 1.0, atol=1e-10)


@pytest.fixture(scope="module")
def displaced_bilayer():
    prim = bilayer("AB")
    ideal = supercell(prim, 3)
    shaken = ideal.copy()
    shaken.positions += np.random.default_rng(3).normal(0.0, 0.06, ideal.positions.shape)
    (b,) = SK.blocks([shaken])
    return prim, ideal, b


def test_the_spectral_map_solved_one_k_at_a_time_is_the_same_map(displaced_bilayer, monkeypatch):
    """A path's folded k-points are solved in chunks that fit ``SOLVE_BYTES`` (large cells:
    a 6x6 MoS2 bilayer's matrices are 60 MB each); one k per chunk gives the same A(k, E) and
    layer parts as all at once, to the rounding of complex64."""
    from mlepi_core import spectral

    prim, ideal, b = displaced_bilayer
    b = with_overlap(pickle.loads(pickle.dumps(b)))
    unfolder = Unfolder(prim.cell, ideal.positions, ideal.cell, b.norb)
    sm = SpectralMap(prim, ideal, unfolder, e_fermi=0.8, grid=6)
    bt = BlockTensors.from_blocks(b, ideal.positions, ideal.cell)
    layer = orbital_layers(ideal, b)
    whole, whole_parts = sm.layer_spectral_function(bt, layer, 2, return_total=True)
    monkeypatch.setattr(spectral, "SOLVE_BYTES", 1)
    assert len(sm.k_fold) > 1
    single, single_parts = sm.layer_spectral_function(bt, layer, 2, return_total=True)
    scale = whole.max()
    assert np.abs(single - whole).max() < 1e-4 * scale and np.abs(single_parts - whole_parts).max() < 1e-4 * scale


@pytest.mark.parametrize("overlap", [False, True])
def test_layer_parts_of_the_spectral_function_sum_to_it(displaced_bilayer, overlap):
    prim, ideal, b = displaced_bilayer
    if overlap:
        b = with_overlap(pickle.loads(pickle.dumps(b)))
    unfolder = Unfolder(prim.cell, ideal.positions, ideal.cell, b.norb)
    sm = SpectralMap(prim, ideal, unfolder, e_fermi=0.8, grid=6)
    bt = BlockTensors.from_blocks(b, ideal.positions, ideal.cell)
    layer = orbital_layers(ideal, b)
    total = sm.spectral_function(bt)
    a, parts = sm.layer_spectral_function(bt, layer, 2, return_total=True)
    assert np.array_equal(a, total)  # the same solve and weights as spectral_function
    assert parts.shape == (2,) + total.shape and parts.min() >= 0
    assert np.abs(parts.sum(axis=0) - total).max() < 1e-10
    assert np.array_equal(sm.layer_spectral_function(bt, layer, 2), parts)
    # both layers carry weight: the displaced AB bilayer is no longer symmetric, but close
    share = parts.sum(axis=(1, 2)) / total.sum()
    assert np.all(np.abs(share - 0.5) < 0.05)
    # the layer unfolding weights over the N vectors k + G that fold together are the
    # Mulliken layer weights (the l = 0 term)
    recip_s = 2 * np.pi * np.linalg.inv(np.asarray(ideal.cell)).T
    g_all = np.array([(i, j, 0) for i in range(3) for j in range(3)]) @ recip_s
    _, c, s = states_at(ideal, b, sm.k_fold[:3])
    w = unfolded_layer_weights(unfolder, c, s, g_all, layer, 2)  # (3, 9, M, 2)
    np.testing.assert_allclose(w.sum(dim=1).numpy(), mulliken_layer_weights(c, s, layer, 2).numpy(), atol=1e-10)
    np.testing.assert_allclose(w.sum(dim=-1).numpy(), unfolder.weights(c, s, g_all).numpy(), atol=1e-10)


def test_layer_projected_dos_of_the_static_lattice():
    prim = bilayer("AB")
    grid = np.linspace(-15.0, 15.0, 3001)
    direct = layer_dos(SK, prim, mesh=12, supercell=1, energies=grid)
    folded = layer_dos(SK, prim, mesh=12, energies=grid)  # the model's r_c asks for a 6x6 cell
    assert folded["supercell"] == 6 and direct["mesh"] == folded["mesh"] == 12
    # the supercell mesh folds onto the primitive mesh: the same DOS per primitive cell
    np.testing.assert_allclose(folded["dos"], direct["dos"], atol=1e-9)
    assert folded["e_fermi_ev"] == pytest.approx(direct["e_fermi_ev"], abs=1e-10)
    de = grid[1] - grid[0]
    np.testing.assert_allclose(direct["dos"].sum(axis=1) * de, 2.0, atol=1e-3)  # 2 p_z per layer per cell
    np.testing.assert_allclose(direct["total"], direct["dos"].sum(axis=0), atol=1e-12)
    np.testing.assert_allclose(direct["dos"][0], direct["dos"][1], atol=1e-10)  # inversion swaps the layers
    # E_F at charge neutrality: the states below it hold the 4 p_z electrons (2 states)
    below = direct["total"][grid < 0].sum() * de + 0.5 * direct["total"][np.abs(grid) < 1e-9].sum() * de
    assert below == pytest.approx(2.0, abs=2e-3)
    mono = layer_dos(SK, monolayer(), mesh=6, supercell=1, energies=grid)
    assert mono["dos"].shape == (1, len(grid)) and np.array_equal(mono["dos"][0], mono["total"])


@pytest.fixture(scope="module")
def engine():
    settings = MCSettings(temperatures=(300.0,), n_samples=2, batch_size=2, supercell=3)
    return MonteCarloEngine(bilayer("AB"), EmpiricalForceReference(), SK, settings)


def test_engine_averages_the_layer_projected_spectral_function(engine):
    assert engine.n_layers == 2 and engine.static_layer_spectrum.shape == (2,) + engine.static_spectrum.shape
    assert np.abs(engine.static_layer_spectrum.sum(axis=0) - engine.static_spectrum).max() < 1e-10
    layers, count = engine.layer_spectral_mean(300.0)
    assert count == 0 and layers is engine.static_layer_spectrum
    engine.reset()
    result = engine.compute_batch(300.0, 0, 2)
    assert pickle.loads(pickle.dumps(result)).keys() == result.keys()  # what Dask sends back
    # the sample's A(k, E) is what spectral_function alone gives: unchanged by the layer parts
    (b,) = SK.blocks([engine.sample_atoms(300.0, 1)])
    assert np.array_equal(result["spectra"][1], engine.spectral.spectral_function(engine.probe.tensors(b)))
    engine.absorb(result)
    mean, n = engine.spectral_mean(300.0)
    layers, n_layers_samples = engine.layer_spectral_mean(300.0)
    assert n == n_layers_samples == 2
    assert np.abs(layers.sum(axis=0) - mean).max() < 1e-10
    assert not np.allclose(layers, engine.static_layer_spectrum, atol=1e-3)  # thermal broadening
    # checkpoints carry the layer parts; older ones without them still load
    state = pickle.loads(pickle.dumps(engine.state()))
    engine.reset()
    engine.load_state(state)
    assert engine.layer_spectral_mean(300.0)[1] == 2
    state.pop("layer_spectra")
    engine.load_state(state)
    assert engine.layer_spectral_mean(300.0)[1] == 0 and engine.spectral_mean(300.0)[1] == 2


def test_monolayer_engine_layer_spectrum_is_the_spectrum():
    settings = MCSettings(temperatures=(0.0,), n_samples=1, batch_size=1, supercell=3, n_bands=2)
    mono = MonteCarloEngine(monolayer(), EmpiricalForceReference(), SK, settings)
    assert mono.n_layers == 1 and np.array_equal(mono.static_layer_spectrum[0], mono.static_spectrum)
    result = mono.compute_batch(0.0, 0, 1)
    assert result["layer_spectra"] == {}  # nothing extra to compute or send
    mono.absorb(result)
    layers, count = mono.layer_spectral_mean(0.0)
    assert count == 1 and np.array_equal(layers[0], mono.spectral_mean(0.0)[0])
