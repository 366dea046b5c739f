"""Data-set generation: deterministic for a seed, resumable, atomic, split recorded."""

from dataclasses import replace
import json

import numpy as np
import pytest

from mlepi_core.data.deeph import read_deeph, read_split
from mlepi_core.data.extxyz import read_extxyz
from mlepi_core.data.generate import (ElectronSetConfig, PhononSetConfig, electron_configs,
                                      generate_electron_set, generate_phonon_set, split_indices)
from mlepi_core.reference.lammps_forces import EmpiricalForceReference
from mlepi_core.reference.tblite_electrons import GFN1Reference
from mlepi_core.structures import build, supercell

SMALL = PhononSetConfig(n_configs=10, size=2, seed=7, chunk=3)


@pytest.fixture(scope="module")
def forces():
    return EmpiricalForceReference()


def test_phonon_set_same_seed_same_file(tmp_path, forces):
    a = generate_phonon_set(tmp_path / "a", SMALL, forces, progress=False)
    b = generate_phonon_set(tmp_path / "b", SMALL, forces, progress=False)
    assert a.read_bytes() == b.read_bytes()
    other = PhononSetConfig(**{**SMALL.__dict__, "seed": 8})
    c = generate_phonon_set(tmp_path / "c", other, forces, progress=False)
    assert a.read_bytes() != c.read_bytes()


def test_phonon_set_labels_and_split(tmp_path, forces):
    path = generate_phonon_set(tmp_path / "p", SMALL, forces, progress=False)
    frames = read_extxyz(path)
    assert len(frames) == SMALL.n_configs and len(frames[0]) == 4 * SMALL.size ** 2
    meta = json.loads((tmp_path / "p" / "metadata.json").read_text())
    split = {f.info["config_id"]: f.info["split"] for f in frames}
    for name, ids in meta["split"].items():
        assert all(split[j] == name for j in ids)
    # labels are the reference's own numbers for the stored positions
    e, f = forces.energies_forces(frames[:2])
    for k in range(2):
        assert abs(e[k] - frames[k].info["energy"]) < 1e-9
        assert np.abs(f[k] - frames[k].arrays["forces"]).max() < 1e-7
    assert not (tmp_path / "p" / "parts").exists()


def test_multilayer_frames_are_trilayers_and_strained_bilayers_with_their_own_splits(tmp_path, forces):
    from mlepi_core.interlayer import layers_of

    cfg = replace(SMALL, rigid_configs=3, multilayer_configs=12, strain_range=(-0.02, 0.02))
    path = generate_phonon_set(tmp_path / "m", cfg, forces, progress=False)
    frames = read_extxyz(path)
    assert len(frames) == cfg.n_total == 25
    extra = frames[cfg.n_configs + cfg.rigid_configs:]
    kinds = {f.info["frame"] for f in extra}
    assert kinds == {"trilayer", "strained"}
    a0 = np.linalg.norm(frames[0].cell[0])
    for f in extra:
        if f.info["frame"] == "trilayer":
            assert len(f) == 6 * cfg.size ** 2 and sorted(set(layers_of(f))) == [0, 1, 2]
            z = [f.positions[layers_of(f) == k, 2].mean() for k in range(3)]
            assert np.allclose(np.diff(z), f.info["d_a"], atol=0.05)
        else:  # the in-plane cell scaled by 1 + strain, drawn inside the range
            assert len(f) == 4 * cfg.size ** 2 and -0.02 <= f.info["strain"] <= 0.02
            assert np.isclose(np.linalg.norm(f.cell[0]), a0 * (1 + f.info["strain"]), rtol=1e-9)
    meta = json.loads((tmp_path / "m" / "metadata.json").read_text())
    ids = set(range(cfg.n_configs + cfg.rigid_configs, cfg.n_total))
    held = set(meta["split"]["val_multilayer"]) | set(meta["split"]["test_multilayer"])
    assert held and held <= ids and ids - held <= set(meta["split"]["train"])
    # the first frames are those of the set without the extra ones, labels included
    plain = read_extxyz(generate_phonon_set(tmp_path / "p", replace(cfg, multilayer_configs=0), forces,
                                            progress=False))
    assert all(np.array_equal(a.positions, b.positions) and a.info["energy"] == b.info["energy"]
               for a, b in zip(plain, frames))
    recorded = json.loads((tmp_path / "p" / "generation.json").read_text())
    assert "multilayer_configs" not in recorded and "rigid_configs" in recorded  # as recorded before they existed


def test_rigid_multilayer_frames_sample_sliding_and_breathing_about_the_ground_stackings(tmp_path, forces):
    """The rigid multilayer family: ABA / ABC trilayers and strained AB bilayers whose layers are
    offset from their ground stacking by thermal amounts (0.3 A rms, each distance its own),
    with little atomic noise; after the other families, in the multilayer splits."""
    from mlepi_core.interlayer import layers_of
    from mlepi_core.structures import STACKING_SHIFTS, _primitive_vectors

    cfg = replace(SMALL, rigid_configs=2, multilayer_configs=2, rigid_multilayer_configs=40)
    frames = read_extxyz(generate_phonon_set(tmp_path / "r", cfg, forces, progress=False))
    first = cfg.n_configs + cfg.rigid_configs + cfg.multilayer_configs
    extra = frames[first:]
    assert len(extra) == 40 and {f.info["frame"] for f in extra} == {"rigid_trilayer", "rigid_strained"}
    a12 = _primitive_vectors(np.linalg.norm(frames[0].cell[0]) / cfg.size)
    ground = np.array(STACKING_SHIFTS["AB"])
    offsets, gaps, stackings = [], [], set()
    for f in extra:
        layer = layers_of(f)
        z = [f.positions[layer == k, 2].mean() for k in range(layer.max() + 1)]
        gaps += list(np.diff(z))
        stacking = f.info["stacking"]  # extxyz reads "x,y" back as numbers
        shifts = ([np.array(s.split(","), dtype=float) for s in stacking.split(";")] if isinstance(stacking, str)
                  else [np.asarray(stacking, dtype=float)])
        if f.info["frame"] == "rigid_trilayer":
            assert len(f) == 6 * cfg.size ** 2
            third = shifts[1] - shifts[0]
            to_aba, to_abc = (np.linalg.norm(((third + g + 0.5) % 1 - 0.5) @ a12) for g in (ground, -ground))
            stackings.add("ABA" if to_aba < to_abc else "ABC")
        for s in shifts[:1]:  # layer 2 over layer 1: AB plus a Cartesian offset
            offsets.append(((s - ground + 0.5) % 1 - 0.5) @ a12)
        assert f.info["sigma_a"] <= cfg.rigid_max_sigma_a
    offsets = np.array(offsets)
    assert 0.15 < offsets.std() < 0.45 and np.abs(offsets).max() < 1.5  # about 0.3 A rms, never far
    assert np.std(gaps) > 0.02 and np.all(np.abs(np.array(gaps) - cfg.d0) < 0.4)
    assert stackings == {"ABA", "ABC"}
    meta = json.loads((tmp_path / "r" / "metadata.json").read_text())
    held = set(meta["split"]["val_multilayer"]) | set(meta["split"]["test_multilayer"])
    assert held & set(range(first, cfg.n_total))


def test_phonon_set_resumes_after_interruption(tmp_path):
    flaky = EmpiricalForceReference()
    calls = []

    def interrupted_on_third_chunk(frames):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return EmpiricalForceReference.energies_forces(flaky, frames)

    flaky.energies_forces = interrupted_on_third_chunk
    with pytest.raises(KeyboardInterrupt):
        generate_phonon_set(tmp_path / "r", SMALL, flaky, progress=False)
    forces = EmpiricalForceReference()
    parts = sorted(p.name for p in (tmp_path / "r" / "parts").iterdir())
    assert parts == ["configs_000000.xyz", "configs_000003.xyz"]  # whole chunks only
    assert not (tmp_path / "r" / "phonon_set.xyz").exists()
    resumed = generate_phonon_set(tmp_path / "r", SMALL, forces, progress=False)
    fresh = generate_phonon_set(tmp_path / "f", SMALL, forces, progress=False)
    assert resumed.read_bytes() == fresh.read_bytes()


def test_resume_refuses_another_configuration(tmp_path, forces):
    generate_phonon_set(tmp_path / "x", SMALL, forces, progress=False)
    with pytest.raises(ValueError, match="another configuration"):
        generate_phonon_set(tmp_path / "x", PhononSetConfig(n_configs=5, size=2), forces, progress=False)


def test_split_fractions_and_determinism():
    s = split_indices(2000, (0.81, 0.09, 0.10), seed=0)
    assert [len(s[k]) for k in ("train", "val", "test")] == [1620, 180, 200]
    assert sorted(sum(s.values(), [])) == list(range(2000))
    assert s == split_indices(2000, (0.81, 0.09, 0.10), seed=0)


@pytest.mark.integration  # trains, or runs a subprocess
def test_gfn1_electron_set_is_in_deeph_layout(tmp_path, forces):
    """One GFN1-labelled sample on disk: s, p shells per carbon, non-orthogonal, both layers
    (determinism of the generator is tested on the cheap p_z reference below)."""
    cfg = ElectronSetConfig(n_configs=1, size=6, seed=1, twisted=(), fractions=(1.0, 0.0, 0.0))
    out = generate_electron_set(tmp_path / "gfn1", cfg, forces, GFN1Reference(), progress=False)
    assert read_split(out)["train"] == ["ab6_00000"]
    atoms, blocks = read_deeph(out / "ab6_00000")
    assert np.bincount(atoms.arrays["layer"]).tolist() == [72, 72]
    assert (blocks.norb == 4).all()  # s, p: four orbitals per carbon
    assert (out / "ab6_00000" / "orbital_types.dat").read_text().split("\n")[0].split() == ["0", "1"]
    assert not json.loads((out / "ab6_00000" / "info.json").read_text())["isorthogonal"]
    onsite = (blocks.i == blocks.j) & (np.abs(blocks.R).sum(axis=1) == 0)
    assert np.allclose(blocks.s[onsite], np.eye(4), atol=1e-12)  # normalised orbitals


def test_twisted_held_out_cells_are_wide_enough_for_rc(forces):
    from mlepi_core.reference.tblite_electrons import check_cell_for_cutoff

    _, twisted = electron_configs(ElectronSetConfig(), forces)
    names = [n for n, _ in twisted]
    assert len(names) == 10
    for name, make in twisted[::2]:
        atoms = make()
        check_cell_for_cutoff(atoms.cell, 6.0)
        assert set(atoms.arrays["layer"]) == {0, 1}


@pytest.mark.integration  # trains, or runs a subprocess
def test_slater_koster_electron_set_round_trips_through_the_deeph_layout(tmp_path, forces):
    """The same generator with the p_z reference: one l = 0 orbital per atom on disk, the
    orbital named in info.json, and the blocks read back equal to the reference's."""
    import json

    from mlepi_core.reference.slater_koster import SlaterKosterPz

    cfg = ElectronSetConfig(n_configs=2, size=6, seed=1, twisted=((1, 2, 2),), fractions=(0.5, 0.5, 0.0))
    sk = SlaterKosterPz()
    out = generate_electron_set(tmp_path / "sk", cfg, forces, sk, progress=False)
    split = read_split(out)
    assert sorted(split["train"] + split["val"] + split["test"]) == ["ab6_00000", "ab6_00001"]
    # sample j depends only on (seed, j): a second, shorter set repeats the first sample
    again = generate_electron_set(tmp_path / "again", replace(cfg, n_configs=1, twisted=(), fractions=(1.0, 0.0, 0.0)),
                                  forces, sk, progress=False)
    assert read_split(again)["train"] == ["ab6_00000"]
    (atoms_a, blocks_a), (atoms_b, blocks_b) = (read_deeph(d / "ab6_00000") for d in (out, again))
    assert np.array_equal(atoms_a.positions, atoms_b.positions) and np.array_equal(blocks_a.h, blocks_b.h)
    assert np.array_equal(blocks_a.R, blocks_b.R)
    # thermal samples differ from each other and from the ideal lattice
    assert np.abs(atoms_a.positions - read_deeph(out / "ab6_00001")[0].positions).max() > 0.01
    for name in ("ab6_00000", "tbg_1_2_x2_1"):
        atoms, blocks = read_deeph(out / name)
        (direct,) = sk.blocks([atoms])
        assert (blocks.norb == 1).all()
        assert (out / name / "orbital_types.dat").read_text().split("\n")[0].strip() == "0"
        info = json.loads((out / name / "info.json").read_text())
        assert info["meta"]["orbital"] == "p_z along the local normal" and info["isorthogonal"]
        order = np.lexsort((blocks.R[:, 2], blocks.R[:, 1], blocks.R[:, 0], blocks.j, blocks.i))
        np.testing.assert_allclose(blocks.h[order], direct.h, atol=1e-12)
        np.testing.assert_array_equal(blocks.R[order], direct.R)
    from mlepi_core.data.electron_dataset import valence_electrons_per_atom

    assert valence_electrons_per_atom(out, ["ab6_00000"]) == 1.0  # one pi electron per carbon


def test_slater_koster_held_out_twisted_set_reaches_the_magic_angle():
    """`mlepi data electron --electrons slater-koster` holds out twisted cells from 21.8
    degrees down to the 11,164-atom 1.08-degree cell (cheap to label with the p_z model)."""
    from mlepi_core.data.generate import TWISTED_TO_MAGIC_ANGLE
    from mlepi_core.structures import twist_angle

    angles = [twist_angle(m, n) for m, n, _ in TWISTED_TO_MAGIC_ANGLE]
    assert max(angles) == pytest.approx(21.787, abs=1e-3) and min(angles) == pytest.approx(1.0845, abs=1e-4)
    assert set(ElectronSetConfig.twisted) < set(TWISTED_TO_MAGIC_ANGLE)


@pytest.mark.parametrize("material, formula, d0", [("hBN", "B8N8", 3.25), ("MoS2", "Mo8S16", 6.28)])
def test_a_material_s_phonon_set_samples_its_own_bilayer(tmp_path, forces, material, formula, d0):
    """`mlepi data phonon --material`: the bilayer of that material about its reference's own
    interlayer distance, with random and ground stackings and rigid-layer frames; the
    reference labels every frame; graphene's record stays the paper set's."""
    from mlepi_core.data.generate import material_set, phonon_config

    cfg = material_set(material, n_configs=12, size=2, seed=3, chunk=8, rigid_configs=6)
    path = generate_phonon_set(tmp_path / material, cfg, forces, progress=False)
    frames = read_extxyz(path)
    assert len(frames) == 18 and {f.get_chemical_formula() for f in frames} == {formula}
    record = json.loads((tmp_path / material / "generation.json").read_text())
    assert record["material"] == material and record["d0"] == d0
    for atoms in frames:
        layer = atoms.arrays["layer"]
        heights = atoms.positions[layer == 1, 2].mean() - atoms.positions[layer == 0, 2].mean()
        assert abs(heights - atoms.info["d_a"]) < 0.1  # up to the atomic noise
        assert cfg.d_range[0] <= atoms.info["d_a"] <= cfg.d_range[1]
    ground = phonon_config(replace(cfg, shift_fraction=0.0, d_fraction=0.0, max_sigma_a=0.0), 0)
    ideal = supercell(build(material), 2)  # the ground stacking: the builder's, in-plane
    assert np.allclose(ground.positions[:, :2], ideal.positions[:, :2])
    e, f = forces.energies_forces(frames[:1])
    assert abs(e[0] - frames[0].info["energy"]) < 1e-9
    graphene = tmp_path / "graphene"
    generate_phonon_set(graphene, SMALL, forces, progress=False)
    assert "material" not in json.loads((graphene / "generation.json").read_text())
    with pytest.raises(ValueError, match="no phonon set for 'Si'"):
        material_set("Si")



def test_a_material_s_electron_set_holds_out_a_strained_and_a_restacked_bilayer(tmp_path, forces):
    """`mlepi data electron --material hBN`: thermal samples of the hBN bilayer, and held out
    the same cell strained by 1.5 % in-plane and in another stacking (each B over a B), each
    rigid and displaced; graphene's record stays the paper set's."""
    cfg = ElectronSetConfig(n_configs=4, size=3, material="hBN")
    bilayers, held_out = electron_configs(cfg, forces)
    assert [n for n, _ in bilayers] == [f"hbn3_{j:05d}" for j in range(4)]
    made = {name: make() for name, make in held_out}
    assert sorted(made) == ["hbn3_stacked_0", "hbn3_stacked_1", "hbn3_strained_0", "hbn3_strained_1"]
    ground = supercell(build("hBN"), 3)
    strained = made["hbn3_strained_0"]
    assert np.allclose(strained.cell[:2, :2], 1.015 * ground.cell[:2, :2]) and strained.cell[2, 2] == ground.cell[2, 2]
    stacked, layer = made["hbn3_stacked_0"], ground.arrays["layer"]
    boron = np.array(stacked.get_chemical_symbols()) == "B"
    top_b = stacked.positions[boron & (layer == 1), :2]
    bottom_b = stacked.positions[boron & (layer == 0), :2]
    frac = (top_b[:, None, :] - bottom_b[None, :, :]) @ np.linalg.inv(stacked.cell[:2, :2])
    assert (np.abs(frac - np.round(frac)).max(axis=-1) < 1e-6).any(axis=1).all()  # each top B above a B
    assert not np.allclose(made["hbn3_strained_1"].positions, strained.positions)  # the displaced copy
    cfg_g = ElectronSetConfig(n_configs=0, twisted=())
    generate_electron_set(tmp_path / "g", cfg_g, forces, GFN1Reference(), progress=False)
    assert "material" not in json.loads((tmp_path / "g" / "generation.json").read_text())
