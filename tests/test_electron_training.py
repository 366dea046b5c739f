"""Training, saving, loading and evaluating HedgeNet-Electron through the shared training loop.

A tiny DeepH data set is written on the fly (tmp folder, module scope): displaced 2x2
AB bilayers (16 atoms) for train/val/test and a 28-atom 21.8 degree twisted cell as the
held-out "twisted" split, labelled with Slater-Koster-like H and S blocks (Hermitian
and equivariant by construction, tblite's orbital order). Cutoffs of 3-4 A and a
4-channel, 2-layer float64 network keep each test to a few seconds on one thread.
"""

import json
import math

import numpy as np
import pytest
import torch
import yaml

from mlepi_core.data.deeph import write_deeph, write_split
from mlepi_core.data import DataFormatError
from mlepi_core.data.electron_dataset import ElectronDataset, collate_electron, deeph_set_sha256
from mlepi_core.graph import build_graph
from mlepi_core.models import (HedgeNetElectron, HedgeNetElectronConfig, MLHamiltonianModel,
                               ModelFormatError, count_parameters, load_model)
from mlepi_core.models.electron import ONSITE
from mlepi_core.models.electron_losses import block_errors
from mlepi_core.seams import HamiltonianModel
from mlepi_core.structures import StructureError, bilayer, supercell, twisted_bilayer
from mlepi_core.training import CHECKPOINT_FILE, ElectronTask, TrainConfig, Trainer, evaluate
from toy_labels import sk_blocks

HETERO = {"intra": 3.0, "inter": 4.0}
HOMO = {"all": 4.0}
LABEL_RC = 4.0  # labels reach the largest cutoff
TINY = dict(elements=["C"], hidden_irreps="4x0e+4x1o+4x1e+4x2e", num_layers=2, radial_hidden=[8],
            num_gaussians=8, num_bessel=4)


pytestmark = pytest.mark.usefixtures("one_thread")


def displaced(atoms, seed, sigma=0.05):
    atoms = atoms.copy()
    atoms.positions += np.random.default_rng(seed).normal(0.0, sigma, atoms.positions.shape)
    return atoms


@pytest.fixture(scope="module")
def deeph_set(tmp_path_factory):
    """6 displaced 2x2 AB bilayers (train 4, val 1, test 1) + one twisted cell, DeepH layout."""
    root = tmp_path_factory.mktemp("electron_set")
    names = {"train": [], "val": [], "test": [], "twisted": []}
    for k in range(6):
        split = "train" if k < 4 else ("val" if k == 4 else "test")
        atoms = displaced(supercell(bilayer("AB"), 2), seed=k)
        write_deeph(root / f"ab2_{k}", atoms, sk_blocks(atoms, LABEL_RC))
        names[split].append(f"ab2_{k}")
    tw = displaced(twisted_bilayer(1, 2), seed=10, sigma=0.03)
    write_deeph(root / "tbg_0", tw, sk_blocks(tw, LABEL_RC))
    names["twisted"].append("tbg_0")
    write_split(root, {**names, "seed": 0})
    return root


def config(data, out, cutoffs=HETERO, **kw) -> TrainConfig:
    base = dict(task="electron", data=str(data), output_dir=str(out), model={**TINY, "cutoffs": cutoffs},
                dtype="float64", batch_size=1, eval_batch_size=2, lr=0.01, max_epochs=50,
                checkpoint_every_steps=1000, log_every_steps=1, progress=False, ema_decay=0.9,
                evaluate_splits=["val", "test", "twisted"])
    return TrainConfig.from_dict({**base, **kw})


def test_a_few_steps_reduce_the_loss(tmp_path, deeph_set):
    trainer = Trainer(config(deeph_set, tmp_path / "run", max_steps=16))
    task = trainer.task
    assert isinstance(task, ElectronTask)
    assert task.split_size("train") == 4 and task.split_size("twisted") == 1
    assert task.model_config.avg_num_neighbors["inter"] > 0
    before = evaluate(task, trainer.model, "train", 4, trainer.device, trainer.dtype)
    result = trainer.run()
    after = evaluate(task, trainer.model, "train", 4, trainer.device, trainer.dtype)
    assert result["step"] == 16
    assert after["loss"] < 0.5 * before["loss"], (before, after)
    assert after["h_mae_mev"] < before["h_mae_mev"]
    assert (tmp_path / "run" / CHECKPOINT_FILE).is_file()
    assert (tmp_path / "run" / "model" / "metadata.json").is_file()  # best model after epoch 0
    header = (tmp_path / "run" / "steps.csv").read_text().splitlines()[0].split(",")
    assert {"loss", "h_mae_mev", "s_mae", "h_mae_mev_inter"} <= set(header)


@pytest.mark.integration  # trains, or runs a subprocess
def test_resume_continues_identically(tmp_path, deeph_set, check_resume):
    check_resume(lambda out, **kw: config(deeph_set, out, **kw), tmp_path, h_weight=2.0)


def test_checkpoint_predating_new_settings_resumes(tmp_path, deeph_set):
    """A checkpoint written before TrainConfig gained a setting counts it at its default."""
    Trainer(config(deeph_set, tmp_path / "run", max_steps=2)).run()
    path = tmp_path / "run" / CHECKPOINT_FILE
    ck = torch.load(path, weights_only=False)
    for key in ("h_weight", "s_weight", "data_workers"):
        del ck["config"][key]
    torch.save(ck, path)
    trainer = Trainer(config(deeph_set, tmp_path / "run", max_steps=3))
    assert trainer.resumed and trainer.state["step"] == 2


def test_full_run_writes_metrics_and_a_loadable_model(tmp_path, deeph_set):
    trainer = Trainer(config(deeph_set, tmp_path / "run", max_epochs=1))
    metrics = trainer.run()
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for split in ("val", "test", "twisted"):
        assert saved[split]["h_mae_mev"] > 0 and saved[split]["s_mae"] > 0
    assert saved["twisted"]["n_structures"] == 1 and saved["test"]["n_structures"] == 1
    # H MAE is the mean over every element of every on-site and hopping block
    model = load_model(tmp_path / "run" / "model", device="cpu")
    assert isinstance(model, MLHamiltonianModel) and isinstance(model, HamiltonianModel)
    batch = trainer.task.batch("twisted", [0], torch.device("cpu"), torch.float64)
    with torch.no_grad():
        err = block_errors(model.network(batch.graph, batch.reverse), batch.targets)
    assert math.isclose(1e3 * float(err["h_mae"]), metrics["twisted"]["h_mae_mev"], rel_tol=1e-9)
    assert math.isclose(float(err["s_mae"]), metrics["twisted"]["s_mae"], rel_tol=1e-9)
    n_pairs = len(batch.targets["h"][ONSITE]) + sum(len(batch.targets["h"][r]) for r in HETERO)
    assert metrics["twisted"]["n_h_elements"] == 16 * n_pairs
    meta = model.metadata
    assert meta["kind"] == "electron" and meta["orbital_order"] == "s,py,pz,px"
    assert meta["units"] == {"length": "A", "H": "eV", "S": "1"}
    assert meta["cutoffs_a"] == HETERO and meta["elements"] == ["C"]
    assert meta["hidden_irreps"] == TINY["hidden_irreps"]
    assert meta["training_data"]["sha256"] == deeph_set_sha256(deeph_set)
    assert meta["training_data"]["split_counts"] == {"train": 4, "val": 1, "test": 1, "twisted": 1}
    assert meta["metrics"]["test"] == saved["test"]
    assert (tmp_path / "run" / "model" / "config.yaml").is_file()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, deeph_set):
    """A HedgeNet-Electron and a homogeneous baseline, each after one short epoch."""
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for name, cutoffs in (("hetero", HETERO), ("homo", HOMO)):
        Trainer(config(deeph_set, root / name, cutoffs=cutoffs, max_epochs=1,
                       evaluate_splits=["test"])).run()
        runs[name] = root / name
    return runs


@pytest.mark.integration  # trains, or runs a subprocess
def test_save_load_round_trip_gives_identical_predictions(trained, deeph_set):
    run = trained["hetero"]
    ck = torch.load(run / CHECKPOINT_FILE, weights_only=False)
    with torch.no_grad():  # the EMA weights are the saved ones
        from mlepi_core.models.electron_layers import float64_default

        with float64_default():
            net = HedgeNetElectron(HedgeNetElectronConfig.from_dict(ck["model_config"]))
        net.load_state_dict(ck["model"])
        for n, p in net.named_parameters():
            p.copy_(ck["ema"]["shadow"][n])
    model = load_model(run / "model", device="cpu")
    atoms = displaced(supercell(bilayer("AB"), 2), seed=42)
    b1, b2 = model.blocks([atoms, atoms])
    reference = MLHamiltonianModel(net, device="cpu").blocks([atoms])[0]
    for b in (b1, b2):
        assert np.array_equal(b.i, reference.i) and np.array_equal(b.R, reference.R)
        assert np.array_equal(b.h, reference.h) and np.array_equal(b.s, reference.s)
    # Hermiticity survives the round trip: H_ji(-R) = H_ij(R)^T
    lookup = {(int(i), int(j), *map(int, r)): p for p, (i, j, r) in enumerate(zip(b1.i, b1.j, b1.R))}
    for p in range(0, len(b1.i), 97):
        q = lookup[(int(b1.j[p]), int(b1.i[p]), *(-b1.R[p]).tolist())]
        assert np.array_equal(b1.h[q], b1.h[p].T)
    bad = atoms.copy()
    bad.numbers[5] = 14  # silicon
    with pytest.raises(StructureError, match="Si"):
        model.blocks([atoms, bad])


def test_load_model_refuses_tampered_metadata(trained, tmp_path):
    import shutil

    path = tmp_path / "m"
    shutil.copytree(trained["hetero"] / "model", path)
    meta_file = path / "metadata.json"
    meta = json.loads(meta_file.read_text())
    for key, value, message in (("orbital_order", "s,px,py,pz", "orbital order"),
                                ("kind", "phonon", "kind"),
                                ("units", {"length": "A", "H": "Ha", "S": "1"}, "units"),
                                ("cutoffs_a", {"intra": 6.0, "inter": 6.0}, "cutoffs"),
                                ("elements", ["C", "N"], "elements"),
                                ("hidden_irreps", "8x0e+8x1o+8x1e+8x2e", "hidden_irreps"),
                                ("num_layers", 3, "num_layers"),
                                ("shells", [0, 1, 2], "shells"),
                                ("code_version", "9.0.0", "incompatible"),
                                ("format", 99, "format")):
        meta_file.write_text(json.dumps({**meta, key: value}))
        with pytest.raises(ModelFormatError, match=message):
            load_model(path)
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError, match="not a phonon model"):
        load_model(path, kind="phonon")
    assert isinstance(load_model(path, kind="electron"), MLHamiltonianModel)
    (path / "weights.pt").write_bytes(b"garbage")
    with pytest.raises(ModelFormatError, match="hash"):
        load_model(path)
    meta_file.write_text(json.dumps({k: v for k, v in meta.items() if k != "weights_sha256"}))
    with pytest.raises(ModelFormatError, match="weights.pt: not a torch weights file"):
        load_model(path)  # a folder written by hand, without the hash


def test_evaluate_writes_the_metrics_json(trained, tmp_path, capsys):
    from mlepi_core.cli import main

    out = tmp_path / "assets" / "models" / "electron" / "metrics.json"
    assert main(["evaluate", "electron", str(trained["hetero"]), "--ablation",
                 f"homogeneous_3={trained['homo']}", "--ablation", f"homogeneous_6={trained['homo']}",
                 "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "homogeneous_3" in printed and "twisted H (meV)" in printed
    table = json.loads(out.read_text())
    assert {"h_mae_mev", "s_mae"} <= set(table["test"]) and "h_mae_mev" in table["twisted"]
    # each held-out twisted cell on its own too (one here: the split's total is its own)
    assert table["twisted"]["by_structure"]["tbg_0"]["h_mae_mev"] == pytest.approx(table["twisted"]["h_mae_mev"],
                                                                                  rel=1e-12)
    for name in ("homogeneous_3", "homogeneous_6"):
        assert {"h_mae_mev", "s_mae"} <= set(table["ablation"][name]["test"])
        assert "h_mae_mev" in table["ablation"][name]["twisted"]
    assert table["ablation"]["homogeneous_3"]["model"]["relations"] == ["all"]
    assert table["model"]["n_parameters"] > table["ablation"]["homogeneous_3"]["model"]["n_parameters"]
    assert table["data"]["same_as_training"] is True
    # the same numbers as the training run's own evaluation of the test split
    run_metrics = json.loads((trained["hetero"] / "metrics.json").read_text())
    assert math.isclose(table["test"]["h_mae_mev"], run_metrics["test"]["h_mae_mev"], rel_tol=1e-9)
    assert main(["evaluate", "electron", str(tmp_path / "nothing")]) == 2  # clear error, no traceback
    assert "no such model folder" in capsys.readouterr().err
    assert main(["evaluate", "phonon", str(trained["hetero"])]) == 2
    assert "not a phonon model" in capsys.readouterr().err


def test_cli_train_electron_resumes(tmp_path, deeph_set, capsys):
    from mlepi_core.cli import main

    cfg = config(deeph_set, tmp_path / "run", max_epochs=1, evaluate_splits=["test"]).dump(tmp_path / "c.yaml")
    assert main(["train", "electron", str(cfg), "--max-steps", "2", "--no-progress"]) == 0
    assert "resume" in capsys.readouterr().out
    assert main(["train", "electron", str(cfg), "--no-progress"]) == 0  # resumes, finishes epoch 0
    assert "test: H MAE" in capsys.readouterr().out
    assert main(["train", "phonon", str(cfg), "--no-progress"]) == 2  # an electron config
    assert "not a phonon one" in capsys.readouterr().err


@pytest.mark.integration  # trains, or runs a subprocess
def test_shipped_configs_build():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "configs"
    counts = {}
    for name in ("electron_hedgenet", "electron_homogeneous_3", "electron_homogeneous_6"):
        raw = yaml.safe_load((root / f"{name}.yaml").read_text())
        cfg = TrainConfig.from_dict(raw)
        assert cfg.task == "electron" and cfg.output_dir == f"runs/{name}" and cfg.data == "data/electron"
        assert cfg.batch_size <= 2 and cfg.dtype == "float32" and "twisted" in cfg.evaluate_splits
        counts[name] = count_parameters(HedgeNetElectron(HedgeNetElectronConfig.from_dict(cfg.model)))
    assert counts["electron_hedgenet"] == 102944
    # Table II's networks with the two-centre term: the same networks and schedule settings
    # but for the term, the learning rate and the epochs, on the same data
    for name in ("electron_hedgenet", "electron_homogeneous_3", "electron_homogeneous_6"):
        plain = yaml.safe_load((root / f"{name}.yaml").read_text())
        raw = yaml.safe_load((root / f"{name}_two_centre.yaml").read_text())
        cfg = TrainConfig.from_dict(raw)
        assert raw["model"] == {**plain["model"], "two_centre": 60}
        assert raw["output_dir"] == f"runs/{name}_two_centre"
        changed = {k for k in raw.keys() | plain.keys() if raw.get(k) != plain.get(k)}
        assert changed <= {"model", "output_dir", "lr", "max_epochs", "stage_two_epoch", "stage_two_lr",
                           "num_threads"}, changed
        model = HedgeNetElectron(HedgeNetElectronConfig.from_dict(cfg.model))
        assert model.two_centre is not None
        assert count_parameters(model) == counts[name]  # the tables are fitted, not trained
    for name, frame, two_centre in (("electron_sk", False, False), ("electron_sk_radial_invariants", False, False),
                                    ("electron_sk_frame", True, False), ("electron_sk_frame_radial", True, False),
                                    ("electron_sk_two_centre", True, True)):  # the p_z set
        cfg = TrainConfig.from_dict(yaml.safe_load((root / f"{name}.yaml").read_text()))
        assert cfg.data == "data/electron_sk" and cfg.output_dir.startswith("runs/electron_sk")
        model = HedgeNetElectron(HedgeNetElectronConfig.from_dict({"shells": [0], **cfg.model}))
        assert (model.frame_map is not None) == frame and (model.two_centre is not None) == two_centre
    assert counts["electron_homogeneous_3"] < counts["electron_hedgenet"]
    assert abs(counts["electron_homogeneous_6"] / counts["electron_hedgenet"] - 1) < 0.05


def test_config_checks_and_the_cached_split(tmp_path, deeph_set):
    with pytest.raises(ValueError, match="task must be one of"):
        TrainConfig.from_dict({"task": "bands"})
    with pytest.raises(ValueError, match="h_weight"):
        config(deeph_set, tmp_path, h_weight=0.0, s_weight=0.0)
    # a graph built with the model's cutoffs from the cached split matches what the seam builds
    task = ElectronTask(config(deeph_set, tmp_path))
    smp = task.dataset("test")[0]
    g = build_graph(displaced(supercell(bilayer("AB"), 2), seed=5), HETERO)
    assert all(torch.equal(smp.graph.edges[r].index, g.edges[r].index) for r in HETERO)
    assert collate_electron([smp]).targets["h"][ONSITE].dtype == torch.float32  # cached in float32
    # a file that is not such a cache is refused with its name
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("not a torch file")
    for name in ("other.pt", "text.pt"):
        with pytest.raises(DataFormatError, match=rf"{name}: not an electron data set cache"):
            ElectronDataset.load(tmp_path / name)


def test_the_orbital_basis_comes_from_the_data(tmp_path, deeph_set):
    """No model.shells in the config: the shells are the data's orbital_types (s, p here; one
    l = 0 p_z orbital per atom for the Slater-Koster set); naming other shells is refused."""
    from mlepi_core.reference.slater_koster import SlaterKosterPz

    assert tuple(ElectronTask(config(deeph_set, tmp_path)).model_config.shells) == (0, 1)
    root = tmp_path / "pz_set"
    names = []
    for k in range(3):
        atoms = displaced(supercell(bilayer("AB"), 3), seed=k)
        write_deeph(root / f"ab3_{k}", atoms, SlaterKosterPz().blocks([atoms])[0])
        names.append(f"ab3_{k}")
    write_split(root, {"train": names[:1], "val": names[1:2], "test": names[2:], "twisted": [], "seed": 0})
    task = ElectronTask(config(root, tmp_path / "run", evaluate_splits=["val"]))
    assert tuple(task.model_config.shells) == (0,) and task.n_orbitals == 1
    model = task.build_model()
    assert model.block_map.shells == (0,)
    with pytest.raises(ValueError, match="disagree with the data's orbital_types"):
        ElectronTask(config(root, tmp_path / "run2", model={**TINY, "cutoffs": HETERO, "shells": [0, 1]}))
    # the local-frame network needs the data's p_z-along-the-normal orbital and its convention
    framed = {**TINY, "cutoffs": HETERO, "orbital_frame": "local_normal"}
    task = ElectronTask(config(root, tmp_path / "run3", model=framed, evaluate_splits=["val"]))
    assert task.build_model().frame_map is not None
    with pytest.raises(ValueError, match="needs data whose orbital is"):
        ElectronTask(config(deeph_set, tmp_path / "run4", model=framed))
    with pytest.raises(ValueError, match="frame_cut must be"):
        ElectronTask(config(root, tmp_path / "run5", model={**framed, "frame_cut": 2.0}))
    # with a two-centre term, building the network fits its tables to the training split; the
    # p_z reference is a two-centre model in the local frame, so the untrained network already
    # reproduces it on a structure it has not seen
    task = ElectronTask(config(root, tmp_path / "run6", model={**framed, "two_centre": 40}, evaluate_splits=["val"]))
    model = task.build_model()
    assert task.notes and task.notes[0].startswith("two-centre tables fitted")
    batch = task.batch("val", [0], "cpu", torch.float64)
    with torch.no_grad():
        errors = block_errors(model(batch.graph, batch.reverse), batch.targets)
    assert errors["h_mae"] < 1e-4, errors  # eV


def test_the_reference_of_a_trained_network_and_its_coupling(trained, tmp_path):
    """`mlepi evaluate electron --physics` compares a network with the reference it learnt:
    an s, p network's is GFN1-xTB, a p_z network's the Slater-Koster model, whose gamma_1 at
    d = 3.35 A goes into the metrics (the reference itself against itself: identical)."""
    import shutil

    from mlepi_core.reference.slater_koster import SlaterKosterPz
    from mlepi_core.validation import electron_reference_of, reference_coupling

    hetero = trained["hetero"] / "model"
    assert electron_reference_of(hetero)[0] == "gfn1"
    pz = tmp_path / "pz_model"
    shutil.copytree(hetero, pz)
    meta = json.loads((pz / "metadata.json").read_text())
    (pz / "metadata.json").write_text(json.dumps({**meta, "training_data": None, "shells": [0]}))
    name, ref = electron_reference_of(pz)
    assert name == "slater-koster" and isinstance(ref, SlaterKosterPz)
    section = reference_coupling(ref, ref)
    # the four-band fit's gamma_1 (BandProbe, as in every Monte Carlo result): 0.339 eV; the
    # split-off levels at K give 0.336 eV (tests/test_slater_koster.py)
    assert section["gamma1_ev"] == pytest.approx(0.339, abs=1e-3) == section["gamma1_ml_ev"]
