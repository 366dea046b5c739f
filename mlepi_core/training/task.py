"""What the training loop asks of a task, and the evaluation of a model on one split.

A task (``PhononTask``, ``ElectronTask``) owns a data set and its splits, builds the
network, turns a list of structures into a batch, computes the loss with the error
sums of a batch (``loss``), turns summed error sums into metrics (``summarize``) and
saves a model with the data it was trained on. ``Trainer`` knows nothing else of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch


class Task:
    """The common part of the tasks; subclasses set ``kind`` and ``metric_names``."""

    kind: str
    metric_names: tuple[str, ...]
    earlier_data: list  # byte-different versions of the same labels a resumed run first saw

    def split_size(self, split: str) -> int:
        """Structures in ``split`` (0 if the data set has none)."""
        raise NotImplementedError

    @staticmethod
    def loss_weights(cfg, stage: int) -> tuple[float, float]:
        """The two weights of the loss in training stage 1 or 2."""
        raise NotImplementedError

    def build_model(self) -> torch.nn.Module:
        """A fresh network, its data statistics fitted on the training split."""
        raise NotImplementedError

    def batch(self, split: str, positions: Sequence[int], device, dtype):
        """The structures at ``positions`` of ``split`` as one batch on ``device``."""
        raise NotImplementedError

    def loss(self, model, batch, weights: tuple[float, float], training: bool):
        """(weighted loss, error sums of the batch)."""
        raise NotImplementedError

    @staticmethod
    def summarize(sums: Mapping[str, float]) -> dict:
        """Metrics (MAEs, RMSEs, the loss) from error sums added over batches."""
        raise NotImplementedError

    @staticmethod
    def postfix(m: Mapping) -> dict:
        """What the progress bar shows of a step's metrics."""
        raise NotImplementedError

    @staticmethod
    def describe(m: Mapping) -> str:
        """One split's metrics in a log line."""
        raise NotImplementedError

    def data_info(self) -> dict:
        """Path, sha256 and split sizes of the data set, kept with the saved model."""
        raise NotImplementedError

    def save(self, model, path: Path, train_config, metrics: Mapping | None) -> Path:
        """Save ``model`` with its training settings, metrics and the data it was trained on."""
        from ..models.io import save_model

        info = self.data_info()
        if getattr(self, "earlier_data", None):
            info = {**info, "earlier_versions": self.earlier_data}
        return save_model(path, model, train_config=train_config.to_dict(), metrics=metrics,
                          training_data=info)


def add_sums(acc: dict, sums: Mapping[str, float]) -> None:
    """Add error sums into ``acc`` key by key."""
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
        add_sums(acc, sums)
        if by_structure:
            one: dict = {}
            add_sums(one, sums)
            each[task.split_names[split][start]] = task.summarize(one)
    out = task.summarize(acc)
    if by_structure:
        out["by_structure"] = each
    return out

