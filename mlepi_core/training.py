"""One training loop for mlepi's networks: a config file in, checkpoints, logs and metrics out.

``Trainer`` is model-agnostic: it drives a *task* (``PhononTask`` or ``ElectronTask``,
chosen by the config's ``task``) that owns the data, builds the model, computes the loss
and names the metrics.
The loop itself provides Adam/AdamW with a ReduceLROnPlateau or cosine schedule, an
exponential moving average (EMA) of the weights (used for validation and for the saved
model), early stopping on the validation loss, an optional second stage with other loss
weights (MACE's "stage two": energy weighted up at the end), a tqdm progress bar, CSV
logs of steps and epochs, and checkpoints written atomically (temporary file, then
rename) every N steps, every M minutes and after each epoch. A run restarted with the
same config resumes from its last checkpoint and continues exactly as if it had never
stopped: the batch order of epoch e is drawn from a generator keyed by (seed, e), and
the checkpoint records the position inside the epoch.

Phonon loss (energies in eV, forces in eV/A):
    L = w_E * mean_b ((E_b - E_b^ref) / N_b)^2 + w_F * mean_{i,a} (F_ia - F_ia^ref)^2,
reported as MAEs in meV/atom (energy) and meV/A (force components) on every split.

Electron loss (``ElectronTask``, DESIGN.md section 7): L = w_H * L_H + w_S * L_S with
L_t = ``normalised_block_mse`` (the MSE of the irreps of all on-site and hopping blocks
in units of their training RMS), reported as the MAE over all matrix elements of H in
meV and of S (dimensionless), as in Table II of the MLEPI paper, on every split of the
DeepH data set (train, val, test and held-out ones such as "twisted").
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import math
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import yaml

from . import __version__
from .files import write_text_atomic

DTYPES = {"float32": torch.float32, "float64": torch.float64}
CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
# Settings that may change between a run and its resumption (they do not change the numbers
# of the steps already taken).
RESUMABLE_CHANGES = {"max_epochs", "max_steps", "max_time_h", "patience", "progress",
                     "checkpoint_every_steps", "checkpoint_every_minutes", "log_every_steps",
                     "num_threads", "device", "eval_batch_size", "output_dir", "data_workers"}
STAGE_TWO_SETTINGS = {"stage_two_epoch", "stage_two_energy_weight", "stage_two_forces_weight", "stage_two_lr"}


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; serialisable to YAML/JSON (``to_dict``/``load``).

    ``task`` picks the network: "phonon" (``data`` an extxyz file, ``model`` the fields
    of ``HedgeNetPhononConfig``) or "electron" (``data`` the root of a DeepH data set with
    split.json, ``model`` the fields of ``HedgeNetElectronConfig``, whose ``targets``
    say whether H, S or both are learnt); data statistics left out of ``model`` are
    fitted on the training split. Learning rates are per optimizer step; ``patience``
    counts epochs without a better validation loss; ``max_steps``/``max_time_h`` end a
    run early (it stays resumable). ``limit_frames`` ({"train": 8, ...}) keeps the first
    frames (structures) of each split, for smoke tests. ``energy_weight``/``forces_weight``
    (and their stage-two values) weigh the phonon loss, ``h_weight``/``s_weight`` the
    electron loss; ``force_loss`` "huber" replaces the squared force error by Huber's loss
    (quadratic below ``huber_delta`` eV/A, linear above: closer to the MAE that is reported,
    less pulled by the tail of large errors). ``init_from`` names a saved model folder whose
    weights start the run (a continuation on the same data, e.g. with another loss); its
    network must have the same settings. ``data_workers`` processes read DeepH folders the
    first time a split is cached.
    """

    task: str = "phonon"
    data: str = "data/phonon/phonon_set.xyz"
    output_dir: str = "runs/phonon_hedgenet"
    model: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    dtype: str = "float32"
    device: str = "auto"
    num_threads: int = 0  # 0: leave torch's default
    batch_size: int = 8
    eval_batch_size: int = 16
    max_epochs: int = 200
    max_steps: int | None = None
    max_time_h: float | None = None
    optimizer: str = "adam"  # adam | adamw
    lr: float = 0.01
    weight_decay: float = 0.0
    amsgrad: bool = True
    scheduler: str = "plateau"  # plateau | cosine | none
    lr_factor: float = 0.8
    scheduler_patience: int = 5
    min_lr: float = 1e-5
    energy_weight: float = 1.0
    forces_weight: float = 10.0
    stage_two_epoch: int | None = None
    stage_two_energy_weight: float = 100.0
    stage_two_forces_weight: float = 10.0
    stage_two_lr: float | None = 1e-3
    force_loss: str = "mse"  # mse | huber
    huber_delta: float = 0.01  # eV/A, with force_loss "huber"
    h_weight: float = 1.0
    s_weight: float = 1.0
    init_from: str | None = None
    data_workers: int = 1
    ema_decay: float = 0.99
    patience: int = 30
    clip_grad_norm: float | None = 10.0
    checkpoint_every_steps: int = 200
    checkpoint_every_minutes: float = 10.0
    log_every_steps: int = 10
    limit_frames: Mapping[str, int] | None = None
    evaluate_splits: tuple[str, ...] = ("val", "test")
    progress: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = _plain(self.model)
        d["limit_frames"] = None if self.limit_frames is None else dict(self.limit_frames)
        d["evaluate_splits"] = list(self.evaluate_splits)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "TrainConfig":
        d = dict(d)
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown training setting(s) {sorted(unknown)}; known: "
                             f"{sorted(f.name for f in fields(cls))}")
        if "evaluate_splits" in d:
            d["evaluate_splits"] = tuple(d["evaluate_splits"])
        cfg = cls(**d)
        cfg.check()
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        """Read a YAML (or JSON, which is YAML) config file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no such config file: {path}")
        d = yaml.safe_load(path.read_text()) or {}
        if not isinstance(d, dict):
            raise ValueError(f"{path}: a config is a mapping of settings")
        return cls.from_dict(d)

    def dump(self, path: str | Path) -> Path:
        path = Path(path)
        write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    def check(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {sorted(TASKS)}, got {self.task!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        if self.scheduler not in ("plateau", "cosine", "none"):
            raise ValueError(f"scheduler must be 'plateau', 'cosine' or 'none', got {self.scheduler!r}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("batch sizes must be positive")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.force_loss not in ("mse", "huber"):
            raise ValueError(f"force_loss must be 'mse' or 'huber', got {self.force_loss!r}")
        if self.force_loss != "mse" and self.task != "phonon":
            raise ValueError("force_loss applies to the phonon task only")
        if self.huber_delta <= 0:
            raise ValueError(f"huber_delta must be positive, got {self.huber_delta}")
        if self.h_weight < 0 or self.s_weight < 0 or self.h_weight + self.s_weight <= 0:
            raise ValueError("h_weight and s_weight must be >= 0, not both 0")


def _plain(x):
    """Mappings/tuples -> dicts/lists, for YAML and JSON."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x




def atomic_torch_save(obj, path: Path) -> None:
    """torch.save to a temporary name in the same folder, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def with_earlier_data(info: dict, task) -> dict:
    """``info`` plus the byte-different versions of the same labels a resumed run first saw."""
    earlier = getattr(task, "earlier_data", None)
    return {**info, "earlier_versions": earlier} if earlier else info


def resolve_device(name: str) -> torch.device:
    """A config's ``device``: "auto" (CUDA when present, else the CPU) or a torch device name."""
    from .models.deployed import pick_device

    return pick_device(None if name == "auto" else name)


# --- EMA ----------------------------------------------------------------------------------

class EMA:
    """Exponential moving average of a model's parameters, swapped in for evaluation and saving.

    decay_n = min(decay, (1 + n) / (10 + n)) after n updates, as torch_ema and MACE do, so
    that the average is not dominated by the random initial weights.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = float(decay)
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for name, p in model.named_parameters():
            self.shadow[name].mul_(d).add_(p.detach(), alpha=1.0 - d)

    @contextmanager
    def averaged(self, model: torch.nn.Module):
        """Within the block, ``model`` carries the averaged parameters; restored afterwards."""
        backup = {n: p.detach().clone() for n, p in model.named_parameters()}
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(self.shadow[n])
        try:
            yield model
        finally:
            with torch.no_grad():
                for n, p in model.named_parameters():
                    p.copy_(backup[n])

    def state_dict(self) -> dict:
        return {"shadow": self.shadow, "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: Mapping) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise ValueError(f"EMA state does not fit the model ({sorted(missing)[:3]} ...)")
        for n, v in state["shadow"].items():
            self.shadow[n].copy_(v)
        self.updates = int(state["updates"])


# --- the phonon task ------------------------------------------------------------------------

@dataclass
class PhononBatch:
    graph: Any  # HeteroGraph on the training device/dtype
    energy: torch.Tensor  # (B,) eV
    forces: torch.Tensor  # (N, 3) eV/A
    n_atoms: torch.Tensor  # (B,)


class PhononTask:
    """HedgeNet-Phonon on an extxyz data set (energy, forces, layer, split per frame).

    Graphs are built once per frame with the model's cutoffs; batches concatenate them.
    Data statistics for the model (fitted on the training split only): per-element
    reference energies E0 by least squares on the total energies, the mean number of
    edges per atom of each relation, and the RMS force component as energy scale.
    """

    kind = "phonon"
    metric_names = ("energy_mae_mev_per_atom", "energy_rmse_mev_per_atom", "force_mae_mev_per_a",
                    "force_rmse_mev_per_a")

    @staticmethod
    def loss_weights(cfg: TrainConfig, stage: int) -> tuple[float, float]:
        """(energy, forces) weights of the loss in training stage 1 or 2."""
        if stage == 2:
            return cfg.stage_two_energy_weight, cfg.stage_two_forces_weight
        return cfg.energy_weight, cfg.forces_weight

    @staticmethod
    def postfix(m: Mapping) -> dict:
        """What the progress bar shows of a step's metrics."""
        return {"F": f"{m['force_mae_mev_per_a']:.0f}meV/A"}

    @staticmethod
    def describe(m: Mapping) -> str:
        """One split's metrics in a log line."""
        return (f"E {m.get('energy_mae_mev_per_atom', float('nan')):.2f} meV/atom, "
                f"F {m.get('force_mae_mev_per_a', float('nan')):.1f} meV/A")

    def __init__(self, cfg: TrainConfig, frames: Sequence | None = None):
        from .data.extxyz import read_extxyz
        from .graph import build_graph
        from .models.phonon import HedgeNetPhononConfig

        self.cfg = cfg
        self.notes: list[str] = []  # what building the model found, for the training log
        self.data_path = Path(cfg.data)
        if frames is None:
            frames = read_extxyz(self.data_path)
        if not frames:
            raise ValueError(f"{self.data_path}: no frames")
        splits: dict[str, list[int]] = {}
        for k, a in enumerate(frames):
            if "energy" not in a.info or "forces" not in a.arrays:
                raise ValueError(f"{self.data_path}: frame {k} lacks energy or forces")
            splits.setdefault(str(a.info.get("split", "train")), []).append(k)
        if "train" not in splits:
            raise ValueError(f"{self.data_path}: no frame is in the 'train' split")
        if cfg.limit_frames:
            for s, n in cfg.limit_frames.items():
                if s in splits:
                    splits[s] = splits[s][: int(n)]
        used = sorted(k for idx in splits.values() for k in idx)
        self.frames = frames
        self.splits = splits
        mcfg = HedgeNetPhononConfig.from_dict(cfg.model)
        symbols = sorted({s for k in used for s in frames[k].get_chemical_symbols()})
        unknown = set(symbols) - set(mcfg.elements)
        if unknown:
            raise ValueError(f"data has element(s) {sorted(unknown)} missing from model.elements "
                             f"{list(mcfg.elements)}")
        self.graphs = {k: build_graph(frames[k], mcfg.cutoffs, dtype=torch.float64) for k in used}
        self.energy = {k: float(frames[k].info["energy"]) for k in used}
        self.forces = {k: torch.as_tensor(frames[k].arrays["forces"], dtype=torch.float64) for k in used}
        self.model_config = self._fill_statistics(mcfg)

    def _fill_statistics(self, mcfg):
        train = self.splits["train"]
        changes = {}
        if mcfg.atomic_energies_ev is None:
            counts = np.array([[np.sum(np.array(self.frames[k].get_chemical_symbols()) == s)
                                for s in mcfg.elements] for k in train], dtype=float)
            e = np.array([self.energy[k] for k in train])
            e0, *_ = np.linalg.lstsq(counts, e, rcond=None)
            changes["atomic_energies_ev"] = {s: float(v) for s, v in zip(mcfg.elements, e0)}
        if mcfg.avg_num_neighbors is None:
            n_atoms = sum(self.graphs[k].n_atoms for k in train)
            changes["avg_num_neighbors"] = {rel: sum(len(self.graphs[k].edges[rel]) for k in train) / n_atoms
                                            for rel in mcfg.cutoffs}
        if "energy_scale_ev" not in self.cfg.model:
            f = torch.cat([self.forces[k] for k in train])
            changes["energy_scale_ev"] = float(f.pow(2).mean().sqrt())
        return replace(mcfg, **changes) if changes else mcfg

    def split_size(self, split: str) -> int:
        return len(self.splits.get(split, []))

    def build_model(self) -> torch.nn.Module:
        from .models.phonon import HedgeNetPhonon

        return HedgeNetPhonon(self.model_config)

    def batch(self, split: str, positions: Sequence[int], device, dtype) -> PhononBatch:
        from .graph import batch_graphs

        ids = [self.splits[split][p] for p in positions]
        graph = batch_graphs([self.graphs[k] for k in ids]).to(device, dtype)
        return PhononBatch(
            graph=graph,
            energy=torch.tensor([self.energy[k] for k in ids], dtype=torch.float64, device=device),
            forces=torch.cat([self.forces[k] for k in ids]).to(device=device, dtype=dtype),
            n_atoms=torch.tensor([self.graphs[k].n_atoms for k in ids], device=device),
        )

    def loss(self, model, batch: PhononBatch, weights: tuple[float, float], training: bool):
        """Weighted loss and the error sums that ``summarize`` turns into metrics."""
        out = model(batch.graph, compute_forces=True, training=training)
        # energies compared in float64: totals are ~ -470 eV, errors ~ 1e-3 eV
        de = (out["energy"].to(torch.float64) - batch.energy) / batch.n_atoms
        df = out["forces"] - batch.forces
        if self.cfg.force_loss == "huber":
            lf = torch.nn.functional.huber_loss(out["forces"], batch.forces, delta=self.cfg.huber_delta)
        else:
            lf = df.pow(2).mean()
        loss = weights[0] * de.pow(2).mean() + weights[1] * lf.to(torch.float64)
        with torch.no_grad():
            sums = {"n_e": float(len(de)), "e_abs": float(de.abs().sum()), "e_sq": float(de.pow(2).sum()),
                    "n_f": float(df.numel()), "f_abs": float(df.abs().sum()),
                    "f_sq": float(df.pow(2).sum()), "loss": float(loss) * len(de)}
        return loss, sums

    @staticmethod
    def summarize(sums: Mapping[str, float]) -> dict:
        if not sums or sums.get("n_e", 0) == 0:
            return {}
        return {
            "loss": sums["loss"] / sums["n_e"],
            "energy_mae_mev_per_atom": 1e3 * sums["e_abs"] / sums["n_e"],
            "energy_rmse_mev_per_atom": 1e3 * math.sqrt(sums["e_sq"] / sums["n_e"]),
            "force_mae_mev_per_a": 1e3 * sums["f_abs"] / sums["n_f"],
            "force_rmse_mev_per_a": 1e3 * math.sqrt(sums["f_sq"] / sums["n_f"]),
            "n_structures": int(sums["n_e"]),
        }

    def data_info(self) -> dict:
        if not hasattr(self, "_data_sha256"):
            self._data_sha256 = file_sha256(self.data_path) if self.data_path.is_file() else None
        return {"path": str(self.data_path), "sha256": self._data_sha256, "n_frames": len(self.frames),
                "split_counts": {s: len(v) for s, v in self.splits.items()}}

    def save(self, model, path: Path, train_config: TrainConfig, metrics: Mapping | None) -> Path:
        from .models.io import save_model

        return save_model(path, model, train_config=train_config.to_dict(), metrics=metrics,
                          training_data=with_earlier_data(self.data_info(), self))


# --- the electron task ----------------------------------------------------------------------

# Pair kinds of the reported H errors, whatever the model's relations: on-site blocks and
# hoppings within a layer or between layers (so a homogeneous model's "all" edges are split
# the same way as HedgeNet's "intra"/"inter" ones, and the numbers compare).
PAIR_KINDS = ("onsite", "intra", "inter")
# Targets are cached in float32 (half the memory and disk of float64): H is then exact to
# ~1e-6 eV, a thousandth of a meV, far below any MAE reported.
ELECTRON_CACHE_DTYPE = torch.float32


class ElectronTask:
    """HedgeNet-Electron on a DeepH data set: H (eV) and S blocks of every graph pair.

    ``cfg.data`` is the root of the data set; its split.json names the structures of
    "train", "val", "test" and of any held-out split (e.g. "twisted"), each loaded and
    cached on first use (``load_split``, cutoffs of the model, targets in float32).
    Data statistics fitted on the training split: the mean number of edges per atom of
    each relation (when ``model.avg_num_neighbors`` is left out) and the output
    normalisation of the network (per-element on-site means, per-irrep RMS;
    ``HedgeNetElectron.fit_normalisation``), which the loss also uses to weigh each
    component. Loss: ``h_weight * L_H + s_weight * L_S`` with L = ``normalised_block_mse``
    (stage two changes only the learning rate here). Metrics: MAE and RMSE over all
    matrix elements of H in meV (``h_mae_mev``; also per pair kind, ``h_mae_mev_onsite``,
    ``_intra``, ``_inter``) and of S, dimensionless (``s_mae``).
    """

    kind = "electron"

    def __init__(self, cfg: TrainConfig):
        from .data.deeph import read_split
        from .models.electron import HedgeNetElectronConfig

        self.cfg = cfg
        self.notes: list[str] = []  # what building the model found, for the training log
        self.data_path = Path(cfg.data)
        split = read_split(self.data_path)
        self.split_names = {k: list(v) for k, v in split.items() if isinstance(v, list)}
        self._complete = {k: len(v) for k, v in self.split_names.items()}
        if cfg.limit_frames:
            for s, n in cfg.limit_frames.items():
                if s in self.split_names:
                    self.split_names[s] = self.split_names[s][: int(n)]
        self._data: dict = {}
        mcfg = HedgeNetElectronConfig.from_dict({"shells": self._data_shells(cfg.model.get("shells")),
                                                 **cfg.model})
        self.cutoffs = {str(k): float(v) for k, v in mcfg.cutoffs.items()}
        self.elements = tuple(mcfg.elements)
        self.n_orbitals = sum(2 * l + 1 for l in mcfg.shells)
        self.targets = tuple(mcfg.targets)
        names = []
        if "h" in self.targets:
            names += ["h_mae_mev", "h_rmse_mev"]
        if "s" in self.targets:
            names += ["s_mae", "s_rmse"]
        if "h" in self.targets:
            names += [f"h_mae_mev_{k}" for k in PAIR_KINDS]
        self.metric_names = tuple(names)
        if mcfg.avg_num_neighbors is None:
            mcfg = replace(mcfg, avg_num_neighbors=self._train().avg_num_neighbors())
        self.model_config = mcfg

    def _data_shells(self, configured) -> list[int]:
        """The orbital shells (l of each) the data set gives its atoms (orbital_types.dat of
        the first training structure), checked against ``model.shells`` where the config
        names them: the basis comes from the data, not from the model class."""
        names = self.split_names.get("train") or []
        if not names:
            raise ValueError(f"{self.data_path}: split.json has no structures in 'train'")
        path = self.data_path / names[0] / "orbital_types.dat"
        rows = {tuple(int(x) for x in line.split()) for line in path.read_text().splitlines() if line.strip()}
        if len(rows) != 1:
            raise ValueError(f"{path}: atoms with different shells {sorted(rows)}; the model gives "
                             "every atom the same basis")
        (shells,) = rows
        if configured is not None and tuple(int(x) for x in configured) != shells:
            raise ValueError(f"model.shells {list(configured)} disagree with the data's orbital_types "
                             f"{list(shells)} ({path}); leave model.shells out to take the data's")
        if self.cfg.model.get("orbital_frame", "global") == "local_normal":
            from .reference.slater_koster import NEIGHBOUR_CUT, ORBITAL

            info = json.loads((path.parent / "info.json").read_text())
            orbital = (info.get("meta") or {}).get("orbital")
            if orbital != ORBITAL:
                raise ValueError(f"model.orbital_frame 'local_normal' needs data whose orbital is "
                                 f"{ORBITAL!r}; {path.parent / 'info.json'} says {orbital!r}")
            if float(self.cfg.model.get("frame_cut", NEIGHBOUR_CUT)) != NEIGHBOUR_CUT:
                raise ValueError(f"model.frame_cut must be the data's normal convention, {NEIGHBOUR_CUT} A "
                                 "(reference.slater_koster.NEIGHBOUR_CUT)")
        return list(shells)

    def _train(self):
        if not self.split_names.get("train"):
            raise ValueError(f"{self.data_path}: split.json has no structures in 'train'")
        return self.dataset("train")

    def dataset(self, split: str):
        """The ``ElectronDataset`` of ``split`` (loaded, checked and kept on first use)."""
        if split not in self._data:
            from .data.electron_dataset import ElectronDataset, load_split

            names = self.split_names.get(split, [])
            if not names:
                raise ValueError(f"{self.data_path}: split {split!r} is empty or absent")
            if len(names) == self._complete[split]:
                data = load_split(self.data_path, split, self.cutoffs, dtype=ELECTRON_CACHE_DTYPE,
                                  workers=self.cfg.data_workers, progress=self.cfg.progress)
            else:  # limit_frames: read just those folders, no cache
                data = ElectronDataset.from_folders([self.data_path / nm for nm in names], self.cutoffs,
                                                    names=names, dtype=ELECTRON_CACHE_DTYPE,
                                                    workers=self.cfg.data_workers, progress=self.cfg.progress)
            self._check(split, data)
            self._data[split] = data
        return self._data[split]

    def _check(self, split: str, data) -> None:
        from ase.data import chemical_symbols

        from .models.electron import ONSITE

        elements = set(self.elements)
        for smp in data:
            symbols = {chemical_symbols[int(z)] for z in torch.unique(smp.graph.numbers)}
            if symbols - elements:
                raise ValueError(f"{self.data_path / smp.name}: element(s) {sorted(symbols - elements)} "
                                 f"missing from model.elements {sorted(elements)}")
            n = smp.targets["h"][ONSITE].shape[-1]
            if n != self.n_orbitals:
                raise ValueError(f"{self.data_path / smp.name}: {n} orbitals per atom, the model's "
                                 f"shells give {self.n_orbitals}")

    def split_size(self, split: str) -> int:
        return len(self.split_names.get(split, []))

    @staticmethod
    def loss_weights(cfg: TrainConfig, stage: int) -> tuple[float, float]:
        """(H, S) weights of the loss (the same in both stages)."""
        return cfg.h_weight, cfg.s_weight

    def build_model(self) -> torch.nn.Module:
        """A fresh network (Clebsch-Gordan tables in float64) normalised on the training split."""
        from .models.electron import HedgeNetElectron, _float64_default

        with _float64_default():
            model = HedgeNetElectron(self.model_config)
        model.fit_normalisation(self._train().normalisation_items())
        if model.two_centre is not None:
            from .data.electron_dataset import collate_electron
            from .models.electron import fit_two_centre

            left = fit_two_centre(model, (collate_electron([smp]) for smp in self._train()))
            self.notes.append("two-centre tables fitted on the training split, normalised residual RMS "
                              + ", ".join(f"{t} {rel} {v:.3g}" for t, d in left.items() for rel, v in d.items()))
        return model

    def batch(self, split: str, positions: Sequence[int], device, dtype):
        from .data.electron_dataset import collate_electron

        data = self.dataset(split)
        return collate_electron([data[p] for p in positions]).to(device, dtype)

    def loss(self, model, batch, weights: tuple[float, float], training: bool):
        """Weighted normalised block MSE and the error sums that ``summarize`` turns into metrics."""
        from .models.electron import ONSITE, normalised_block_mse

        with torch.set_grad_enabled(training and torch.is_grad_enabled()):
            out = model(batch.graph, batch.reverse)
            nmse = normalised_block_mse(model, out, batch.targets)
            w = dict(zip(("h", "s"), weights))
            loss = sum(w[t] * v for t, v in nmse.items())
        n_struct = batch.graph.n_structures
        with torch.no_grad():
            sums = {"n": float(n_struct), "loss": float(loss) * n_struct}
            layer = batch.graph.layer
            for t, blocks in out.items():
                for key, pred in blocks.items():
                    diff = (pred - batch.targets[t][key].to(pred.dtype)).to(torch.float64).flatten(1)
                    if key == ONSITE:
                        parts = {"onsite": diff}
                    else:
                        i, j = batch.graph.edges[key].index
                        same = layer[i] == layer[j]
                        parts = {"intra": diff[same], "inter": diff[~same]}
                    for kind, d in parts.items():
                        if d.numel():
                            _add_sums(sums, {f"{t}_n_{kind}": float(d.numel()),
                                             f"{t}_abs_{kind}": float(d.abs().sum()),
                                             f"{t}_sq_{kind}": float(d.pow(2).sum())})
        return loss, sums

    @staticmethod
    def summarize(sums: Mapping[str, float]) -> dict:
        if not sums or sums.get("n", 0) == 0:
            return {}
        m = {"loss": sums["loss"] / sums["n"]}
        for t, scale, unit in (("h", 1e3, "_mev"), ("s", 1.0, "")):
            n = sum(sums.get(f"{t}_n_{k}", 0.0) for k in PAIR_KINDS)
            if n == 0:
                continue
            m[f"{t}_mae{unit}"] = scale * sum(sums.get(f"{t}_abs_{k}", 0.0) for k in PAIR_KINDS) / n
            m[f"{t}_rmse{unit}"] = scale * math.sqrt(sum(sums.get(f"{t}_sq_{k}", 0.0) for k in PAIR_KINDS) / n)
            for k in PAIR_KINDS:
                if sums.get(f"{t}_n_{k}", 0) > 0:
                    m[f"{t}_mae{unit}_{k}"] = scale * sums[f"{t}_abs_{k}"] / sums[f"{t}_n_{k}"]
            m[f"n_{t}_elements"] = int(n)
        m["n_structures"] = int(sums["n"])
        return m

    @staticmethod
    def postfix(m: Mapping) -> dict:
        return {"H": f"{m['h_mae_mev']:.1f}meV"} if "h_mae_mev" in m else {}

    @staticmethod
    def describe(m: Mapping) -> str:
        return (f"H {m.get('h_mae_mev', float('nan')):.2f} meV, "
                f"S {m.get('s_mae', float('nan')):.2e}")

    def data_info(self) -> dict:
        from .data.electron_dataset import deeph_set_sha256, valence_electrons_per_atom

        if not hasattr(self, "_data_sha256"):
            self._data_sha256 = deeph_set_sha256(self.data_path)
        info = {"path": str(self.data_path), "sha256": self._data_sha256,
                "n_structures": sum(len(v) for v in self.split_names.values()),
                "split_counts": {s: len(v) for s, v in self.split_names.items()}}
        per_atom = valence_electrons_per_atom(self.data_path, self.split_names.get("train", []))
        if per_atom is not None:  # the basis's electron count (the band probe's Fermi level needs it)
            info["valence_electrons_per_atom"] = per_atom
        return info

    def save(self, model, path: Path, train_config: TrainConfig, metrics: Mapping | None) -> Path:
        from .models.io import save_model

        return save_model(path, model, train_config=train_config.to_dict(), metrics=metrics,
                          training_data=with_earlier_data(self.data_info(), self))


TASKS = {"phonon": PhononTask, "electron": ElectronTask}


def _add_sums(acc: dict, sums: Mapping[str, float]) -> None:
    for k, v in sums.items():
        acc[k] = acc.get(k, 0.0) + v


def evaluate(task, model, split: str, batch_size: int, device, dtype, weights=(1.0, 1.0),
             by_structure: bool = False) -> dict:
    """Metrics of ``model`` on one split (forces by autograd, no parameter gradients kept);
    ``by_structure``: one structure per batch, and each one's metrics under "by_structure"."""
    model.eval()
    acc: dict = {}
    n = task.split_size(split)
    step = 1 if by_structure else batch_size
    each = {}
    for start in range(0, n, step):
        batch = task.batch(split, range(start, min(n, start + step)), device, dtype)
        _, sums = task.loss(model, batch, weights, training=False)
        _add_sums(acc, sums)
        if by_structure:
            one: dict = {}
            _add_sums(one, sums)
            each[task.split_names[split][start]] = task.summarize(one)
    out = task.summarize(acc)
    if by_structure:
        out["by_structure"] = each
    return out


# --- the loop -----------------------------------------------------------------------------

def epoch_order(seed: int, epoch: int, n: int) -> list[int]:
    """The shuffled order of epoch ``epoch``: a pure function of (seed, epoch), hence resumable."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g).tolist()


class Trainer:
    """Runs ``cfg`` on ``task``; ``run()`` returns the final metrics (also in metrics.json)."""

    def __init__(self, cfg: TrainConfig, task=None, resume: bool = True):
        cfg.check()
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.device = resolve_device(cfg.device)
        self.dtype = DTYPES[cfg.dtype]
        if cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)
        self.task = task if task is not None else TASKS[cfg.task](cfg)
        torch.manual_seed(cfg.seed)
        self.model = self.task.build_model().to(self.device, self.dtype)
        if cfg.init_from and not (resume and (self.out / CHECKPOINT_FILE).is_file()):
            self._init_weights(Path(cfg.init_from))  # (a resumed run takes its checkpoint's weights)
        self.ema = EMA(self.model, cfg.ema_decay)
        opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                 amsgrad=cfg.amsgrad)
        if cfg.scheduler == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, factor=cfg.lr_factor, patience=cfg.scheduler_patience, min_lr=cfg.min_lr)
        elif cfg.scheduler == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=cfg.max_epochs, eta_min=cfg.min_lr)
        else:
            self.scheduler = None
        self.state = {"epoch": 0, "batch": 0, "step": 0, "stage": 1, "best_val": math.inf,
                      "best_epoch": -1, "bad_epochs": 0, "elapsed_s": 0.0, "done": False,
                      "train_sums": {}}
        self.resumed = False
        if resume and (self.out / CHECKPOINT_FILE).is_file():
            self._load_checkpoint(self.out / CHECKPOINT_FILE)
            self.resumed = True
        self.task.earlier_data = self.state.get("earlier_data", [])

    # -- bookkeeping --
    @property
    def weights(self) -> tuple[float, float]:
        return self.task.loss_weights(self.cfg, self.state["stage"])

    def _init_weights(self, model_dir: Path) -> None:
        """Start from the weights of a saved model (``init_from``) of the same network."""
        from .models.io import load_model

        saved = load_model(model_dir, kind=self.task.kind).network
        if saved.config.to_dict() != self.task.model_config.to_dict():
            diff = sorted(k for k, v in saved.config.to_dict().items()
                          if self.task.model_config.to_dict().get(k) != v)
            raise ValueError(f"init_from: the network saved in {model_dir} has other settings than "
                             f"this run's model ({', '.join(diff)})")
        self.model.load_state_dict(saved.state_dict())

    def _checkpoint(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "code_version": __version__, "config": self.cfg.to_dict(),
                "model_config": _plain(self.task.model_config.to_dict()),
                "model": self.model.state_dict(), "ema": self.ema.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                "data_sha256": self.task.data_info().get("sha256"),
                "state": copy.deepcopy(self.state)}

    def save_checkpoint(self) -> Path:
        path = self.out / CHECKPOINT_FILE
        atomic_torch_save(self._checkpoint(), path)
        self._last_ckpt_time, self._last_ckpt_step = time.monotonic(), self.state["step"]
        return path

    def _load_checkpoint(self, path: Path) -> None:
        ck = torch.load(path, map_location=self.device, weights_only=False)
        if ck.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: checkpoint format {ck.get('format')} is not {CHECKPOINT_FORMAT}")
        # a setting that a checkpoint predates counts as its default value
        old, new = {**TrainConfig().to_dict(), **ck["config"]}, self.cfg.to_dict()
        resumable = set(RESUMABLE_CHANGES)
        if ck["state"]["stage"] == 1 and ck["state"]["epoch"] < min(
                e if e is not None else math.inf for e in (old["stage_two_epoch"], new["stage_two_epoch"])):
            resumable |= STAGE_TWO_SETTINGS  # stage two is still ahead: its settings may change
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in resumable)
        if changed:
            raise ValueError(f"{path} was written by a run with other settings ({', '.join(changed)}); "
                             f"use another output_dir or start afresh (--no-resume)")
        saved_data, data = ck.get("data_sha256"), self.task.data_info().get("sha256")
        earlier = list(ck["state"].get("earlier_data", []))
        if saved_data is not None and saved_data != data:
            earlier.append(self._check_regenerated_data(path, saved_data, ck["state"],
                                                        {saved_data, *(e["sha256"] for e in earlier)}))
        self.model.load_state_dict(ck["model"])
        self.ema.load_state_dict(ck["ema"])
        self.optimizer.load_state_dict(ck["optimizer"])
        if self.scheduler is not None and ck["scheduler"] is not None:
            self.scheduler.load_state_dict(ck["scheduler"])
        self.state.update(ck["state"])
        self.state["earlier_data"] = earlier
        if self.state["done"] and not self.state.get("early_stopped") and self.state["epoch"] < self.cfg.max_epochs:
            self.state["done"] = False  # a finished run given more epochs goes on

    def _check_regenerated_data(self, path: Path, saved_sha: str, saved_state: Mapping,
                                same_labels: set) -> dict:
        """Accept a data set whose bytes differ from the checkpoint's only if it holds the same
        labels: the best saved model, re-evaluated on this validation split, must reproduce the
        validation errors it recorded when trained (relative 1e-4, float rounding of a set
        regenerated on another CPU or library build). ``same_labels``: the sha256 of the versions
        already known to hold these labels. Returns the record kept in the metadata."""
        from .models.io import load_model, read_metadata

        refuse = (f"{path} was trained on another data set (sha256 {saved_sha[:12]}..., now "
                  f"{str(self.task.data_info().get('sha256'))[:12]}...)")
        model_dir = self.out / "model"
        meta = read_metadata(model_dir) if (model_dir / "metadata.json").is_file() else {}
        recorded = (meta.get("metrics") or {}).get("val") or {}
        if (meta.get("training_data") or {}).get("sha256") not in same_labels or not recorded:
            raise ValueError(f"{refuse}, and no saved model with recorded validation errors on the old "
                             f"data can show the labels are the same; start afresh (--no-resume)")
        ff = load_model(model_dir, device=self.device, dtype=self.dtype)
        now = evaluate(self.task, ff.network, "val", self.cfg.eval_batch_size, self.device, self.dtype)
        keys = [k for k in self.task.metric_names if "_mae" in k and k in recorded]
        rel = {k: abs(now[k] - recorded[k]) / max(abs(recorded[k]), 1e-12) for k in keys}
        if not keys or max(rel.values()) > 1e-4:
            raise ValueError(f"{refuse}: the labels changed (validation errors of the saved model "
                             f"{ {k: round(recorded[k], 6) for k in keys} } then, "
                             f"{ {k: round(now[k], 6) for k in keys} } now); start afresh (--no-resume) "
                             f"or restore the data")
        self._say(f"data set regenerated (sha256 {saved_sha[:12]}... -> "
                  f"{self.task.data_info()['sha256'][:12]}...): the saved model reproduces its "
                  f"validation errors to {max(rel.values()):.1e} relative; continuing")
        return {"sha256": saved_sha, "until_epoch": int(saved_state["epoch"]),
                "until_step": int(saved_state["step"]), "val_relative_difference": max(rel.values())}

    def _log(self, name: str, row: Mapping) -> None:
        path = self.out / name
        new = not path.is_file()
        with open(path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)

    def _say(self, text: str) -> None:
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {text}"
        with open(self.out / "train.log", "a") as fh:
            fh.write(line + "\n")
        if self.cfg.progress:
            from tqdm import tqdm

            tqdm.write(line, file=sys.stderr)

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # -- the loop --
    def train_step(self, batch) -> dict:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss, sums = self.task.loss(self.model, batch, self.weights, training=True)
        loss.backward()
        if self.cfg.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad_norm)
        self.optimizer.step()
        self.ema.update(self.model)
        return sums

    def _enter_stage_two(self) -> None:
        self.state["stage"] = 2
        self.state["best_val"], self.state["bad_epochs"] = math.inf, 0
        if self.cfg.stage_two_lr is not None:
            for g in self.optimizer.param_groups:
                g["lr"] = self.cfg.stage_two_lr
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            # the loss changed definition: forget stage one's best value and patience count
            self.scheduler.best = self.scheduler.mode_worse
            self.scheduler.num_bad_epochs = 0
            self.scheduler.cooldown_counter = 0
        self._say(f"stage two from epoch {self.state['epoch']}: loss weights {self.weights}")

    def run(self) -> dict:
        from tqdm import tqdm

        cfg, st = self.cfg, self.state
        self.out.mkdir(parents=True, exist_ok=True)
        cfg.dump(self.out / "config.yaml")
        n_train = self.task.split_size("train")
        n_batches = math.ceil(n_train / cfg.batch_size)
        self._last_ckpt_time, self._last_ckpt_step = time.monotonic(), st["step"]
        t_start, elapsed0 = time.monotonic(), st["elapsed_s"]
        n_params = sum(p.numel() for p in self.model.parameters())
        self._say(f"{'resuming' if self.resumed else 'starting'} {cfg.task} training in {self.out}: "
                  f"{n_params} parameters, {n_train} training structures, {n_batches} batches/epoch, "
                  f"epoch {st['epoch']} batch {st['batch']} step {st['step']}, device {self.device}, "
                  f"{cfg.dtype}, {torch.get_num_threads()} threads")
        for note in getattr(self.task, "notes", ()):
            self._say(note)
        stop_reason = None
        while not st["done"] and st["epoch"] < cfg.max_epochs:
            epoch = st["epoch"]
            if st["stage"] == 1 and cfg.stage_two_epoch is not None and (
                    epoch >= cfg.stage_two_epoch or st.get("stage_two_due")):
                self._enter_stage_two()
            order = epoch_order(cfg.seed, epoch, n_train)
            bar = tqdm(total=n_batches, initial=st["batch"], desc=f"epoch {epoch}", unit="batch",
                       disable=not cfg.progress, mininterval=1.0 if sys.stderr.isatty() else 30.0,
                       leave=False, file=sys.stderr)
            while st["batch"] < n_batches:
                b = st["batch"]
                batch = self.task.batch("train", order[b * cfg.batch_size:(b + 1) * cfg.batch_size],
                                        self.device, self.dtype)
                sums = self.train_step(batch)
                st["batch"] += 1
                st["step"] += 1
                _add_sums(st["train_sums"], sums)
                st["elapsed_s"] = elapsed0 + time.monotonic() - t_start
                bar.update(1)
                if st["step"] % cfg.log_every_steps == 0:
                    m = self.task.summarize(sums)
                    bar.set_postfix(loss=f"{m['loss']:.3g}", **self.task.postfix(m))
                    self._log("steps.csv", {"step": st["step"], "epoch": epoch, "batch": st["batch"],
                                            "elapsed_s": round(st["elapsed_s"], 2), "lr": self._lr(),
                                            **{k: m.get(k) for k in ("loss", *self.task.metric_names)}})
                if cfg.max_steps is not None and st["step"] >= cfg.max_steps:
                    stop_reason = f"max_steps {cfg.max_steps} reached"
                elif cfg.max_time_h is not None and st["elapsed_s"] > 3600 * cfg.max_time_h:
                    stop_reason = f"max_time_h {cfg.max_time_h} reached"
                if stop_reason:
                    break
                if (st["step"] - self._last_ckpt_step >= cfg.checkpoint_every_steps
                        or time.monotonic() - self._last_ckpt_time > 60 * cfg.checkpoint_every_minutes):
                    self.save_checkpoint()
            bar.close()
            if stop_reason:
                self.save_checkpoint()
                self._say(f"stopping at step {st['step']} (epoch {epoch}, batch {st['batch']}): "
                          f"{stop_reason}; resumable")
                return {"stopped": stop_reason, "step": st["step"]}
            self._end_epoch(epoch)
        metrics = self.finish()
        return metrics

    def _end_epoch(self, epoch: int) -> None:
        cfg, st = self.cfg, self.state
        train_m = self.task.summarize(st["train_sums"])
        val_m = {}
        if self.task.split_size("val"):
            with self.ema.averaged(self.model) as averaged:
                val_m = evaluate(self.task, averaged, "val", cfg.eval_batch_size, self.device,
                                 self.dtype, self.weights)
        val_loss = val_m.get("loss", train_m.get("loss", math.inf))
        if self.scheduler is not None:
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(val_loss)
            else:
                self.scheduler.step()
        improved = val_loss < st["best_val"]
        if improved:
            st["best_val"], st["best_epoch"], st["bad_epochs"] = val_loss, epoch, 0
            with self.ema.averaged(self.model) as averaged:
                self.task.save(averaged, self.out / "model", cfg,
                               {"val": val_m, "epoch": epoch, "stage": st["stage"]})
        else:
            st["bad_epochs"] += 1
        row = {"epoch": epoch, "step": st["step"], "elapsed_s": round(st["elapsed_s"], 1), "lr": self._lr(),
               "stage": st["stage"],
               **{f"train_{k}": train_m.get(k) for k in ("loss", *self.task.metric_names)},
               **{f"val_{k}": val_m.get(k) for k in ("loss", *self.task.metric_names)}}
        self._log("epochs.csv", row)
        self._say(f"epoch {epoch}: train loss {train_m.get('loss', float('nan')):.4g} "
                  f"({self.task.describe(train_m)}) | val (EMA) loss "
                  f"{val_loss:.4g} ({self.task.describe(val_m)}) | lr {self._lr():.2e}"
                  f"{' | best' if improved else ''} | {st['elapsed_s'] / 60:.1f} min")
        st["epoch"], st["batch"], st["train_sums"] = epoch + 1, 0, {}
        stage_two_pending = cfg.stage_two_epoch is not None and st["stage"] == 1
        if st["bad_epochs"] >= cfg.patience:
            if stage_two_pending:
                self._say(f"no improvement for {cfg.patience} epochs: starting stage two early")
                st["stage_two_due"] = True
            else:
                self._say(f"early stopping: no better validation loss for {cfg.patience} epochs")
                st["done"], st["early_stopped"] = True, True
        self.save_checkpoint()

    def finish(self) -> dict:
        """Evaluate the best saved model on the configured splits; write metrics.json."""
        from .models.io import load_model, update_metrics

        model_dir = self.out / "model"
        if not model_dir.is_dir():  # no validation epoch finished: save the EMA model as is
            with self.ema.averaged(self.model) as averaged:
                self.task.save(averaged, model_dir, self.cfg, {})
        ff = load_model(model_dir, device=self.device, dtype=self.dtype)
        metrics = {"best_epoch": self.state["best_epoch"], "steps": self.state["step"],
                   "epochs": self.state["epoch"], "elapsed_s": round(self.state["elapsed_s"], 1),
                   "model_dir": str(model_dir)}
        for split in self.cfg.evaluate_splits:
            if self.task.split_size(split):
                metrics[split] = evaluate(self.task, ff.network, split, self.cfg.eval_batch_size,
                                          self.device, self.dtype)
        update_metrics(model_dir, metrics)
        write_text_atomic(self.out / "metrics.json", json.dumps(_plain(metrics), indent=1))
        summary = ", ".join(f"{s}: {self.task.describe(m)}"
                            for s, m in metrics.items() if isinstance(m, dict) and m)
        self._say(f"finished after {self.state['epoch']} epochs: {summary}")
        self.state["done"] = True
        self.save_checkpoint()
        return metrics


def train(cfg: TrainConfig, resume: bool = True) -> dict:
    """Run (or resume) the training that ``cfg`` describes; returns the final metrics."""
    return Trainer(cfg, resume=resume).run()


def evaluate_model(model_dir: str | Path, data: str | Path | None = None,
                   splits: Sequence[str] = ("val", "test"), batch_size: int = 16, device: str = "auto",
                   dtype: str = "float64", progress: bool = False, kind: str | None = "phonon") -> dict:
    """Metrics of a saved model on the splits of a data set: a phonon model on an extxyz file,
    an electron model on a DeepH data set (``data`` None: the one it was trained on).

    ``kind`` ("phonon", "electron", or None for whichever the folder holds) is required of
    the model (ModelFormatError otherwise). Splits the data set lacks are left out.
    """
    from .models.io import ModelFormatError, load_model, read_metadata

    meta = read_metadata(model_dir)
    if kind is not None and meta["kind"] != kind:
        raise ModelFormatError(f"{model_dir}: a saved {meta['kind']} model, not a {kind} model")
    if data is None:
        data = (meta.get("training_data") or {}).get("path") or (
            "data/electron" if meta["kind"] == "electron" else "data/phonon/phonon_set.xyz")
    dev = resolve_device(device)
    model = load_model(model_dir, device=dev, dtype=DTYPES[dtype])
    cfg = TrainConfig(task=meta["kind"], data=str(data), model=model.network.config.to_dict(),
                      progress=progress)
    task = TASKS[meta["kind"]](cfg)
    out = {"model_dir": str(model_dir), "data": task.data_info()}
    # the very file the model was trained on, or another (e.g. the set regenerated on another machine)
    trained_on = (meta.get("training_data") or {}).get("sha256")
    out["data"]["training_sha256"] = trained_on
    out["data"]["same_as_training"] = trained_on == out["data"]["sha256"] if trained_on else None
    if meta["kind"] == "electron":
        out["model"] = {k: meta.get(k) for k in ("architecture", "relations", "cutoffs_a", "hidden_irreps",
                                                  "num_layers", "n_parameters")}
    for split in splits:
        if task.split_size(split):  # twisted cells of every angle, each reported too
            out[split] = evaluate(task, model.network, split, batch_size, dev, DTYPES[dtype],
                                  by_structure=meta["kind"] == "electron" and split == "twisted")
    return out


ELECTRON_METRIC_UNITS = {"h_mae_mev": "meV", "h_rmse_mev": "meV", "s_mae": "1", "s_rmse": "1"}


def electron_metrics_table(model_dir: str | Path, ablation: Mapping[str, str | Path] | None = None,
                           data: str | Path | None = None, splits: Sequence[str] = ("test", "twisted"),
                           batch_size: int = 2, device: str = "auto", dtype: str = "float64",
                           progress: bool = False) -> dict:
    """Table II of the MLEPI paper: H (meV) and S errors over all matrix elements of each split,
    for a HedgeNet-Electron model and, under "ablation", for the baselines named in
    ``ablation`` ({"homogeneous_3": run or model folder, ...}), all on the same data set
    (``data`` None: the one the first model was trained on)."""
    from .models.io import read_metadata

    if data is None:
        data = (read_metadata(model_dir).get("training_data") or {}).get("path") or "data/electron"
    for path in [model_dir, *(ablation or {}).values()]:
        if read_metadata(path)["kind"] != "electron":
            raise ValueError(f"{path} is not an electron model")
    kw = dict(data=data, splits=splits, batch_size=batch_size, device=device, dtype=dtype, progress=progress,
              kind="electron")
    table = evaluate_model(model_dir, **kw)
    table["units"] = dict(ELECTRON_METRIC_UNITS)
    table["ablation"] = {}
    for name, path in (ablation or {}).items():
        row = evaluate_model(path, **kw)
        row.pop("data", None)
        table["ablation"][name] = row
    return _plain(table)
