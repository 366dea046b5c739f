"""HedgeNet-Phonon: symmetry, conservative forces, heterogeneity, saving/loading, training.

Tiny float64 models on 2x2 bilayers (16 atoms), fixed seeds: each test takes a few
seconds at most. Tolerances: invariances hold to rounding (1e-10 eV on energies of
~116 eV, 1e-12 eV/A on forces of ~0.04 eV/A; measured 0 and 3e-16); central finite
differences of step 1e-4 A carry an O(h^2) error below 1e-8.
"""

import json
import math

import numpy as np
import pytest
import torch
from ase.calculators.morse import MorsePotential
from e3nn import o3

from mlepi_core.data.extxyz import read_extxyz, write_extxyz
from mlepi_core.graph import build_graph
from mlepi_core.models import (HedgeNetPhonon, HedgeNetPhononConfig, MLForceModel, ModelFormatError,
                               count_parameters, load_model, save_model)
from mlepi_core.models.blocks import EdgeTensorProduct, SymmetricProduct, edge_tp_instructions
from mlepi_core.seams import ForceModel
from mlepi_core.structures import StructureError, bilayer, monolayer, supercell
from mlepi_core.training import TrainConfig, Trainer, evaluate

CUTOFFS = {"intra": 3.0, "inter": 4.5}
TINY = dict(hidden_irreps="4x0e+4x1o", max_ell=2, num_layers=2, correlation=3, num_bessel=4,
            radial_hidden=(8,), readout_hidden=4, atomic_energies_ev={"C": -7.3}, energy_scale_ev=0.5)


def tiny_model(cutoffs=CUTOFFS, seed=0, **kw) -> HedgeNetPhonon:
    torch.manual_seed(seed)
    cfg = HedgeNetPhononConfig(cutoffs=cutoffs, avg_num_neighbors={r: 8.0 for r in cutoffs},
                               **{**TINY, **kw})
    return HedgeNetPhonon(cfg).to(torch.float64)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def default_float64():
    """Build e3nn modules with float64 coefficients (they are computed in the default dtype)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture
def atoms():
    a = supercell(bilayer("AB"), 2)
    a.positions += np.random.default_rng(3).normal(scale=0.08, size=a.positions.shape)
    return a


def run(model, atoms, cutoffs=None):
    out = model(build_graph(atoms, cutoffs or model.cutoffs))
    return out["energy"].detach().numpy(), out["forces"].detach().numpy()


# --- symmetry -----------------------------------------------------------------------------

def test_rotations_translations_reflections(model, atoms):
    e0, f0 = run(model, atoms)
    assert len(build_graph(atoms, CUTOFFS).edges["inter"]) > 0
    torch.manual_seed(7)
    for k in range(4):
        rot = o3.rand_matrix(dtype=torch.float64).numpy()
        if k % 2:
            rot = -rot  # improper: rotation times inversion (E(3), not only SO(3))
        shift = np.random.default_rng(k).normal(scale=3.0, size=3)
        moved = atoms.copy()
        moved.set_cell(atoms.cell.array @ rot.T, scale_atoms=False)
        moved.positions = atoms.positions @ rot.T + shift
        e, f = run(model, moved)
        assert abs(e[0] - e0[0]) < 1e-10, (k, e[0] - e0[0])  # |E| ~ 116 eV: ~1e-12 relative
        np.testing.assert_allclose(f, f0 @ rot.T, atol=1e-12)  # |F| ~ 0.04 eV/A, measured ~3e-16


def test_permuting_atoms_permutes_forces(model, atoms):
    e0, f0 = run(model, atoms)
    perm = np.random.default_rng(0).permutation(len(atoms))
    e, f = run(model, atoms[perm])
    assert abs(e[0] - e0[0]) < 1e-10
    np.testing.assert_allclose(f, f0[perm], atol=1e-12)


def test_forces_are_minus_the_energy_gradient(model, atoms):
    _, f = run(model, atoms)
    h = 1e-4
    rng = np.random.default_rng(1)
    for i, a in zip(rng.choice(len(atoms), 6, replace=False), rng.integers(0, 3, 6)):
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[i, a] += h
        minus.positions[i, a] -= h
        fd = -(run(model, plus)[0][0] - run(model, minus)[0][0]) / (2 * h)
        assert abs(fd - f[i, a]) < 1e-7 * max(1.0, abs(f[i, a])), (i, a, fd, f[i, a])
    assert np.abs(f.sum(axis=0)).max() < 1e-10  # translation invariance: no net force


def test_batching_equals_one_by_one(model, atoms):
    from mlepi_core.graph import batch_graphs

    other = supercell(bilayer("AA"), 2)
    graphs = [build_graph(a, CUTOFFS) for a in (atoms, other)]
    out = model(batch_graphs(graphs))
    e1, f1 = run(model, atoms)
    e2, f2 = run(model, other)
    np.testing.assert_allclose(out["energy"].detach().numpy(), [e1[0], e2[0]], atol=1e-10)
    np.testing.assert_allclose(out["forces"].detach().numpy(), np.concatenate([f1, f2]), atol=1e-10)


def test_large_jobs_are_split_into_bounded_batches(model, atoms):
    """Many structures go through the network in batches of at most 512 atoms on a CPU (a
    4096-atom batch with force gradients took 8.7 GB), and the split changes no number."""
    cells = [atoms.copy() for _ in range(40)]  # 40 x 16 atoms
    for k, c in enumerate(cells):
        c.positions += 0.01 * np.random.default_rng(k).normal(size=c.positions.shape)
    ff = MLForceModel(model, device="cpu")
    assert ff.max_batch_atoms == 512
    seen, forward = [], ff.network.forward
    ff.network.forward = lambda graph, **kw: seen.append(graph.n_atoms) or forward(graph, **kw)
    energies, forces = ff.energies_forces(cells)
    assert max(seen) <= 512 and sum(seen) == 40 * len(atoms) and len(seen) == 2
    e_one, f_one = ff.energies_forces(cells[-1:])
    np.testing.assert_allclose(energies[-1], e_one[0], rtol=1e-12)
    np.testing.assert_allclose(forces[-1], f_one[0], atol=1e-10)


def test_a_structure_too_large_for_one_batch_is_evaluated_in_exact_tiles():
    """A structure of more than 4 max_batch_atoms atoms goes through the network tile by
    tile (each tile's receptive subgraph, num_layers edges deep), in bounded memory, with
    the energy and forces of the whole-structure evaluation to rounding; a batch mixing it
    with small structures keeps their order."""
    model = tiny_model(cutoffs={"intra": 2.0, "inter": 3.5})  # receptive field 2 x 3.5 A
    big = supercell(bilayer("AB"), 12)  # 576 atoms, cell 29.5 A
    big.positions += np.random.default_rng(5).normal(scale=0.05, size=big.positions.shape)
    small = supercell(bilayer("AB"), 2)
    whole = MLForceModel(model, device="cpu", max_batch_atoms=1024)
    (e_ref,), (f_ref,) = whole.energies_forces([big])
    tiled = MLForceModel(model, device="cpu", max_batch_atoms=16)  # 576 > 64 atoms: 3 x 3 tiles
    seen, forward = [], tiled.network.forward
    tiled.network.forward = lambda graph, **kw: seen.append(graph.n_atoms) or forward(graph, **kw)
    energies, forces = tiled.energies_forces([small, big, small])
    assert seen[:2] == [16, 16] and len(seen) == 2 + 9 and max(seen[2:]) < len(big)
    assert energies[1] == pytest.approx(e_ref, rel=1e-12, abs=1e-10)
    np.testing.assert_allclose(forces[1], f_ref, atol=1e-10)
    np.testing.assert_allclose(forces[0], forces[2], atol=0)
    assert np.abs(forces[1].sum(axis=0)).max() < 1e-10  # translation invariance survives tiling


def test_float32_agrees_with_float64(atoms):
    m64 = tiny_model()
    m32 = tiny_model().to(torch.float32)
    g = build_graph(atoms, CUTOFFS)
    e64 = m64(g)["energy"].item()
    out32 = m32(g.to(dtype=torch.float32))
    assert out32["energy"].dtype == torch.float32
    assert abs(out32["energy"].item() - e64) < 1e-3  # ~1e-7 relative on ~ -117 eV


# --- building blocks against e3nn ---------------------------------------------------------------

def test_edge_tensor_product_equals_e3nn(default_float64):
    torch.manual_seed(0)
    node, sh = o3.Irreps("3x0e+3x1o"), o3.Irreps.spherical_harmonics(2)
    fast = EdgeTensorProduct(node, sh, "3x0e+3x1o+3x2e")
    mid, instr = edge_tp_instructions(node, sh, o3.Irreps("0e+1o+2e"))
    ref = o3.TensorProduct(node, sh, mid, instr, shared_weights=False, internal_weights=False)
    x = torch.randn(5, node.dim, dtype=torch.float64)
    y = torch.randn(30, sh.dim, dtype=torch.float64)
    w = torch.randn(30, ref.weight_numel, dtype=torch.float64)
    idx = torch.randint(0, 5, (2, 30))
    expected = torch.zeros(5, mid.dim, dtype=torch.float64).index_add_(
        0, idx[1], ref(x[idx[0]], y, w))
    assert fast.irreps_out == mid
    torch.testing.assert_close(fast(x, y, w, idx), expected, atol=1e-12, rtol=0)


def test_symmetric_product_is_equivariant(default_float64):
    torch.manual_seed(0)
    sp = SymmetricProduct("3x0e+3x1o+3x2e", "3x0e+3x1o", correlation=3, num_elements=2)
    a = torch.randn(6, sp.irreps_in.dim, dtype=torch.float64)
    species = torch.tensor([0, 1, 0, 1, 1, 0])
    rot = o3.rand_matrix(dtype=torch.float64)
    d_in = sp.irreps_in.D_from_matrix(rot)
    d_out = sp.irreps_out.D_from_matrix(rot)
    torch.testing.assert_close(sp(a @ d_in.T, species), sp(a, species) @ d_out.T, atol=1e-12, rtol=0)
    # cubic in A: scaling A by t scales the pure third-order part by t^3
    assert sp.correlation == 3 and len(sp.chain) == 1


# --- heterogeneity -------------------------------------------------------------------------

def test_homogeneous_equals_heterogeneous_with_inter_zeroed_on_monolayer():
    homo = tiny_model({"all": 3.0}, seed=1)
    hetero = tiny_model(CUTOFFS, seed=2)
    state = hetero.state_dict()
    for key in hetero.learned_state_dict():
        if ".interactions.intra." in key:
            state[key] = homo.state_dict()[key.replace(".intra.", ".all.")].clone()
        elif ".interactions.inter." in key:
            state[key] = torch.zeros_like(state[key])
        else:
            state[key] = homo.state_dict()[key].clone()
    hetero.load_state_dict(state)
    mono = supercell(monolayer(), 3)
    mono.positions += np.random.default_rng(5).normal(scale=0.08, size=mono.positions.shape)
    e_homo, f_homo = run(homo, mono)
    e_het, f_het = run(hetero, mono)
    assert abs(e_homo[0] - e_het[0]) < 1e-10
    np.testing.assert_allclose(f_het, f_homo, atol=1e-10)
    # with the inter block zeroed, a bilayer is two independent layers
    bi = supercell(bilayer("AB"), 3)
    bi.positions += np.random.default_rng(6).normal(scale=0.08, size=bi.positions.shape)
    e_bi, _ = run(hetero, bi)
    e_layers = sum(run(hetero, bi[bi.arrays["layer"] == ell])[0][0] for ell in (0, 1))
    assert abs(e_bi[0] - e_layers) < 1e-9


def test_one_interaction_per_relation(model):
    for layer in model.layers:
        assert list(layer.interactions) == ["intra", "inter"]
        assert layer.interactions["inter"].r_max == 4.5 and layer.interactions["intra"].r_max == 3.0
    homo = tiny_model({"all": 4.5})
    assert count_parameters(homo) < count_parameters(model)


# --- saving, loading, the ForceModel seam ---------------------------------------------------

def test_save_load_round_trip_and_unknown_element(tmp_path, model, atoms):
    path = save_model(tmp_path / "m", model, metrics={"val": {"force_mae_mev_per_a": 1.0}},
                      training_data={"sha256": "x"})
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["elements"] == ["C"] and meta["cutoffs_a"] == CUTOFFS and meta["units"]["energy"] == "eV"
    ff = load_model(path, device="cpu")
    assert isinstance(ff, MLForceModel) and isinstance(ff, ForceModel)
    e, f = ff.energies_forces([atoms, atoms])
    e0, f0 = run(model, atoms)
    np.testing.assert_allclose(e, [e0[0], e0[0]], atol=1e-10)
    np.testing.assert_allclose(f[1], f0, atol=1e-10)
    bad = atoms.copy()
    bad.numbers[3] = 7  # nitrogen
    with pytest.raises(StructureError, match="N not known to this model"):
        ff.energies_forces([atoms, bad])
    with pytest.raises(StructureError, match="not known"):
        ff.network(build_graph(bad, CUTOFFS))


def test_load_model_checks_metadata(tmp_path, model):
    path = save_model(tmp_path / "m", model)
    meta_file = path / "metadata.json"
    meta = json.loads(meta_file.read_text())
    for change, message in ((("units", {"length": "bohr", "energy": "Ha", "forces": "Ha/bohr"}), "units"),
                            (("cutoffs_a", {"intra": 5.0, "inter": 4.5}), "cutoffs"),
                            (("code_version", "9.0.0"), "incompatible"),
                            (("format", 99), "format")):
        meta_file.write_text(json.dumps({**meta, change[0]: change[1]}))
        with pytest.raises(ModelFormatError, match=message):
            load_model(path)
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError, match="a saved phonon model, not an electron model"):
        load_model(path, kind="electron")
    (path / "weights.pt").write_bytes(b"garbage")
    with pytest.raises(ModelFormatError, match="hash"):
        load_model(path)
    with pytest.raises(ModelFormatError, match="no such model"):
        load_model(tmp_path / "nothing")


# --- training -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    """Eight displaced 2x2 bilayers labelled by a Morse potential (r0 1.42 A): 6 train, 1 val, 1 test."""
    rng = np.random.default_rng(0)
    calc = MorsePotential(epsilon=1.0, r0=1.42, rho0=4.0, rcut1=1.8, rcut2=2.4)
    frames = []
    for k in range(8):
        a = supercell(bilayer("AB", d=3.0), 2)
        a.positions += rng.normal(scale=0.05, size=a.positions.shape)
        a.calc = calc
        a.info["energy"] = a.get_potential_energy()
        a.arrays["forces"] = a.get_forces()
        a.calc = None
        a.info["split"] = "train" if k < 6 else ("val" if k == 6 else "test")
        frames.append(a)
    return write_extxyz(tmp_path_factory.mktemp("data") / "tiny.xyz", frames)


def tiny_train_config(data, out, **kw):
    model = {k: (list(v) if isinstance(v, tuple) else v) for k, v in TINY.items()
             if k not in ("atomic_energies_ev", "energy_scale_ev")}
    base = dict(data=str(data), output_dir=str(out), model={**model, "cutoffs": CUTOFFS},
                dtype="float64", batch_size=2, eval_batch_size=4, lr=0.01, max_epochs=50,
                checkpoint_every_steps=1000, log_every_steps=1, progress=False, ema_decay=0.9)
    return TrainConfig.from_dict({**base, **kw})


def test_config_round_trip(tmp_path, tiny_set):
    cfg = tiny_train_config(tiny_set, tmp_path / "run", scheduler="cosine", limit_frames={"train": 4})
    assert TrainConfig.load(cfg.dump(tmp_path / "c.yaml")) == cfg
    with pytest.raises(ValueError, match="unknown training setting"):
        TrainConfig.from_dict({"learning_rate": 1.0})


def test_a_few_steps_reduce_the_loss(tmp_path, tiny_set):
    cfg = tiny_train_config(tiny_set, tmp_path / "run", max_steps=24, lr=0.03)
    trainer = Trainer(cfg)
    task = trainer.task
    assert task.split_size("train") == 6 and task.model_config.avg_num_neighbors["inter"] > 0
    assert math.isclose(task.model_config.atomic_energies_ev["C"],
                        np.mean([task.energy[k] / 16 for k in task.splits["train"]]))
    before = evaluate(task, trainer.model, "train", 8, trainer.device, trainer.dtype)
    result = trainer.run()
    after = evaluate(task, trainer.model, "train", 8, trainer.device, trainer.dtype)
    assert result["step"] == 24
    assert after["loss"] < 0.5 * before["loss"], (before, after)
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    assert (tmp_path / "run" / "model" / "metadata.json").is_file()  # best model after epoch 0
    assert (tmp_path / "run" / "steps.csv").read_text().count("\n") == 25


@pytest.mark.integration  # trains, or runs a subprocess
def test_resume_continues_identically(tmp_path, tiny_set, check_resume):
    check_resume(lambda out, **kw: tiny_train_config(tiny_set, out, **kw), tmp_path, lr=0.5)


def test_resume_refuses_relabelled_data(tmp_path, tiny_set):
    """A checkpoint trained on other labels must not silently continue on new ones."""
    import shutil

    data = tmp_path / "data.xyz"
    shutil.copy(tiny_set, data)
    Trainer(tiny_train_config(data, tmp_path / "run", max_steps=2)).run()
    text = data.read_text()
    data.write_text(text.replace("REF_energy=-", "REF_energy=-1", 1))  # one label changed
    with pytest.raises(ValueError, match="another data set"):
        Trainer(tiny_train_config(data, tmp_path / "run", max_steps=4))


@pytest.mark.integration  # trains, or runs a subprocess
def test_resume_accepts_the_same_labels_in_other_bytes(tmp_path, tiny_set):
    """A set regenerated elsewhere (other bytes, same numbers) continues, and the model's
    metadata records the earlier version; a changed validation label is refused."""
    import shutil

    data = tmp_path / "data.xyz"
    shutil.copy(tiny_set, data)
    Trainer(tiny_train_config(data, tmp_path / "run", max_epochs=1)).run()  # a model is saved
    old_sha = load_model(tmp_path / "run" / "model").metadata["training_data"]["sha256"]
    text = data.read_text()
    data.write_text(text.replace(' 0.0 0.0 ', ' 0.00 0.000 '))  # same cells, other bytes
    assert data.read_text() != text
    resumed = Trainer(tiny_train_config(data, tmp_path / "run", max_epochs=3))
    assert resumed.resumed and resumed.state["earlier_data"][0]["sha256"] == old_sha
    resumed.run()
    again = Trainer(tiny_train_config(data, tmp_path / "run", max_epochs=3))  # kept in the checkpoint
    assert again.state["earlier_data"] == resumed.state["earlier_data"]
    again.task.save(again.model, tmp_path / "saved", again.cfg, {})  # as every best model is saved
    versions = load_model(tmp_path / "saved").metadata["training_data"]["earlier_versions"]
    assert versions[0]["sha256"] == old_sha and versions[0]["until_epoch"] == 1
    lines = data.read_text().splitlines()
    val = next(i for i, line in enumerate(lines) if "split=val" in line)
    *cols, fz = lines[val + 1].split()
    lines[val + 1] = " ".join([*cols, f"{float(fz) + 1.0:.8f}"])  # one val force off by 1 eV/A
    data.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="labels changed"):
        Trainer(tiny_train_config(data, tmp_path / "run", max_epochs=4))


@pytest.mark.integration  # trains, or runs a subprocess
def test_stage_two_settings_may_change_while_stage_two_is_ahead(tmp_path, tiny_set):
    Trainer(tiny_train_config(tiny_set, tmp_path / "run", max_epochs=2, stage_two_epoch=5)).run()
    assert Trainer(tiny_train_config(tiny_set, tmp_path / "run", stage_two_epoch=3)).resumed
    with pytest.raises(ValueError, match="other settings"):  # not once the run is past it
        Trainer(tiny_train_config(tiny_set, tmp_path / "run", stage_two_epoch=1))


@pytest.mark.integration  # trains, or runs a subprocess
def test_a_finished_run_given_more_epochs_goes_on(tmp_path, tiny_set):
    done = Trainer(tiny_train_config(tiny_set, tmp_path / "run", max_epochs=1))
    done.run()
    assert done.state["done"] and done.state["epoch"] == 1
    assert Trainer(tiny_train_config(tiny_set, tmp_path / "run", max_epochs=1)).state["done"]
    more = Trainer(tiny_train_config(tiny_set, tmp_path / "run", max_epochs=2))
    assert not more.state["done"]
    more.run()
    assert more.state["epoch"] == 2 and more.state["done"]


@pytest.mark.integration  # trains, or runs a subprocess
def test_init_from_starts_at_the_saved_weights_and_huber_is_the_force_loss(tmp_path, tiny_set):
    """A continuation (``init_from``) starts from the saved network exactly; Huber's force loss
    is half the squared error below delta and delta * (|x| - delta / 2) above it."""
    first = Trainer(tiny_train_config(tiny_set, tmp_path / "a", max_epochs=1))
    first.run()
    saved = load_model(tmp_path / "a" / "model").network
    cont = Trainer(tiny_train_config(tiny_set, tmp_path / "b", max_epochs=1, init_from=str(tmp_path / "a" / "model"),
                                     force_loss="huber", huber_delta=0.05))
    for name, p in saved.state_dict().items():
        assert torch.equal(p, cont.model.state_dict()[name]), name
        assert name not in cont.ema.shadow or torch.equal(p, cont.ema.shadow[name])
    batch = cont.task.batch("train", range(4), cont.device, cont.dtype)
    loss, _ = cont.task.loss(cont.model, batch, (0.0, 1.0), training=False)
    x = (cont.model(batch.graph, compute_forces=True)["forces"] - batch.forces).abs()
    huber = torch.where(x < 0.05, 0.5 * x**2, 0.05 * (x - 0.025)).mean()
    assert (x > 0.05).any() and (x < 0.05).any()  # both branches are exercised
    assert float(loss.detach()) == pytest.approx(float(huber), rel=1e-10)
    cont.run()
    assert load_model(tmp_path / "b" / "model").metadata["model_config"] == saved.config.to_dict()
    with pytest.raises(ValueError, match="other settings than this run's model"):
        Trainer(tiny_train_config(tiny_set, tmp_path / "c", init_from=str(tmp_path / "a" / "model"),
                                  model={**tiny_train_config(tiny_set, tmp_path).model, "num_bessel": 5}))
    with pytest.raises(ValueError, match="force_loss"):
        tiny_train_config(tiny_set, tmp_path / "d", force_loss="l1")
    with pytest.raises(ValueError, match="phonon task only"):
        tiny_train_config(tiny_set, tmp_path / "e", task="electron", force_loss="huber")
    import shutil

    shutil.rmtree(tmp_path / "a" / "model")  # a resumed continuation takes its own checkpoint's weights
    again = Trainer(tiny_train_config(tiny_set, tmp_path / "b", max_epochs=1, init_from=str(tmp_path / "a" / "model"),
                                      force_loss="huber", huber_delta=0.05))
    assert again.resumed and all(torch.equal(p, cont.model.state_dict()[n]) for n, p in again.model.state_dict().items())
    assert again.task.model_config == cont.task.model_config


@pytest.mark.integration  # trains, or runs a subprocess
def test_a_continuation_on_other_data_keeps_the_statistics_of_the_network_it_starts_from(tmp_path, tiny_set):
    """The reference energies, neighbour counts and scale a training split fits belong to the
    network: a continuation on another data set (more frames, other cells) keeps the saved ones."""
    first = Trainer(tiny_train_config(tiny_set, tmp_path / "a", max_epochs=1))
    first.run()
    saved = load_model(tmp_path / "a" / "model").network
    frames = read_extxyz(tiny_set)
    for atoms in frames:  # other data: energies shifted by 1 eV per atom, so the fit would differ
        atoms.info["energy"] += len(atoms)
    shifted = tmp_path / "shifted.xyz"
    write_extxyz(shifted, frames)
    fresh = Trainer(tiny_train_config(shifted, tmp_path / "f", max_epochs=1))
    assert fresh.task.model_config.atomic_energies_ev != saved.config.atomic_energies_ev
    cont = Trainer(tiny_train_config(shifted, tmp_path / "b", max_epochs=1, init_from=str(tmp_path / "a" / "model")))
    assert cont.task.model_config.to_dict() == saved.config.to_dict()
    for name, p in saved.state_dict().items():
        assert torch.equal(p, cont.model.state_dict()[name]), name


@pytest.mark.integration  # trains, or runs a subprocess
def test_full_run_writes_metrics_and_a_loadable_model(tmp_path, tiny_set):
    cfg = tiny_train_config(tiny_set, tmp_path / "run", max_epochs=2, stage_two_epoch=1,
                            stage_two_lr=0.002)
    trainer = Trainer(cfg)
    metrics = trainer.run()
    assert trainer.state["stage"] == 2 and trainer.weights == (100.0, 10.0)
    assert trainer.optimizer.param_groups[0]["lr"] == 0.002
    stages = [line.split(",")[4] for line in (tmp_path / "run" / "epochs.csv").read_text().splitlines()]
    assert stages == ["stage", "1", "2"]
    assert set(metrics) >= {"val", "test", "best_epoch"}
    assert metrics["test"]["force_mae_mev_per_a"] > 0
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["test"]["n_structures"] == 1
    ff = load_model(tmp_path / "run" / "model")
    assert ff.metadata["metrics"]["test"] == saved["test"]
    assert ff.metadata["training_data"]["split_counts"] == {"train": 6, "val": 1, "test": 1}
    assert (tmp_path / "run" / "model" / "config.yaml").is_file()


def test_shipped_configs_build(tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "configs"
    counts = {}
    for name in ("phonon_hedgenet", "phonon_homogeneous_2", "phonon_homogeneous_4"):
        cfg = TrainConfig.load(root / f"{name}.yaml")
        assert cfg.task == "phonon" and cfg.output_dir == f"runs/{name}"
        counts[name] = count_parameters(HedgeNetPhonon(HedgeNetPhononConfig.from_dict(cfg.model)))
    assert counts["phonon_homogeneous_2"] < counts["phonon_hedgenet"]
    assert abs(counts["phonon_homogeneous_4"] / counts["phonon_hedgenet"] - 1) < 0.05
    # stage three (Huber's force loss): each network continues its own run, all on one schedule
    schedule = None
    for name in counts:
        first, third = TrainConfig.load(root / f"{name}.yaml"), TrainConfig.load(root / f"{name}_huber.yaml")
        assert third.init_from == f"runs/{name}/model" and third.output_dir == f"runs/{name}_huber"
        assert dict(third.model) == dict(first.model) and third.data == first.data
        same = {k: v for k, v in third.to_dict().items() if k not in ("model", "output_dir", "init_from")}
        assert same == (schedule := schedule or same) and third.force_loss == "huber"


@pytest.mark.integration  # trains, or runs a subprocess
def test_cli_train_and_evaluate(tmp_path, tiny_set, capsys):
    from mlepi_core.cli import main

    config = tiny_train_config(tiny_set, tmp_path / "run", max_epochs=1).dump(tmp_path / "c.yaml")
    assert main(["train", "phonon", str(config), "--max-steps", "2", "--no-progress"]) == 0
    assert "resume" in capsys.readouterr().out
    assert main(["train", "phonon", str(config), "--no-progress"]) == 0  # resumes, finishes epoch 0
    assert "test: energy MAE" in capsys.readouterr().out
    out = tmp_path / "eval.json"
    assert main(["evaluate", "phonon", str(tmp_path / "run"), "--out", str(out),
                 "--ablation", f"twin={tmp_path / 'run'}"]) == 0
    table = json.loads(out.read_text())
    assert table["test"]["n_structures"] == 1
    assert table["data"]["same_as_training"] is True  # the file the run was trained on
    # a baseline row holds the same keys, evaluated on the same split (here the same model)
    assert table["ablation"]["twin"]["test"] == table["test"]
    fig = tmp_path / "fig4b.png"
    assert main(["evaluate", "phonon", str(tmp_path / "run"), "--splits", "test", "--phonons",
                 "--phonon-supercell", "3", "--figure", str(fig), "--out", str(out)]) == 0
    table = json.loads(out.read_text())
    ph = table["phonons_3x3"]
    assert ph["rms_cm1"] > 0 and ph["max_imag_cm1"] >= 0 and ph["supercell"] == 3 and fig.is_file()
    # every validation cell is compared or says why not (a two-step model may relax one into overlap)
    from mlepi_core.interlayer import validation_cells

    assert set(table["gamma_modes_cm1"]) | set(table["failed_cells"]) == set(validation_cells())
    assert main(["evaluate", "phonon", str(tmp_path / "nothing")]) == 2  # clear error, no traceback
    assert "no such model folder" in capsys.readouterr().err


def test_radial_resolution_per_relation(tmp_path):
    fine = tiny_model(num_bessel={"intra": 4, "inter": 7})
    widths = {rel: block.radial_mlp.hs[0] for rel, block in fine.layers[0].interactions.items()}
    assert widths == {"intra": 4, "inter": 7}
    config = HedgeNetPhononConfig.from_dict(fine.config.to_dict())
    assert config == fine.config
    atoms = supercell(bilayer("AB"), 2)
    rebuilt = HedgeNetPhonon(config).to(torch.float64)
    rebuilt.load_learned_state_dict(fine.learned_state_dict())
    a, b = (MLForceModel(m).energies_forces([atoms]) for m in (fine, rebuilt))
    np.testing.assert_allclose(a[0], b[0], rtol=1e-12)
    with pytest.raises(ValueError, match="no count for relation 'inter'"):
        tiny_model(num_bessel={"intra": 4})
    with pytest.raises(ValueError, match="positive integer"):
        tiny_model(num_bessel={"intra": 4, "inter": 0})
