"""Generation of the phonon and electron data sets (docs/physics.md#data-sets).

Both generators are deterministic for a seed (configuration j draws from
SeedSequence([seed, j, stream]) whatever else is generated), resumable (finished
pieces on disk are skipped; a changed configuration refuses to mix with them) and
never leave a half-written file (every file is written to a temporary name and
renamed).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from tqdm import tqdm

from .. import __version__
from ..files import write_text_atomic
from ..seams import ForceModel, HamiltonianModel
from ..structures import VACUUM_A, bilayer, build, supercell, twisted_bilayer
from ..units import BILAYER_D, GRAPHENE_A
from .deeph import write_deeph, write_split
from .extxyz import read_extxyz, write_extxyz

CONFIG_STREAM, STACKING_STREAM = 1, 2  # keys that separate this module's streams from phonopy's




def describe(model) -> str:
    """A model's own description (its repr, e.g. the intralayer potential), or its class name
    when it has no repr of its own (the default repr holds a memory address)."""
    if type(model).__repr__ is object.__repr__:
        return type(model).__name__
    return repr(model)


def split_indices(n: int, fractions: tuple[float, ...], seed: int,
                  names: tuple[str, ...] = ("train", "val", "test")) -> dict[str, list[int]]:
    """Random split of range(n) by ``fractions`` (rounded, the last part takes the rest)."""
    perm = np.random.default_rng(np.random.SeedSequence([seed, 0])).permutation(n)
    bounds = np.round(np.cumsum(fractions)[:-1] * n).astype(int)
    return {name: sorted(int(x) for x in part) for name, part in zip(names, np.split(perm, bounds))}


def _rng(seed: int, j: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, j, stream]))


def _check_or_record_config(folder: Path, config: dict) -> None:
    """Refuse to resume into a folder made with another configuration."""
    path = folder / "generation.json"
    config = json.loads(json.dumps(config))  # tuples -> lists, as read back
    if path.exists():
        old = json.loads(path.read_text())
        if old != config:
            raise ValueError(f"{folder} holds a data set generated with another configuration "
                             f"({path}); remove it or choose another --out")
    else:
        write_text_atomic(path, json.dumps(config, indent=1, sort_keys=True))


# --- phonon set ---------------------------------------------------------------------

@dataclass(frozen=True)
class PhononSetConfig:
    """Perturbed n x n AB bilayers labelled by a force model (the paper's 4x4, 2,000 configurations).

    Each configuration: random Gaussian displacements with a per-configuration
    standard deviation drawn uniformly from [0, max_sigma_a] Angstrom (measured with
    the reference: thermal samples of a 4x4 AB bilayer carry mean |F| components of
    1.63, 1.65, 1.75, 1.97 eV/A at 0, 300, 600, 1000 K, as uncorrelated displacements
    of 0.035-0.04 A do, so 0.06 A reaches well above 300 K; beyond ~0.1 A the
    Kolmogorov-Crespi normals break down as second neighbours come within 2 A), with probability
    ``shift_fraction`` a random relative in-plane translation of layer 2 (else AB),
    with probability ``d_fraction`` an interlayer distance uniform in ``d_range``.

    Then ``rigid_configs`` rigid-layer frames (ids n_configs, ...), which sample the sliding
    and breathing coordinates at thermal amplitudes with little intralayer motion (the
    interlayer forces, ~1 meV/A per atom, are otherwise buried under intralayer ones of
    ~1 eV/A): half with a uniform shift of layer 2 (all stackings), half with AB plus a
    Gaussian in-plane offset of ``rigid_shift_sigma_a`` (the 300 K rms of the 4x4 cell's
    relative shear coordinate, sqrt(k_B T / K_shear) with K_shear = 16 x 0.0157 eV/A^2 of
    LCBOP + KC, is 0.32 A); d = d0 + N(0, ``rigid_d_sigma_a``) (the breathing one,
    K = 16 x 0.304 eV/A^2: 0.073 A); atomic noise sigma uniform in [0, ``rigid_max_sigma_a``].
    They are split by ``fractions`` into train / val_interlayer / test_interlayer, so the
    first n_configs frames keep their splits.

    Then ``multilayer_configs`` frames (graphene; ids after the rigid ones) of what a bilayer at
    one lattice constant cannot teach: half are trilayers, layer 2 over layer 1 and layer 3
    over layer 2 each in a ground stacking (AB or BA over its neighbour: ABA, ABC and their
    images) or, with probability ``shift_fraction``, a random shift, so that the coupling of
    layers 1 and 3 through layer 2 is labelled; half are bilayers under a biaxial strain
    uniform in ``strain_range`` (the interlayer force constants change with the lattice
    constant: LCBOP + KC's shear mode falls from 18.8 to 12.9 cm^-1 at +1.5 %). Distances and
    atomic noise are drawn as for the first frames. Split into train / val_multilayer /
    test_multilayer.

    Then ``rigid_multilayer_configs`` frames (graphene; ids after those) that sample the sliding
    and breathing coordinates of the same cells at thermal amplitudes, as the rigid frames do
    for the bilayer: half are ABA or ABC trilayers with each layer offset from its ground
    stacking over the layer below by a Gaussian of ``rigid_shift_sigma_a`` and each interlayer
    distance d0 + N(0, ``rigid_d_sigma_a``) on its own (the middle layer's two neighbours
    couple its shear and breathing, and layers 1 and 3 couple only through it), half are AB
    bilayers strained as above with the same offsets; atomic noise uniform in
    [0, ``rigid_max_sigma_a``]. Split into train / val_multilayer / test_multilayer.
    """

    n_configs: int = 2000
    size: int = 4
    seed: int = 0
    max_sigma_a: float = 0.06
    shift_fraction: float = 0.5
    d_fraction: float = 0.3
    d_range: tuple[float, float] = (3.0, 3.9)
    d0: float = BILAYER_D
    fractions: tuple[float, float, float] = (0.81, 0.09, 0.10)
    chunk: int = 50
    rigid_configs: int = 0
    rigid_shift_sigma_a: float = 0.3
    rigid_d_sigma_a: float = 0.07
    rigid_max_sigma_a: float = 0.01
    multilayer_configs: int = 0
    strain_range: tuple[float, float] = (-0.02, 0.02)
    rigid_multilayer_configs: int = 0
    material: str = "graphene"  # or a key of MATERIAL_BILAYERS: the bilayer's ground stacking and d0 are its

    @property
    def n_total(self) -> int:
        return self.n_configs + self.rigid_configs + self.multilayer_configs + self.rigid_multilayer_configs


@dataclass(frozen=True)
class MaterialBilayer:
    """A material's phonon set: its bilayer (``structures.build`` name, ground stacking at zero
    shift), the interlayer distance at its reference's minimum and the range drawn about it
    (d is the distance between the sheets' mean heights: metal planes for a TMD)."""

    name: str
    d0: float
    d_range: tuple[float, float]


# the distances are the empirical references' own minima (benchmarks/layered_references.py)
MATERIAL_BILAYERS = {"hBN": MaterialBilayer("hBN", 3.25, (2.9, 3.8)),
                     "MoS2": MaterialBilayer("MoS2", 6.28, (5.9, 6.9))}


def material_set(material: str, **kwargs) -> PhononSetConfig:
    """The phonon set of ``material`` ("graphene": the paper's; else MATERIAL_BILAYERS) with
    its distances; ``kwargs`` set the other fields."""
    if material == "graphene":
        return PhononSetConfig(**kwargs)
    if material not in MATERIAL_BILAYERS:
        raise ValueError(f"no phonon set for {material!r} (known: graphene, {', '.join(MATERIAL_BILAYERS)})")
    m = MATERIAL_BILAYERS[material]
    return PhononSetConfig(material=material, d0=m.d0, d_range=m.d_range, **kwargs)


def shifted_bilayer(material: str, shift, d: float) -> Atoms:
    """The primitive bilayer of ``material`` with layer 2 moved in-plane by ``shift`` (fractions
    of the lattice vectors, or a named graphene stacking) from its ground stacking and its
    sheets' mean heights ``d`` Angstrom apart."""
    if material == "graphene":
        return bilayer(shift, d=d)
    atoms = build(MATERIAL_BILAYERS[material].name)
    top = atoms.arrays["layer"] == 1
    atoms.positions[top, :2] += np.asarray(shift, dtype=float) @ np.asarray(atoms.cell)[:2, :2]
    atoms.positions[top, 2] += d - (atoms.positions[top, 2].mean() - atoms.positions[~top, 2].mean())
    atoms.wrap()
    return atoms


RIGID_SPLIT_NAMES = ("train", "val_interlayer", "test_interlayer")
MULTILAYER_SPLIT_NAMES = ("train", "val_multilayer", "test_multilayer")
DEFAULT_RIGID_CONFIGS = 400  # what `mlepi data phonon` adds to the paper's 2,000 frames


def phonon_config(cfg: PhononSetConfig, j: int) -> Atoms:
    """Configuration j of the phonon set (unlabelled): the bilayer frames, then the rigid-layer,
    multilayer and rigid multilayer families (PhononSetConfig)."""
    rng = _rng(cfg.seed, j, CONFIG_STREAM)
    if j >= cfg.n_configs + cfg.rigid_configs + cfg.multilayer_configs:
        return _rigid_multilayer_config(cfg, j, rng)
    if j >= cfg.n_configs + cfg.rigid_configs:
        return _multilayer_config(cfg, j, rng)
    if j >= cfg.n_configs:
        shift, d, sigma = _rigid_draw(cfg, rng)
    else:
        ground = "AB" if cfg.material == "graphene" else (0.0, 0.0)
        shift = tuple(rng.uniform(0, 1, 2)) if rng.uniform() < cfg.shift_fraction else ground
        d = rng.uniform(*cfg.d_range) if rng.uniform() < cfg.d_fraction else cfg.d0
        sigma = rng.uniform(0, cfg.max_sigma_a)
    atoms = supercell(shifted_bilayer(cfg.material, shift, d), cfg.size)
    atoms.positions += rng.normal(0.0, sigma, atoms.positions.shape)
    atoms.positions = np.round(atoms.positions, 8)  # label exactly what extxyz stores (%.8f)
    atoms.info.update(config_id=j, sigma_a=sigma, d_a=d,
                      stacking=shift if isinstance(shift, str) else f"{shift[0]:.6f},{shift[1]:.6f}")
    return atoms


def _multilayer_config(cfg: PhononSetConfig, j: int, rng: np.random.Generator) -> Atoms:
    """Frame j of the multilayer family: a trilayer or a strained bilayer (see PhononSetConfig)."""
    from ..interlayer import strained
    from ..structures import STACKING_SHIFTS, _layer_basis, _primitive_vectors, _stack

    if cfg.material != "graphene":
        raise ValueError("multilayer frames are built for graphene only")
    d = rng.uniform(*cfg.d_range) if rng.uniform() < cfg.d_fraction else cfg.d0
    sigma = rng.uniform(0, cfg.max_sigma_a)
    ground = np.array(STACKING_SHIFTS["AB"])

    def next_shift():  # of a layer over the one below it
        if rng.uniform() < cfg.shift_fraction:
            return rng.uniform(0, 1, 2)
        return ground if rng.uniform() < 0.5 else -ground

    if rng.uniform() < 0.5:
        s2 = next_shift()
        s3 = s2 + next_shift()
        a12, basis = _primitive_vectors(GRAPHENE_A), _layer_basis(GRAPHENE_A)
        cell = _stack([basis + s @ a12 for s in (np.zeros(2), s2, s3)], a12, d, VACUUM_A)
        kind, strain = "trilayer", 0.0
        stacking = f"{s2[0] % 1:.6f},{s2[1] % 1:.6f};{s3[0] % 1:.6f},{s3[1] % 1:.6f}"
    else:
        shift = next_shift() % 1.0
        strain = rng.uniform(*cfg.strain_range)
        cell = strained(bilayer(tuple(shift), d=d), strain)
        kind, stacking = "strained", f"{shift[0]:.6f},{shift[1]:.6f}"
    atoms = supercell(cell, cfg.size)
    atoms.positions += rng.normal(0.0, sigma, atoms.positions.shape)
    atoms.positions = np.round(atoms.positions, 8)
    atoms.info.update(config_id=j, sigma_a=sigma, d_a=d, stacking=stacking, frame=kind, strain=strain)
    return atoms


def _rigid_multilayer_config(cfg: PhononSetConfig, j: int, rng: np.random.Generator) -> Atoms:
    """Frame j of the rigid multilayer family: an ABA / ABC trilayer or a strained AB bilayer
    with Gaussian rigid offsets and distances about the ground stacking (see PhononSetConfig)."""
    from ..interlayer import strained
    from ..structures import STACKING_SHIFTS, _layer_basis, _primitive_vectors, _stack

    if cfg.material != "graphene":
        raise ValueError("multilayer frames are built for graphene only")
    ground = np.array(STACKING_SHIFTS["AB"])
    a12 = _primitive_vectors(GRAPHENE_A)

    def offset():  # fractional, from a Cartesian Gaussian offset in A
        return np.linalg.solve(a12.T, rng.normal(0.0, cfg.rigid_shift_sigma_a, 2))

    def distance():
        return float(np.clip(cfg.d0 + rng.normal(0.0, cfg.rigid_d_sigma_a), *cfg.d_range))

    if rng.uniform() < 0.5:
        s2 = ground + offset()
        s3 = s2 + (ground if rng.uniform() < 0.5 else -ground) + offset()  # ABC or ABA
        d12, d23 = distance(), distance()
        cell = _stack([_layer_basis(GRAPHENE_A) + s @ a12 for s in (np.zeros(2), s2, s3)], a12, d12, VACUUM_A)
        cell.positions[cell.arrays["layer"] == 2, 2] += d23 - d12
        kind, strain, d = "rigid_trilayer", 0.0, d12
        stacking = f"{s2[0] % 1:.6f},{s2[1] % 1:.6f};{s3[0] % 1:.6f},{s3[1] % 1:.6f}"
    else:
        shift = (ground + offset()) % 1.0
        strain, d = rng.uniform(*cfg.strain_range), distance()
        cell = strained(bilayer(tuple(shift), d=d), strain)
        kind, stacking = "rigid_strained", f"{shift[0]:.6f},{shift[1]:.6f}"
    sigma = rng.uniform(0, cfg.rigid_max_sigma_a)
    atoms = supercell(cell, cfg.size)
    atoms.positions += rng.normal(0.0, sigma, atoms.positions.shape)
    atoms.positions = np.round(atoms.positions, 8)
    atoms.info.update(config_id=j, sigma_a=sigma, d_a=d, stacking=stacking, frame=kind, strain=strain)
    return atoms


def _rigid_draw(cfg: PhononSetConfig, rng: np.random.Generator) -> tuple[tuple[float, float], float, float]:
    """(fractional shift of layer 2, d in A, atomic sigma in A) of a rigid-layer frame."""
    from ..structures import STACKING_SHIFTS, _primitive_vectors

    if rng.uniform() < 0.5:
        shift = rng.uniform(0, 1, 2)
    else:
        offset = rng.normal(0.0, cfg.rigid_shift_sigma_a, 2)  # Cartesian, A
        if cfg.material == "graphene":
            ground, a = np.array(STACKING_SHIFTS["AB"]), GRAPHENE_A
        else:
            ground, a = np.zeros(2), float(np.linalg.norm(build(MATERIAL_BILAYERS[cfg.material].name).cell[0]))
        shift = ground + np.linalg.solve(_primitive_vectors(1.0).T, offset / a)
    d = float(np.clip(cfg.d0 + rng.normal(0.0, cfg.rigid_d_sigma_a), *cfg.d_range))
    return (float(shift[0] % 1.0), float(shift[1] % 1.0)), d, float(rng.uniform(0, cfg.rigid_max_sigma_a))


def generate_phonon_set(out: str | Path, cfg: PhononSetConfig, model: ForceModel,
                        progress: bool = True) -> Path:
    """Label the phonon set with ``model`` into ``out/phonon_set.xyz`` (+ metadata.json)."""
    out = Path(out)
    parts = out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    record = asdict(cfg)
    if cfg.material == "graphene":  # the paper's set, recorded as before materials existed
        record.pop("material")
    if not cfg.multilayer_configs:  # a set without them, recorded as before they existed
        record.pop("multilayer_configs"), record.pop("strain_range")
    if not cfg.rigid_multilayer_configs:
        record.pop("rigid_multilayer_configs")
    _check_or_record_config(out, {"kind": "phonon", **record, "reference": describe(model)})
    t0 = time.time()
    starts = range(0, cfg.n_total, cfg.chunk)
    with tqdm(total=cfg.n_total, desc="phonon set", unit="cfg", disable=not progress) as bar:
        for c0 in starts:
            path = parts / f"configs_{c0:06d}.xyz"
            ids = range(c0, min(c0 + cfg.chunk, cfg.n_total))
            if not path.exists():
                frames = [phonon_config(cfg, j) for j in ids]
                energies, forces = model.energies_forces(frames)
                for atoms, e, f in zip(frames, energies, forces):
                    atoms.info["energy"] = float(e)
                    atoms.arrays["forces"] = np.asarray(f)
                write_extxyz(path, frames)
            bar.update(len(ids))
    split = split_indices(cfg.n_configs, cfg.fractions, cfg.seed)
    rigid = split_indices(cfg.rigid_configs, cfg.fractions, cfg.seed + 1, RIGID_SPLIT_NAMES)
    for name, ids in rigid.items():
        split[name] = sorted(split.get(name, []) + [cfg.n_configs + j for j in ids])
    multilayer = split_indices(cfg.multilayer_configs, cfg.fractions, cfg.seed + 2, MULTILAYER_SPLIT_NAMES)
    for name, ids in multilayer.items():
        split[name] = sorted(split.get(name, []) + [cfg.n_configs + cfg.rigid_configs + j for j in ids])
    first = cfg.n_configs + cfg.rigid_configs + cfg.multilayer_configs
    rigid_multilayer = split_indices(cfg.rigid_multilayer_configs, cfg.fractions, cfg.seed + 3, MULTILAYER_SPLIT_NAMES)
    for name, ids in rigid_multilayer.items():
        split[name] = sorted(split.get(name, []) + [first + j for j in ids])
    which = {j: name for name, ids in split.items() for j in ids}
    frames = [f for c0 in starts for f in read_extxyz(parts / f"configs_{c0:06d}.xyz")]
    for atoms in frames:
        atoms.info["split"] = which[int(atoms.info["config_id"])]
    target = out / "phonon_set.xyz"
    write_extxyz(target, frames)
    meta = {"kind": "phonon", "file": target.name, "config": asdict(cfg),
            "reference": describe(model), "n_atoms": len(frames[0]),
            "split_counts": {k: len(v) for k, v in split.items()}, "split": split,
            "units": {"energy": "eV", "forces": "eV/A", "positions": "A"},
            "mlepi_version": __version__, "wall_s_this_run": round(time.time() - t0, 1)}
    write_text_atomic(out / "metadata.json", json.dumps(meta, indent=1))
    shutil.rmtree(parts)
    return target


# --- electron set -------------------------------------------------------------------

@dataclass(frozen=True)
class ElectronSetConfig:
    """Thermal Monte Carlo samples of an n x n AB bilayer labelled by a Hamiltonian model.

    Sample j: temperature uniform in ``temperature_range`` K, displacements from the
    force constants of ``force_model`` (quantum harmonic, phonopy), and with
    probability ``shift_fraction`` a random rigid in-plane translation of layer 2
    (all local stackings, as in twisted bilayers). Held out: twisted bilayers
    (m, n, in-plane repeats), each rigid and once with Gaussian displacements of
    ``twisted_sigma_a`` Angstrom. Split 6:2:2 as in the paper.
    """

    n_configs: int = 300
    size: int = 6
    seed: int = 0
    temperature_range: tuple[float, float] = (0.0, 600.0)
    shift_fraction: float = 0.5
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    twisted: tuple[tuple[int, int, int], ...] = ((1, 2, 2), (2, 3, 2), (3, 4, 1), (4, 5, 1), (6, 7, 1))
    twisted_sigma_a: float = 0.03
    # another material's bilayer (a key of MATERIAL_BILAYERS) in its ground stacking; its held-out
    # cells are the same n x n bilayer strained by 1.5 % and in another stacking (layer 2 shifted
    # by two thirds of a1 + a2: B over B in hBN), each rigid and displaced, instead of twisted graphene
    material: str = "graphene"


# The p_z model labels whole magic-angle cells in seconds, so its held-out twisted set
# reaches down to the first magic angle: (10, 11) is 3.15 degrees (1,324 atoms), (30, 31)
# 1.08 degrees (11,164 atoms).
TWISTED_TO_MAGIC_ANGLE = ElectronSetConfig.twisted + ((10, 11, 1), (30, 31, 1))
# GPAW's blocks reach r_c = 7 A, which needs in-plane periods of at least 14 A: the 21.8-degree
# cell (6.5 A) is repeated 3 times, the others are wide enough as the GFN1 set has them.
TWISTED_GPAW = ((1, 2, 3),) + ElectronSetConfig.twisted[1:]


def electron_configs(cfg: ElectronSetConfig, force_model: ForceModel) -> tuple[list, list]:
    """(bilayer sample makers, twisted makers): lists of (name, callable -> Atoms)."""
    from ..phonons import harmonic_phonons, relax_positions
    from ..sampling import ThermalSampler

    cache: dict = {}

    def sampler() -> ThermalSampler:
        if "sampler" not in cache:  # built on first use: a finished set never needs it
            primitive = relax_positions(shifted_bilayer(cfg.material, "AB" if cfg.material == "graphene"
                                                        else (0.0, 0.0), _ground_d(cfg.material)), force_model)
            cache["primitive"] = primitive
            cache["sampler"] = ThermalSampler(harmonic_phonons(primitive, force_model, cfg.size),
                                              primitive)
        return cache["sampler"]

    def bilayer_sample(j: int) -> Atoms:
        rng = _rng(cfg.seed, j, CONFIG_STREAM)
        temperature = rng.uniform(*cfg.temperature_range)
        atoms = sampler().samples(temperature, first=j, count=1, seed=cfg.seed)[0]
        if rng.uniform() < cfg.shift_fraction:
            a12 = np.asarray(cache["primitive"].cell)[:2]
            top = atoms.arrays["layer"] == 1
            atoms.positions[top] += rng.uniform(0, 1, 2) @ a12
            atoms.wrap()
        atoms.info.update(config_id=j, temperature_k=temperature)
        return atoms

    def twisted_sample(m: int, n: int, reps: int, k: int) -> Atoms:
        atoms = supercell(twisted_bilayer(m, n), reps)
        if k:
            rng = _rng(cfg.seed, 1000 * m + n, STACKING_STREAM)
            atoms.positions += rng.normal(0.0, cfg.twisted_sigma_a, atoms.positions.shape)
        return atoms

    def held_out_sample(kind: str, k: int) -> Atoms:
        if kind == "strained":
            atoms = shifted_bilayer(cfg.material, (0.0, 0.0), _ground_d(cfg.material))
            atoms.set_cell(np.asarray(atoms.cell) * [[1.015], [1.015], [1.0]], scale_atoms=True)  # in-plane only
        else:
            atoms = shifted_bilayer(cfg.material, (2 / 3, 2 / 3), _ground_d(cfg.material))
        atoms = supercell(atoms, cfg.size)
        if k:
            rng = _rng(cfg.seed, 100 + (kind == "strained"), STACKING_STREAM)
            atoms.positions += rng.normal(0.0, cfg.twisted_sigma_a, atoms.positions.shape)
        return atoms

    if cfg.material == "graphene":
        bilayers = [(f"ab{cfg.size}_{j:05d}", lambda j=j: bilayer_sample(j)) for j in range(cfg.n_configs)]
        twisted = [(f"tbg_{m}_{n}_x{r}_{k}", lambda m=m, n=n, r=r, k=k: twisted_sample(m, n, r, k))
                   for m, n, r in cfg.twisted for k in (0, 1)]
        return bilayers, twisted
    tag = cfg.material.lower()
    bilayers = [(f"{tag}{cfg.size}_{j:05d}", lambda j=j: bilayer_sample(j)) for j in range(cfg.n_configs)]
    held_out = [(f"{tag}{cfg.size}_{kind}_{k}", lambda kind=kind, k=k: held_out_sample(kind, k))
                for kind in ("strained", "stacked") for k in (0, 1)]
    return bilayers, held_out


def _ground_d(material: str) -> float:
    """The interlayer distance a material's bilayer starts from (its reference's own minimum)."""
    return BILAYER_D if material == "graphene" else MATERIAL_BILAYERS[material].d0


def _label_one(hamiltonian_model: HamiltonianModel, folder: Path, atoms: Atoms) -> tuple[str, float, float]:
    """Label one structure into its DeepH folder; returns (name, wall seconds, CPU seconds)."""
    t0, c0 = time.perf_counter(), time.process_time()
    (blocks,) = hamiltonian_model.blocks([atoms])
    write_deeph(folder, atoms, blocks)
    return folder.name, time.perf_counter() - t0, time.process_time() - c0


def generate_electron_set(out: str | Path, cfg: ElectronSetConfig, force_model: ForceModel,
                          hamiltonian_model: HamiltonianModel, progress: bool = True,
                          workers: int = 0) -> Path:
    """Label the electron set into ``out/<name>/`` (DeepH layout) plus ``out/split.json``.

    ``workers`` = 0 labels in this process; N >= 1 in N single-threaded processes
    (OMP_NUM_THREADS=1 there), each structure in its own, the structures drawn here.
    Every finished structure prints one line (name, wall and CPU seconds, count).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = asdict(cfg)
    if cfg.material == "graphene":  # the paper's set, recorded as before materials existed
        record.pop("material")
    _check_or_record_config(out, {"kind": "electron", **record,
                                  "force_model": describe(force_model),
                                  "hamiltonian_model": describe(hamiltonian_model)})
    bilayers, twisted = electron_configs(cfg, force_model)
    everything = bilayers + twisted
    pending = [(name, make) for name, make in everything if not (out / name).exists()]
    done = len(everything) - len(pending)
    t0 = time.time()
    if progress:
        print(f"electron set: {done} of {len(everything)} structures already in {out}", flush=True)

    def report(name: str, seconds: float, cpu_seconds: float) -> None:
        nonlocal done
        done += 1
        if progress:
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {name}: {seconds:.0f} s, CPU {cpu_seconds:.0f} s "
                  f"({done}/{len(everything)})", flush=True)

    if workers <= 0:
        for name, make in pending:
            report(*_label_one(hamiltonian_model, out / name, make()))
    elif pending:
        import multiprocessing
        import os
        from concurrent.futures import ProcessPoolExecutor, as_completed

        env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        os.environ.update({k: "1" for k in env})  # read by the spawned workers at start-up
        try:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                jobs = [pool.submit(_label_one, hamiltonian_model, out / name, make()) for name, make in pending]
                for job in as_completed(jobs):
                    report(*job.result())
        finally:
            for k, v in env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    parts = split_indices(cfg.n_configs, cfg.fractions, cfg.seed)
    names = [n for n, _ in bilayers]
    split = {k: [names[j] for j in v] for k, v in parts.items()}
    split["twisted"] = [n for n, _ in twisted]
    split["seed"] = cfg.seed
    write_split(out, split)
    meta = {"kind": "electron", "config": json.loads(json.dumps(asdict(cfg))),
            "force_model": describe(force_model),
            "hamiltonian_model": describe(hamiltonian_model),
            "split_counts": {k: len(v) for k, v in split.items() if k != "seed"},
            "mlepi_version": __version__, "wall_s_this_run": round(time.time() - t0, 1)}
    write_text_atomic(out / "metadata.json", json.dumps(meta, indent=1))
    return out
