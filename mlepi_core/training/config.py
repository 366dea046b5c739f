"""A training run's settings (``TrainConfig``), read from and written to YAML; units: Angstrom, eV."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import yaml

from ..files import write_text_atomic

DTYPES = {"float32": torch.float32, "float64": torch.float64}
TASK_NAMES = ("phonon", "electron")


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
    less pulled by the tail of large errors). ``layer_forces_weight`` adds the phonon loss term
    on the force summed over each layer, the interlayer force. ``init_from`` names a saved model folder whose
    weights start the run (a continuation on the same data, e.g. with another loss); its
    network must have the same settings. ``data_workers`` processes read DeepH folders the
    first time a split is cached. ``pair_fit_reference`` (a force model name, e.g. "empirical")
    fits the network's pair terms (``model.pair_relations``) by least squares to that reference
    on rigid and noisy bilayers of the gallery structure ``pair_fit_structure``
    (``training.pair_fit``) before a new run's first step; ``train_pair`` leaves them
    trainable afterwards (else they stay as fitted).
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
    layer_forces_weight: float = 0.0  # phonon loss on the layer-summed forces (PhononTask.loss)
    h_weight: float = 1.0
    s_weight: float = 1.0
    init_from: str | None = None
    pair_fit_reference: str | None = None
    pair_fit_structure: str = "AB"
    train_pair: bool = False
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
        d["model"] = plain(self.model)
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
        if self.task not in TASK_NAMES:
            raise ValueError(f"task must be one of {list(TASK_NAMES)}, got {self.task!r}")
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


def plain(x):
    """Mappings/tuples -> dicts/lists, for YAML and JSON."""
    if isinstance(x, Mapping):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x



def resolve_device(name: str) -> torch.device:
    """A config's ``device``: "auto" (CUDA when present, else the CPU) or a torch device name."""
    from ..models.deployed import pick_device

    return pick_device(None if name == "auto" else name)
