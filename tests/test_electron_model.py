"""HedgeNet-Electron: equivariance, Hermiticity, permutations, heterogeneity, training, data alignment.

Small displaced 2x2 bilayers (16 atoms, ~1,100 edges within 6 A), a tiny float64
network, and Slater-Koster-like synthetic targets (equivariant and Hermitian by
construction, in tblite's orbital order) so that no reference solve is needed.
"""

import dataclasses
import math

import numpy as np
import pytest
import torch
from e3nn import o3

from mlepi_core.data.deeph import DataFormatError, write_deeph, write_split
from mlepi_core.data.electron_dataset import (ElectronDataset, LabelError, collate_electron, load_split,
                                              make_sample, pair_index)
from mlepi_core.electrons import bloch_matrices
from mlepi_core.graph import build_graph, neighbour_pairs
from mlepi_core.models.electron import ONSITE, HedgeNetElectron, HedgeNetElectronConfig, reverse_edge_index
from mlepi_core.models.electron_deployed import MLHamiltonianModel
from mlepi_core.models.electron_fitting import fit_normalisation
from mlepi_core.models.electron_losses import block_errors, normalised_block_mse
from mlepi_core.models.electron_targets import BlockMap
from mlepi_core.reference.tblite_electrons import P_TO_E3NN
from mlepi_core.seams import Blocks
from mlepi_core.structures import StructureError, bilayer, monolayer, supercell
from toy_labels import sk_blocks

HETERO = {"intra": 6.0, "inter": 6.0}
HOMO = {"all": 6.0}
TINY = dict(hidden_irreps="4x0e+4x1o+4x1e+4x2e", num_layers=2, radial_hidden=(8,), num_gaussians=8)
TOL = 1e-10  # float64 equivariance; what is left is rounding (~1e-14 measured)


@pytest.fixture(autouse=True)
def float64_default():
    """Build the networks in float64 (their Clebsch-Gordan tables follow the default dtype).

    One thread: these tensors are small, and on a shared machine extra threads only wait.
    """
    old, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(old)
    torch.set_num_threads(threads)


def displaced(atoms, seed, sigma=0.05):
    atoms = atoms.copy()
    atoms.positions += np.random.default_rng(seed).normal(0.0, sigma, atoms.positions.shape)
    return atoms


def small_bilayer(seed=0):
    return displaced(supercell(bilayer("AB"), 2), seed)


def p_rotation(R: torch.Tensor) -> torch.Tensor:
    """D(R) on one atom's orbitals in tblite's order (s, p_y, p_z, p_x)."""
    perm = np.argsort(P_TO_E3NN).tolist()  # tblite p component a is e3nn component perm[a]
    D = torch.eye(4, dtype=R.dtype)
    D[1:, 1:] = R[perm][:, perm]
    return D


def tiny_model(cutoffs=HETERO, seed=0, fit_on=None, **kw):
    torch.manual_seed(seed)
    cfg = HedgeNetElectronConfig(cutoffs=cutoffs, avg_num_neighbors={k: 20.0 for k in cutoffs},
                                 **{**TINY, **kw})
    model = HedgeNetElectron(cfg)
    atoms = fit_on if fit_on is not None else [small_bilayer(1)]
    data = ElectronDataset.from_structures([(a, sk_blocks(a)) for a in atoms], cutoffs)
    fit_normalisation(model, data.normalisation_items())
    return model


def block_rows_rotation(bm: BlockMap, R: torch.Tensor) -> torch.Tensor:
    """D(R) acting on BlockMap's irreps rows ((type, m, copy) layout)."""
    mats = []
    for ir, k in bm.segments:
        mats.append(torch.kron(ir.D_from_matrix(R), torch.eye(k)))
    return torch.block_diag(*mats)


# --- the output-to-block map ----------------------------------------------------------------

def test_block_map_conventions_and_equivariance():
    bm = BlockMap((0, 1))
    assert bm.dim == 16 and str(bm.irreps_out) == "2x0e+2x1o+1x1e+1x2e"
    assert torch.allclose(bm.matrix @ bm.matrix.T, torch.eye(16), atol=1e-14)  # orthogonal
    # a 1o vector v = (x, y, z) in the s-p slot is the s-p block (v_y, v_z, v_x) in tblite order
    v = torch.tensor([0.3, -0.5, 0.8])
    y = torch.zeros(16)
    y[[2, 4, 6]] = v  # rows of 1o: (m, copy) -> copy 0 (s x p) at rows 2, 4, 6
    block = bm(y)
    assert torch.allclose(block[0, 1:], v[[1, 2, 0]], atol=1e-14)
    assert torch.allclose(block[1:, :], torch.zeros(3, 4), atol=1e-14)
    # D(R) on the irreps is D H D^T on the block, D = blockdiag(1, R in tblite's p order)
    R = o3.rand_matrix()
    y = torch.randn(16)
    D = p_rotation(R)
    assert torch.allclose(bm(block_rows_rotation(bm, R) @ y), D @ bm(y) @ D.T, atol=1e-12)
    # a Slater-Koster p-p block (pi 1 + (sigma - pi) u u^T) has no 1e part; inverse recovers it
    u = torch.nn.functional.normalize(torch.randn(3), dim=0)[[1, 2, 0]]
    pp = torch.zeros(4, 4)
    pp[1:, 1:] = -2.7 * torch.eye(3) + 8.7 * torch.outer(u, u)
    y = bm.inverse(pp)
    assert y[8:11].abs().max() < 1e-14  # rows of 1e (after 2x0e, 2x1o)
    assert y[11:].abs().max() > 1  # 2e carries the anisotropy
    assert torch.allclose(bm(y), pp, atol=1e-14)


def test_synthetic_targets_are_equivariant_like_the_model():
    # guards the test data itself: rotating about z transforms sk_blocks by D H D^T
    atoms = small_bilayer(2)
    theta = 0.7
    rot = atoms.copy()
    rot.rotate(math.degrees(theta), "z", rotate_cell=True)
    R = o3.matrix_z(torch.tensor(theta))
    a, b = sk_blocks(atoms), sk_blocks(rot)
    order_a = np.lexsort((a.R[:, 1], a.R[:, 0], a.j, a.i))
    order_b = np.lexsort((b.R[:, 1], b.R[:, 0], b.j, b.i))
    D = p_rotation(R).numpy()
    np.testing.assert_allclose(D @ a.h[order_a] @ D.T, b.h[order_b], atol=1e-12)


# --- (a) rotation equivariance ----------------------------------------------------------------

def test_network_core_is_equivariant_under_general_3d_rotations():
    model = tiny_model()
    graph = build_graph(small_bilayer(3), HETERO)
    R = o3.rand_matrix()
    rotated = dataclasses.replace(graph, positions=graph.positions @ R.T, cell=graph.cell @ R.T)
    out, out_rot = model(graph), model(rotated)
    D = p_rotation(R)
    for t in ("h", "s"):
        for key in (ONSITE, "intra", "inter"):
            expected = D @ out[t][key] @ D.T
            assert (expected - out_rot[t][key]).abs().max() < TOL, (t, key)
            assert out[t][key].abs().max() > 1e-3  # not trivially zero


def test_full_pipeline_is_equivariant_under_rotations_about_z():
    model = MLHamiltonianModel(tiny_model(), device="cpu")
    atoms = small_bilayer(4)
    theta = float(np.random.default_rng(5).uniform(0, 2 * np.pi))
    rot = atoms.copy()
    rot.rotate(math.degrees(theta), "z", rotate_cell=True)
    a, b = model.blocks([atoms, rot])
    assert np.array_equal(a.i, b.i) and np.array_equal(a.j, b.j) and np.array_equal(a.R, b.R)
    D = p_rotation(o3.matrix_z(torch.tensor(theta))).numpy()
    assert np.abs(D @ a.h @ D.T - b.h).max() < TOL
    assert np.abs(D @ a.s @ D.T - b.s).max() < TOL


# --- (b) Hermiticity ----------------------------------------------------------------------------

def test_predicted_h_and_s_are_hermitian_by_construction():
    model = MLHamiltonianModel(tiny_model(), device="cpu")
    atoms = small_bilayer(6)
    (blocks,) = model.blocks([atoms])
    n = len(atoms)
    # pairs: on-site + every edge within 6 A of both relations
    g = build_graph(atoms, HETERO)
    assert len(blocks.i) == n + len(g.edges["intra"]) + len(g.edges["inter"])
    rev = pair_index(blocks, blocks.j, blocks.i, -blocks.R)
    assert (rev >= 0).all()
    for x in (blocks.h, blocks.s):
        assert np.array_equal(x[rev], x.transpose(0, 2, 1))  # H_ji(-R) == H_ij(R)^T exactly
    k = np.random.default_rng(0).uniform(-0.5, 0.5, (3, 3))
    hk, sk = bloch_matrices(blocks, k)
    for m in (hk, sk):
        assert np.abs(m - m.conj().transpose(0, 2, 1)).max() < 1e-12


# --- (c) permutations ------------------------------------------------------------------------------

def test_permuting_atoms_permutes_blocks():
    model = MLHamiltonianModel(tiny_model(), device="cpu")
    atoms = small_bilayer(7)
    perm = np.random.default_rng(8).permutation(len(atoms))
    permuted = atoms[perm]  # new atom a is old atom perm[a]; layer labels travel along
    a, b = model.blocks([atoms, permuted])
    p = pair_index(a, perm[b.i], perm[b.j], b.R)
    assert (p >= 0).all() and len(a.i) == len(b.i)
    assert np.abs(a.h[p] - b.h).max() < TOL
    assert np.abs(a.s[p] - b.s).max() < TOL


# --- (d) heterogeneous vs homogeneous ----------------------------------------------------------------

def _hetero_from_homo(homo: HedgeNetElectron, inter: str) -> HedgeNetElectron:
    """HedgeNet with the 'all' weights as 'intra' and, for 'inter', zeros or the same weights."""
    hetero = tiny_model(HETERO, seed=1)
    src = homo.state_dict()
    state = {}
    for key, value in hetero.state_dict().items():
        parts = key.split(".")
        if key.endswith("edge_scale"):
            state[key] = src[key].expand_as(value).clone()
        elif "intra" in parts or "inter" in parts:
            rel = "intra" if "intra" in parts else "inter"
            copied = src[".".join("all" if x == rel else x for x in parts)]
            state[key] = torch.zeros_like(copied) if (rel == "inter" and inter == "zero") else copied
        else:
            state[key] = src[key]
    hetero.load_state_dict(state)
    return hetero


def test_homogeneous_equals_heterogeneous_with_inter_zeroed_on_a_monolayer():
    homo = tiny_model(HOMO, seed=2)
    hetero = _hetero_from_homo(homo, inter="zero")
    atoms = displaced(supercell(monolayer(), 3), 9)
    out_homo = homo(build_graph(atoms, HOMO))
    out_het = hetero(build_graph(atoms, HETERO))
    assert len(build_graph(atoms, HETERO).edges["inter"]) == 0
    for t in ("h", "s"):
        assert (out_homo[t][ONSITE] - out_het[t][ONSITE]).abs().max() < 1e-12
        assert (out_homo[t]["all"] - out_het[t]["intra"]).abs().max() < 1e-12


def test_heterogeneous_with_tied_weights_is_the_homogeneous_network_on_a_bilayer():
    # node updates are sums over relations, so one set of weights for both relations
    # reproduces the homogeneous network exactly: heterogeneity only adds freedom
    homo = tiny_model(HOMO, seed=3)
    hetero = _hetero_from_homo(homo, inter="same")
    atoms = small_bilayer(10)
    g_homo, g_het = build_graph(atoms, HOMO), build_graph(atoms, HETERO)
    with torch.no_grad():
        out_homo, out_het = homo(g_homo), hetero(g_het)
    mb_homo = blocks_by_key(g_homo, out_homo["h"], ["all"])
    mb_het = blocks_by_key(g_het, out_het["h"], ["intra", "inter"])
    assert mb_homo.keys() == mb_het.keys()
    assert max(float((mb_homo[k] - mb_het[k]).abs().max()) for k in mb_homo) < 1e-12


def blocks_by_key(graph, out, relations):
    result = {("on", a): out[ONSITE][a] for a in range(graph.n_atoms)}
    for rel in relations:
        e = graph.edges[rel]
        for k, (i, j, s) in enumerate(zip(e.index[0].tolist(), e.index[1].tolist(), e.shift.tolist())):
            result[(i, j, *s)] = out[rel][k]
    return result


# --- (e) training reduces the error ----------------------------------------------------------------

def test_a_few_optimisation_steps_reduce_the_block_mse():
    structures = [small_bilayer(11), small_bilayer(12)]
    data = ElectronDataset.from_structures([(a, sk_blocks(a)) for a in structures], HETERO)
    cfg = dict(TINY, avg_num_neighbors=data.avg_num_neighbors())
    torch.manual_seed(0)
    model = HedgeNetElectron(HedgeNetElectronConfig(cutoffs=HETERO, **cfg))
    fit_normalisation(model, data.normalisation_items())
    batch = collate_electron(list(data))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses, mse = [], []
    for _ in range(30):
        opt.zero_grad()
        out = model(batch.graph, batch.reverse)
        loss = sum(normalised_block_mse(model, out, batch.targets).values())
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        mse.append(float(block_errors(out, batch.targets)["h_mse"].detach()))
    assert losses[-1] < 0.5 * losses[0], losses
    assert mse[-1] < 0.5 * mse[0], mse
    # S_ii = 1 exactly: its on-site statistics have zero spread, so the scale is 0
    out = model(batch.graph, batch.reverse)
    assert torch.equal(out["s"][ONSITE], torch.eye(4).expand_as(out["s"][ONSITE])) or \
        (out["s"][ONSITE] - torch.eye(4)).abs().max() < 1e-14


# --- (f) data set alignment ----------------------------------------------------------------------------

def random_blocks(atoms, rc, seed):
    """Random (non-Hermitian) blocks on every pair within rc, shuffled: misalignment shows."""
    i, j, shift, _ = neighbour_pairs(atoms, rc)
    n = len(atoms)
    i = np.concatenate([np.arange(n), i])
    j = np.concatenate([np.arange(n), j])
    shift = np.concatenate([np.zeros((n, 3), dtype=np.int64), shift])
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(i))
    return Blocks(i=i[order], j=j[order], R=shift[order], h=rng.normal(size=(len(i), 4, 4)),
                  s=rng.normal(size=(len(i), 4, 4)), norb=np.full(n, 4), meta={"r_c_A": rc})


def check_alignment(sample, blocks):
    lookup = {(int(a), int(b), *map(int, r)): p for p, (a, b, r) in enumerate(zip(blocks.i, blocks.j, blocks.R))}
    n = sample.graph.n_atoms
    for a in range(n):
        p = lookup[(a, a, 0, 0, 0)]
        assert torch.equal(sample.targets["h"][ONSITE][a], torch.as_tensor(blocks.h[p]))
        assert torch.equal(sample.targets["s"][ONSITE][a], torch.as_tensor(blocks.s[p]))
    for rel, e in sample.graph.edges.items():
        for k, (i, j, s) in enumerate(zip(e.index[0].tolist(), e.index[1].tolist(), e.shift.tolist())):
            p = lookup[(i, j, *s)]
            assert torch.equal(sample.targets["h"][rel][k], torch.as_tensor(blocks.h[p]))
            assert torch.equal(sample.targets["s"][rel][k], torch.as_tensor(blocks.s[p]))


def test_dataset_targets_are_the_blocks_of_each_edge():
    atoms = small_bilayer(13)
    blocks = random_blocks(atoms, 6.5, 0)  # labels reach further than the graph
    sample = make_sample(atoms, blocks, HETERO)
    check_alignment(sample, blocks)
    assert sample.n_unused_labels > 0
    for rel in HETERO:
        assert torch.equal(sample.reverse[rel], reverse_edge_index(sample.graph.edges[rel], len(atoms)))
    # a graph edge without a label is refused
    e = sample.graph.edges["inter"]
    drop = np.ones(len(blocks.i), dtype=bool)
    drop[pair_index(blocks, e.index[0, :1].numpy(), e.index[1, :1].numpy(), e.shift[:1].numpy())] = False
    holed = dataclasses.replace(blocks, i=blocks.i[drop], j=blocks.j[drop], R=blocks.R[drop],
                                h=blocks.h[drop], s=blocks.s[drop])
    with pytest.raises(LabelError, match="no label"):
        make_sample(atoms, holed, HETERO)


def test_collate_offsets_reverse_edges_and_targets():
    structures = [small_bilayer(14), displaced(supercell(monolayer(), 3), 15)]
    data = ElectronDataset.from_structures([(a, random_blocks(a, 6.0, k)) for k, a in enumerate(structures)],
                                           HETERO)
    batch = collate_electron(list(data))
    for rel in HETERO:
        assert torch.equal(batch.reverse[rel], reverse_edge_index(batch.graph.edges[rel], batch.graph.n_atoms))
        assert len(batch.targets["h"][rel]) == len(batch.graph.edges[rel])
    n0 = data[0].n_atoms
    assert torch.equal(batch.targets["h"][ONSITE][n0:], data[1].targets["h"][ONSITE])
    b32 = batch.to(dtype=torch.float32)
    assert b32.graph.positions.dtype == torch.float32 and b32.targets["s"]["intra"].dtype == torch.float32


def test_deeph_split_is_cached_once_and_aligned(tmp_path):
    structures = [small_bilayer(16), small_bilayer(17)]
    pairs = [(a, random_blocks(a, 6.0, k)) for k, a in enumerate(structures)]
    for k, (a, b) in enumerate(pairs):
        write_deeph(tmp_path / f"s{k}", a, b)
    write_split(tmp_path, {"train": ["s0", "s1"], "val": [], "test": []})
    data = load_split(tmp_path, "train", HETERO, dtype=torch.float64)
    caches = list((tmp_path / ".cache").glob("electron_train_*.pt"))
    assert len(caches) == 1
    for sample, (a, b) in zip(data, pairs):
        check_alignment(sample, b)
    again = load_split(tmp_path, "train", HETERO, dtype=torch.float64)  # from the cache file
    for s1, s2 in zip(data, again):
        assert torch.equal(s1.targets["h"]["inter"], s2.targets["h"]["inter"])
        assert torch.equal(s1.graph.edges["intra"].index, s2.graph.edges["intra"].index)
    assert list((tmp_path / ".cache").glob("electron_train_*.pt")) == caches
    write_split(tmp_path, {"train": ["s0", "s9"], "val": [], "test": []})  # s9 not generated yet
    with pytest.raises(DataFormatError, match="missing"):
        load_split(tmp_path, "train", HETERO)
    assert len(load_split(tmp_path, "train", HETERO, missing="skip")) == 1


# --- (g) input validation ----------------------------------------------------------------------------

def test_unknown_element_is_refused():
    net = tiny_model()
    model = MLHamiltonianModel(net, device="cpu")
    atoms = small_bilayer(18)
    atoms.numbers[3] = 14  # Si
    with pytest.raises(StructureError, match="Si"):
        model.blocks([atoms])
    with pytest.raises(StructureError, match="Si"):
        net(build_graph(atoms, HETERO))


def test_config_round_trip_and_graph_cutoff_check():
    cfg = HedgeNetElectronConfig(cutoffs=HOMO, targets=("s",), avg_num_neighbors={"all": 68.0}, **TINY)
    assert HedgeNetElectronConfig.from_dict(cfg.to_dict()) == cfg
    net = HedgeNetElectron(cfg)
    assert set(net.targets) == {"s"}
    with pytest.raises(ValueError, match="cutoff"):
        net(build_graph(small_bilayer(0), {"all": 5.0}))
    with pytest.raises(ValueError, match="hidden_irreps"):
        HedgeNetElectron(dataclasses.replace(cfg, hidden_irreps="4x0e+4x1o"))


def test_normalisation_statistics_match_a_direct_computation():
    structures = [small_bilayer(19), small_bilayer(20)]
    data = ElectronDataset.from_structures([(a, sk_blocks(a)) for a in structures], HETERO)
    model = tiny_model()
    fit_normalisation(model, data.normalisation_items())
    bm, norm = model.block_map, model.normalisers["h"]
    batch = collate_electron(list(data))
    y = bm.inverse(batch.targets["h"][ONSITE])
    mean = y.mean(0)
    assert torch.allclose(norm.onsite_shift[0][bm.scalar_row], mean[bm.scalar_row], atol=1e-12)
    assert torch.all(norm.onsite_shift[0][~bm.scalar_row] == 0)
    ye = bm.inverse(batch.targets["h"]["inter"])
    rows_2e = slice(11, 16)  # one 2e copy: its scale is the RMS over edges and its 5 components
    assert torch.allclose(norm.edge_scale[1][rows_2e], ye[:, rows_2e].pow(2).mean().sqrt().expand(5))
    scalar_resid = (y - mean)[:, 0].pow(2).mean().sqrt()
    assert torch.allclose(norm.onsite_scale[0], scalar_resid)


# --- (g) an orbital in a local frame: p_z along the layer normal (Slater-Koster data) ----------

def sk_pz_blocks(atoms):
    from mlepi_core.reference.slater_koster import SlaterKosterPz

    return SlaterKosterPz().blocks([atoms])[0]


def frame_model(seed=0, cutoffs=HETERO, fit_on=None):
    torch.manual_seed(seed)
    cfg = HedgeNetElectronConfig(cutoffs=cutoffs, shells=(0,), orbital_frame="local_normal",
                                 avg_num_neighbors={k: 20.0 for k in cutoffs}, **TINY)
    model = HedgeNetElectron(cfg)
    atoms = fit_on if fit_on is not None else [small_bilayer(1)]
    data = ElectronDataset.from_structures([(a, sk_pz_blocks(a)) for a in atoms], cutoffs)
    fit_normalisation(model, data.normalisation_items())
    return model


def test_local_normals_are_the_reference_convention():
    from mlepi_core.models.electron import local_normals
    from mlepi_core.reference.slater_koster import NEIGHBOUR_CUT
    from mlepi_core.reference.slater_koster import local_normals as reference_normals

    atoms = displaced(supercell(bilayer("AB"), 3), 4, sigma=0.08)
    expected = reference_normals(atoms)
    assert np.degrees(np.arccos(expected[:, 2].min())) > 2.0  # the layers are not flat
    for cutoffs in (HETERO, HOMO):
        graph = build_graph(atoms, cutoffs)
        assert np.abs(local_normals(graph, list(cutoffs), NEIGHBOUR_CUT).numpy() - expected).max() < 1e-12


def test_a_local_frame_network_is_invariant_under_general_3d_rotations():
    """Its blocks are n_i^T P_ij n_j with equivariant P and normals that rotate along: scalars
    (a mix-up of the p order between P and n would break this)."""
    model = frame_model()
    graph = build_graph(small_bilayer(3), HETERO)
    for seed in range(3):
        torch.manual_seed(seed)
        R = o3.rand_matrix()
        rotated = dataclasses.replace(graph, positions=graph.positions @ R.T, cell=graph.cell @ R.T)
        out, out_rot = model(graph), model(rotated)
        for t in ("h", "s"):
            for key in (ONSITE, "intra", "inter"):
                assert out[t][key].shape[1:] == (1, 1)
                assert (out[t][key] - out_rot[t][key]).abs().max() < TOL, (t, key)
        assert out["h"]["intra"].abs().max() > 1e-3
    with pytest.raises(ValueError, match="one orbital per atom"):
        HedgeNetElectron(HedgeNetElectronConfig(cutoffs=HETERO, shells=(0, 1), orbital_frame="local_normal", **TINY))
    with pytest.raises(ValueError, match="orbital_frame must be one of"):
        HedgeNetElectron(HedgeNetElectronConfig(cutoffs=HETERO, shells=(0,), orbital_frame="lab", **TINY))


@pytest.mark.integration  # trains, or runs a subprocess
def test_a_local_frame_network_learns_tilted_p_z_hoppings_faster():
    """On Slater-Koster labels of strongly displaced layers, a few steps of the local-frame
    network bring the hopping error well below the same network without the frame."""
    structures = [displaced(supercell(bilayer("AB"), 2), s, sigma=0.1) for s in (21, 22)]
    data = ElectronDataset.from_structures([(a, sk_pz_blocks(a)) for a in structures], HETERO)
    batch = collate_electron(list(data))
    errors = {}
    for frame in ("global", "local_normal"):
        torch.manual_seed(0)
        cfg = HedgeNetElectronConfig(cutoffs=HETERO, shells=(0,), orbital_frame=frame, targets=("h",),
                                     avg_num_neighbors=data.avg_num_neighbors(), **TINY)
        model = HedgeNetElectron(cfg)
        fit_normalisation(model, data.normalisation_items())
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(60):
            opt.zero_grad()
            loss = sum(normalised_block_mse(model, model(batch.graph, batch.reverse), batch.targets).values())
            loss.backward()
            opt.step()
        errors[frame] = float(block_errors(model(batch.graph, batch.reverse), batch.targets)["h_mse"].detach())
    assert errors["local_normal"] < 0.5 * errors["global"], errors


def test_a_model_trained_on_a_p_z_basis_reports_its_electron_count():
    """The band probe's Fermi level needs the electrons the basis holds: one per carbon for a
    network trained on Slater-Koster p_z labels (recorded from the data), the element's
    valence count otherwise (nothing recorded)."""
    from pathlib import Path

    from mlepi_core.models import load_model
    from mlepi_core.structures import bilayer

    model = load_model(Path(__file__).resolve().parents[1] / "assets" / "models" / "electron", kind="electron")
    atoms = bilayer("AB")
    assert "valence_electrons" not in model.blocks([atoms])[0].meta
    model.metadata = {**model.metadata, "training_data": {**model.metadata.get("training_data", {}),
                                                          "valence_electrons_per_atom": 1.0}}
    assert model.blocks([atoms])[0].meta["valence_electrons"] == 4


def test_radial_output_scales_follow_the_rms_at_each_edge_length():
    """radial_scale_bins: each hopping is scaled by the training RMS at its own length (log-linear
    between bin centres), which leaves equivariance and Hermiticity intact."""
    structures = [small_bilayer(19), small_bilayer(20)]
    data = ElectronDataset.from_structures([(a, sk_blocks(a)) for a in structures], HETERO)
    model = tiny_model(radial_scale_bins=12, fit_on=structures)
    bm, norm = model.block_map, model.normalisers["h"]
    batch = collate_electron(list(data))
    ye = bm.inverse(batch.targets["h"]["intra"])
    lengths = batch.graph.edge_vectors("intra").norm(dim=-1)
    k = norm.bin_of(0, lengths)
    filled = torch.unique(k)
    assert len(filled) >= 4  # the test data span several bins
    for b in filled[:4]:  # scale at a bin centre = that bin's RMS of the 0e copy (row 0)
        rms = ye[k == b, 0].pow(2).mean().sqrt()
        centre = (b + 0.5) * norm.bin_width[0]
        got = norm.edge_scales(0, centre.reshape(1).to(torch.float64))[0, 0]
        assert torch.allclose(got, rms.clamp(min=1e-4 * norm.edge_scale[0, 0]), rtol=1e-10), (b, got, rms)
    # between two centres the scale interpolates log-linearly
    c0, c1 = (filled[0] + 0.5) * norm.bin_width[0], (filled[0] + 1.5) * norm.bin_width[0]
    s0, s1, sm = norm.edge_scales(0, torch.stack([c0, c1, (c0 + c1) / 2]).to(torch.float64))[:, 0]
    assert torch.allclose(sm, (s0 * s1).sqrt(), rtol=1e-10)
    assert_equivariant_and_hermitian(model)  # as without the radial scale


def test_edge_invariants_keep_the_network_equivariant_and_hermitian():
    """edge_invariants: the bilinears x_i . x_j and (x_i . u)(x_j . u) are invariants, so the
    blocks still transform as D H D^T and H_ji(-R) = H_ij(R)^T; and they change the output."""
    plain = tiny_model(seed=3)
    model = tiny_model(seed=3, edge_invariants=True)
    graph = build_graph(small_bilayer(3), HETERO)
    assert (model(graph)["h"]["intra"] - plain(graph)["h"]["intra"]).abs().max() > 1e-3
    assert_equivariant_and_hermitian(model)


def assert_equivariant_and_hermitian(model):
    """Blocks transform as D H D^T under a random rotation; H_ji(-R) = H_ij(R)^T bit for bit."""
    graph = build_graph(small_bilayer(3), HETERO)
    R = o3.rand_matrix()
    rotated = dataclasses.replace(graph, positions=graph.positions @ R.T, cell=graph.cell @ R.T)
    out, out_rot = model(graph), model(rotated)
    D = p_rotation(R)
    for key in (ONSITE, "intra", "inter"):
        assert (D @ out["h"][key] @ D.T - out_rot["h"][key]).abs().max() < TOL, key
    (blocks,) = MLHamiltonianModel(model, device="cpu").blocks([small_bilayer(6)])
    rev = pair_index(blocks, blocks.j, blocks.i, -blocks.R)
    assert np.array_equal(blocks.h[rev], blocks.h.transpose(0, 2, 1))


# --- (h) the two-centre term -------------------------------------------------------------------

def zero_heads(model):
    """Silence the message-passing heads: what is left of a hopping is the two-centre term."""
    with torch.no_grad():
        for heads in model.heads.values():
            for head in heads.values():
                for w in head.weights.values():
                    w.zero_()
    return model


def test_two_centre_term_keeps_the_network_equivariant_and_hermitian():
    plain = tiny_model(seed=3)
    model = tiny_model(seed=3, two_centre=24)
    graph = build_graph(small_bilayer(3), HETERO)
    assert (model(graph)["h"]["intra"] - plain(graph)["h"]["intra"]).abs().max() > 1e-3
    assert_equivariant_and_hermitian(model)


def test_two_centre_term_has_the_slater_koster_form():
    """With the layers' heads silenced, a hopping depends on the bond vector alone and has the
    two-centre form: the s-p block along u, the p-p block alpha 1 + beta u u^T (u an
    eigenvector, no antisymmetric part), in tblite's order (p_y, p_z, p_x)."""
    model = zero_heads(tiny_model(seed=5, two_centre=24))
    a, b = small_bilayer(7), small_bilayer(8)  # the same lattice, other displacements
    out_a, out_b = model(build_graph(a, HETERO)), model(build_graph(b, HETERO))
    ga, gb = build_graph(a, HETERO), build_graph(b, HETERO)
    assert out_a["h"][ONSITE].abs().max() > 1.0  # on-site blocks come from the per-element shift
    for rel in ("intra", "inter"):
        h = out_a["h"][rel]
        v = ga.edge_vectors(rel)
        u = (v / v.norm(dim=-1, keepdim=True))[:, [1, 2, 0]]
        assert h.abs().max() > 1e-3, rel
        sp = h[:, 0, 1:]
        assert (sp - (sp * u).sum(-1, keepdim=True) * u).abs().max() < TOL, rel
        pp = h[:, 1:, 1:]
        assert (pp - pp.transpose(1, 2)).abs().max() < TOL, rel
        pu = torch.einsum("eab,eb->ea", pp, u)
        assert (pu - (pu * u).sum(-1, keepdim=True) * u).abs().max() < TOL, rel
        # an edge of the other structure with (nearly) the same vector gets (nearly) the same block
        w = gb.edge_vectors(rel)
        d = torch.cdist(v[:50], w)
        k = d.argmin(dim=1)
        close = d.min(dim=1).values < 0.05
        assert close.sum() > 0
        assert ((h[:50][close] - out_b["h"][rel][k[close]]).abs().max()
                < 0.2 * h[:50][close].abs().max()), rel
    with torch.no_grad():  # and exactly the same block for exactly the same vector
        same = dataclasses.replace(ga, positions=ga.positions + 0.3)
        assert (model(same)["h"]["inter"] - out_a["h"]["inter"]).abs().max() < TOL


def test_fitted_two_centre_tables_reproduce_the_slater_koster_reference():
    """The p_z reference is a two-centre model in the local frame: least-squares tables fitted
    on two displaced bilayers reproduce its hoppings on a third (the layers' heads start at
    zero), and only the tables are fitted: they stay out of gradient descent."""
    from mlepi_core.models.electron_fitting import fit_two_centre

    fit = [displaced(supercell(bilayer("AB"), 3), s, sigma=0.05) for s in (21, 22)]
    held = displaced(supercell(bilayer("AB"), 3), 23, sigma=0.04)
    data = ElectronDataset.from_structures([(a, sk_pz_blocks(a)) for a in fit], HETERO)
    cfg = HedgeNetElectronConfig(cutoffs=HETERO, shells=(0,), orbital_frame="local_normal", targets=("h",),
                                 two_centre=60, avg_num_neighbors=data.avg_num_neighbors(), **TINY)
    torch.manual_seed(0)
    model = HedgeNetElectron(cfg)
    fit_normalisation(model, data.normalisation_items())
    left = fit_two_centre(model, (collate_electron([smp]) for smp in data))
    assert max(left["h"].values()) < 1e-4  # normalised residual RMS
    assert not any(p.requires_grad for p in model.two_centre.parameters())
    batch = collate_electron(list(ElectronDataset.from_structures([(held, sk_pz_blocks(held))], HETERO)))
    with torch.no_grad():
        out = model(batch.graph, batch.reverse)
    for rel in HETERO:
        err = (out["h"][rel] - batch.targets["h"][rel]).abs()
        assert err.mean() < 1e-4 and err.max() < 5e-3, (rel, err.mean(), err.max())  # eV
    with pytest.raises(ValueError, match="no two-centre term"):
        fit_two_centre(tiny_model(), [batch])


def test_two_centre_tables_are_per_element_pair():
    """On a two-element system (B, N) whose hoppings are two-centre with integrals scaled per
    element pair (B-N's s-p integral is not N-B's), the fitted tables reproduce every
    hopping of a held-out structure: one table per ordered element pair. A single table for
    all pairs cannot (its residual stays at the tenths of the data's spread)."""
    from mlepi_core.models.electron_fitting import fit_two_centre
    from mlepi_core.structures import hbn_bilayer

    cutoffs = {"intra": 4.0, "inter": 4.0}
    fit = [displaced(supercell(hbn_bilayer(), 2), s, sigma=0.05) for s in (31, 32)]
    held = displaced(supercell(hbn_bilayer(), 2), 33, sigma=0.04)
    data = ElectronDataset.from_structures([(a, sk_blocks(a, rc=4.0)) for a in fit], cutoffs)
    cfg = HedgeNetElectronConfig(elements=("B", "N"), cutoffs=cutoffs, two_centre=40,
                                 avg_num_neighbors=data.avg_num_neighbors(), **TINY)
    torch.manual_seed(0)
    model = HedgeNetElectron(cfg)
    assert all(tc.n_pairs == 4 for tables in model.two_centre.values() for tc in tables.values())
    fit_normalisation(model, data.normalisation_items())
    left = fit_two_centre(model, (collate_electron([smp]) for smp in data))
    assert max(max(v.values()) for v in left.values()) < 1e-3, left  # normalised residual RMS
    batch = collate_electron(list(ElectronDataset.from_structures([(held, sk_blocks(held, rc=4.0))], cutoffs)))
    with torch.no_grad():
        out = model(batch.graph, batch.reverse)
    for t in ("h", "s"):
        for rel in cutoffs:
            err = (out[t][rel] - batch.targets[t][rel]).abs()
            scale = batch.targets[t][rel].abs().max()
            assert err.max() < 1e-2 * scale, (t, rel, float(err.max()), float(scale))
