"""Bands from blocks: Bloch sums, near-Fermi solves and unfolding of supercell states."""

import numpy as np
import pytest
import torch

from mlepi_core.electrons import (BlockTensors, Unfolder, bloch_sum, solve_generalized,
                                  solve_near)
from mlepi_core.reference.tblite_electrons import GFN1Reference
from mlepi_core.seams import Blocks
from mlepi_core.structures import bilayer, supercell


@pytest.fixture(scope="module")
def pristine():
    """Reference blocks of a pristine 6x6 AB bilayer (K and K' fold onto Gamma)."""
    prim = bilayer("AB")
    sc = supercell(prim, 6)
    (blocks,) = GFN1Reference().blocks([sc])
    return prim, sc, blocks


def primitive_blocks(blocks: Blocks, prim, sc) -> Blocks:
    """Blocks of the 4-atom primitive cell read off the pristine supercell's first copy.

    An independent path to the primitive bands: the primitive cell is too small for
    tblite's minimal-image split at r_c = 6 A, but the supercell's rows of atoms 0-3
    hold every primitive-cell hopping within 6 A.
    """
    n_prim = len(prim)
    rows = blocks.i < n_prim  # ASE's repeat keeps the primitive cell as atoms 0..3
    target = sc.positions[blocks.j[rows]] + blocks.R[rows] @ np.asarray(sc.cell)
    frac = np.linalg.solve(np.asarray(prim.cell).T, (target[:, None, :] - prim.positions[None]).transpose(0, 2, 1))
    # which primitive atom nu sits at target - R_prim: the one with integer fractional offset
    is_int = np.all(np.abs(frac - np.round(frac)) < 1e-6, axis=1)
    nu = is_int.argmax(axis=1)
    r_prim = np.round(frac[np.arange(len(nu)), :, nu]).astype(int)
    return Blocks(i=blocks.i[rows], j=nu, R=r_prim, h=blocks.h[rows], s=blocks.s[rows],
                  norb=blocks.norb[:n_prim])


def test_near_fermi_solver_matches_full_diagonalisation(pristine):
    prim, sc, blocks = pristine
    bt = BlockTensors.from_blocks(blocks, sc.positions, sc.cell)
    k = torch.tensor([[0.03, 0.05, 0.0], [0.11, -0.02, 0.0]])
    h, s = bloch_sum(bt, k, "h"), bloch_sum(bt, k, "s")
    e_full, _, _ = solve_generalized(h, s)
    sigma = float(e_full[0, 287:289].mean())  # mid-gap: 288 occupied orbitals
    e, c = solve_near(h, s, sigma, 8)
    for kk in range(2):
        nearest = e_full[kk][torch.argsort((e_full[kk] - sigma).abs())[:8]].sort().values
        assert torch.allclose(e[kk], nearest, atol=1e-8)
    norm = torch.einsum("kmn,kmp,kpn->kn", c.conj(), s, c).real
    assert torch.allclose(norm, torch.ones_like(norm), atol=1e-10)


def test_unfolding_pristine_supercell_gives_primitive_bands(pristine):
    prim, sc, blocks = pristine
    unfolder = Unfolder(prim.cell, sc.positions, sc.cell, blocks.norb)
    bt = BlockTensors.from_blocks(blocks, sc.positions, sc.cell)
    recip_p = 2 * np.pi * np.linalg.inv(np.asarray(prim.cell)).T
    recip_s = 2 * np.pi * np.linalg.inv(np.asarray(sc.cell)).T
    k = np.array([[0.1, 0.05, 0.0], [2 / 3 + 0.01, 1 / 3, 0.0], [0.37, 0.21, 0.0]]) @ recip_p
    h, s = bloch_sum(bt, torch.as_tensor(k), "h"), bloch_sum(bt, torch.as_tensor(k), "s")
    e, c, _ = solve_generalized(h, s)
    g_all = np.array([(a, b, 0) for a in range(6) for b in range(6)]) @ recip_s
    w = unfolder.weights(c, s, g_all)  # (K, 36, M)
    assert torch.allclose(w.sum(dim=1), torch.ones_like(w[:, 0]), atol=1e-9)  # sum rule
    # weights are 0 or 1 per degenerate group (states of symmetry-related primitive k
    # that fold onto the same supercell point mix freely within their group)
    pb = primitive_blocks(blocks, prim, sc)
    bt_p = BlockTensors.from_blocks(pb, prim.positions, prim.cell)
    e_prim, _, _ = solve_generalized(bloch_sum(bt_p, torch.as_tensor(k), "h"),
                                     bloch_sum(bt_p, torch.as_tensor(k), "s"))
    for kk in range(len(k)):
        group = torch.cumsum(torch.cat([torch.tensor([1]), (e[kk].diff() > 1e-7).long()]), 0)
        w_group = torch.zeros(int(group.max()) + 1, dtype=w.dtype).index_add_(0, group, w[kk, 0])
        assert (w_group - w_group.round()).abs().max() < 1e-6
        counts = w_group.round().long()
        unfolded = torch.repeat_interleave(torch.zeros_like(w_group).index_add_(
            0, group, e[kk]) / torch.bincount(group, minlength=len(w_group)).clamp(min=1), counts)
        assert len(unfolded) == 16  # 4 atoms x 4 orbitals
        # 0.5 meV: tblite's SCF (accuracy 1) leaves equivalent atoms' on-site blocks
        # 1e-5 eV apart, and the primitive blocks come from one copy only
        assert torch.allclose(unfolded, e_prim[kk], atol=5e-4)


def test_unfolder_rejects_a_cell_that_is_not_a_supercell(pristine):
    prim, sc, blocks = pristine
    shaken = sc.positions + np.random.default_rng(0).normal(0.0, 0.1, sc.positions.shape)
    with pytest.raises(ValueError, match="not a supercell"):
        Unfolder(prim.cell, shaken, sc.cell, blocks.norb)
    with pytest.raises(ValueError, match="multiple"):
        Unfolder(prim.cell, sc.positions, np.diag([10.0, 10.0, 20.0]), blocks.norb)


@pytest.mark.parametrize("points_per_segment, n_points", [(0, 19), (10, 31)])
def test_spectral_map_of_pristine_supercell_peaks_on_primitive_bands(pristine, points_per_segment, n_points):
    """A(k, E) of the undisplaced 6x6 cell along Gamma-M-K-Gamma: total weight = the 16
    primitive orbitals at every k, and its peaks sit on the primitive-cell bands, at the
    cell's commensurate points (0) and at evenly spaced points, each its own supercell k."""
    from mlepi_core.electrons import bloch_matrices, solve_bands
    from mlepi_core.spectral import SpectralMap

    prim, sc, blocks = pristine
    unfolder = Unfolder(prim.cell, sc.positions, sc.cell, blocks.norb)
    bt = BlockTensors.from_blocks(blocks, sc.positions, sc.cell)
    sm = SpectralMap(prim, sc, unfolder, e_fermi=0.0, window=(-40.0, 40.0), n_energies=8001,
                     broadening=0.02, points_per_segment=points_per_segment)
    assert sm.labels == ["Γ", "M", "K", "Γ"] and len(sm.k_cart) == n_points and sm.n_solves < n_points
    if points_per_segment:  # evenly spaced within each segment
        steps = np.diff(sm.distances)
        for lo, hi in zip(sm.label_distances[:-1], sm.label_distances[1:]):
            inner = steps[(sm.distances[:-1] >= lo - 1e-9) & (sm.distances[1:] <= hi + 1e-9)]
            assert len(inner) == points_per_segment and np.allclose(inner, inner[0])
    a = sm.spectral_function(bt)
    de = sm.energies[1] - sm.energies[0]
    assert np.allclose(a.sum(axis=1) * de, 16.0, atol=1e-3)
    k_frac = sm.k_cart @ np.asarray(prim.cell).T / (2 * np.pi)
    e_prim = solve_bands(*bloch_matrices(primitive_blocks(blocks, prim, sc), k_frac))
    for p in range(len(sm.k_cart)):
        band = e_prim[p][np.abs(e_prim[p] + 5.0) < 10.0]  # bands from -15 to +5 eV
        # weight at every primitive band, and every peak of A on a primitive band
        idx = np.abs(sm.energies[:, None] - band[None]).argmin(axis=0)
        assert np.all(a[p, idx] > 2.0)
        x = a[p]
        peaks = np.flatnonzero((x[1:-1] > x[:-2]) & (x[1:-1] >= x[2:]) & (x[1:-1] > 1.0)) + 1
        peaks = peaks[np.abs(sm.energies[peaks] + 5.0) < 9.9]
        assert len(peaks) and np.abs(sm.energies[peaks][:, None] - band[None]).min(axis=1).max() < 2 * de


def test_sparse_and_dense_solvers_agree_on_a_small_twisted_cell():
    """Blocks -> sparse H(k), S(k) and the shift-invert Lanczos solver give the dense
    generalized eigenvalues nearest the shift: an orthogonal model (Slater-Koster p_z) and a
    non-orthogonal one (HedgeNet-Electron's s, p blocks with S)."""
    from pathlib import Path

    from mlepi_core.electrons import sparse_bloch, sparse_eigs_near
    from mlepi_core.models import load_model
    from mlepi_core.reference.slater_koster import SlaterKosterPz
    from mlepi_core.structures import twisted_bilayer
    from mlepi_core.validation import cell_bands

    atoms = twisted_bilayer(2, 3)  # 13.2 degrees, 76 atoms
    k = np.array([0.21, -0.07, 0.0])
    ml = load_model(Path(__file__).resolve().parents[1] / "assets" / "models" / "electron", kind="electron")
    for model, sigma in ((SlaterKosterPz(), 0.79), (ml, -4.0)):
        (b,) = model.blocks([atoms])
        dense = cell_bands(b, atoms, k[None])[0]
        h, s = sparse_bloch(b, atoms.positions, atoms.cell, k)
        sparse = sparse_eigs_near(h, s, sigma, 8)
        nearest = np.sort(dense[np.argsort(np.abs(dense - sigma))[:8]])
        np.testing.assert_allclose(sparse, nearest, atol=1e-6)


def test_lu_factor_is_valid_after_the_thread_count_is_set():
    """torch 2.13's batched CPU LU gave garbage pivots after torch.set_num_threads(2); the
    solver's lu_factor must not (in a fresh interpreter: the thread count is process state)."""
    import subprocess
    import sys

    code = """
import torch
from mlepi_core.electrons import lu_factor
torch.set_num_threads(1)
torch.set_num_threads(2)
torch.manual_seed(0)  # a fixed, well-conditioned batch: the residual measures the pivots alone
a = torch.randn(12, 300, 300, dtype=torch.complex64)
b = torch.randn(12, 300, 4, dtype=torch.complex64)
lu, piv = lu_factor(a)
x = torch.linalg.lu_solve(lu, piv, b)
print(int(piv.min()), int(piv.max()), float((a @ x - b).abs().max() / b.abs().max()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    low, high, resid = out.stdout.split()[-3:]
    assert 1 <= int(low) and int(high) <= 300, out.stderr
    assert float(resid) < 1e-2


def test_unfolding_weights_in_translation_chunks_equal_one_gather(pristine, monkeypatch):
    """The weights gather a few primitive translations at a time (bounded memory); one
    translation per chunk gives what one chunk of all 36 gives, to rounding."""
    import mlepi_core.electrons as electrons
    from mlepi_core.layers import orbital_layers, unfolded_layer_weights

    prim, sc, blocks = pristine
    unfolder = Unfolder(prim.cell, sc.positions, sc.cell, blocks.norb)
    bt = BlockTensors.from_blocks(blocks, sc.positions, sc.cell)
    k = torch.as_tensor(np.array([[0.1, 0.05, 0.0], [0.37, 0.21, 0.0]]) @ (2 * np.pi * np.linalg.inv(np.asarray(prim.cell)).T))
    e, c, _ = solve_generalized(bloch_sum(bt, k, "h"), bloch_sum(bt, k, "s"))
    s = bloch_sum(bt, k, "s")
    g = np.array([(a, b, 0) for a in range(6) for b in range(6)]) @ (2 * np.pi * np.linalg.inv(np.asarray(sc.cell)).T)
    layer = orbital_layers(sc, blocks)
    whole = unfolder.weights(c, s, g)
    parts = unfolded_layer_weights(unfolder, c, s, g, layer, 2)
    assert len(electrons.translation_chunks(36, 10 ** 12)) == 36  # one translation per chunk
    monkeypatch.setattr(electrons, "CHUNK_BYTES", 1)
    assert torch.allclose(unfolder.weights(c, s, g), whole, atol=1e-12, rtol=0)
    assert torch.allclose(unfolded_layer_weights(unfolder, c, s, g, layer, 2), parts, atol=1e-12, rtol=0)
    assert torch.allclose(parts.sum(-1), whole, atol=1e-10)


def _onsite_blocks(h: np.ndarray, s: np.ndarray, floor: float):
    """One atom whose M orbitals' blocks are h and s: H(k) = h and S(k) = s at every k."""
    m = h.shape[0]
    return Blocks(i=np.array([0]), j=np.array([0]), R=np.zeros((1, 3), dtype=np.int64), h=h[None], s=s[None],
                  norb=np.array([m]), meta={"overlap_floor": floor})


def test_canonical_orthogonalisation_keeps_the_well_defined_states_of_a_nearly_dependent_basis():
    """A basis of M functions of which 3 are nearly copies of others (overlap eigenvalues ~1e-4):
    perturbing S and H only within those near-null directions (as a cut of the pair blocks
    does) makes S indefinite, so Cholesky fails, while the eigenpairs of the rest of the space
    are unchanged. ``bloch_pair`` with a floor keeps them exactly, with c^H S c = 1, and puts
    the dropped directions at DROPPED_EV with no weight below it."""
    from mlepi_core.electrons import DROPPED_EV, bloch_pair

    rng = np.random.default_rng(0)
    m, d = 12, 3
    u, _ = np.linalg.qr(rng.normal(size=(m, m)))
    w = np.r_[np.full(d, 1e-4), rng.uniform(0.5, 1.5, m - d)]
    s = (u * w) @ u.T
    a = rng.normal(size=(m, m))
    h = 0.5 * (a + a.T)
    null = u[:, :d]
    q = np.eye(m) - null @ null.T
    h = q @ h @ q  # no coupling into the near-null directions
    # the exact answer: the generalised problem restricted to the well-conditioned space
    x = u[:, d:] / np.sqrt(w[d:])
    expected = np.linalg.eigvalsh(x.T @ h @ x)
    # a cut that spoils the near-null directions alone
    bad = rng.normal(size=(d, d))
    s_cut = s - null @ (np.diag([3e-3, 2e-3, 1e-3])) @ null.T
    h_cut = h + null @ (bad + bad.T) @ null.T
    zero = torch.zeros(1, 3, dtype=torch.float64)
    raw = BlockTensors.from_blocks(_onsite_blocks(h_cut, s_cut, 0.0), np.zeros((1, 3)), np.eye(3) * 10)
    with pytest.raises(torch.linalg.LinAlgError):
        solve_generalized(*bloch_pair(raw, zero))
    bt = BlockTensors.from_blocks(_onsite_blocks(h_cut, s_cut, 0.01), np.zeros((1, 3)), np.eye(3) * 10)
    h_k, s_k = bloch_pair(bt, zero)
    e, c, _ = solve_generalized(h_k, s_k)
    e, c = e[0].numpy(), c[0].numpy()
    assert np.allclose(e[:m - d], expected, atol=1e-10)
    assert np.allclose(e[m - d:], DROPPED_EV)
    kept = c[:, :m - d]
    assert np.allclose(kept.conj().T @ s_cut @ kept, np.eye(m - d), atol=1e-10)  # normalised with the true S
    assert np.allclose(null.T @ kept, 0.0, atol=1e-10)  # nothing in the dropped directions
    # without a floor the same matrices give the raw pencil back
    h0, s0 = bloch_pair(BlockTensors.from_blocks(_onsite_blocks(h, s, 0.0), np.zeros((1, 3)), np.eye(3) * 10), zero)
    assert np.allclose(h0[0].numpy(), h) and np.allclose(s0[0].numpy(), s)
