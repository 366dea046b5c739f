"""What the two trained-network wrappers (``MLForceModel``, ``MLHamiltonianModel``) share:
the device and dtype they run in, the metadata they were saved with, the elements and
cutoffs of their network, and the validated graph of a structure with those cutoffs."""

from __future__ import annotations

from typing import Mapping

import torch
from ase import Atoms
from torch import nn

from ..graph import HeteroGraph, default_batch_atoms, model_graph


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of a network (fitted tables and buffers excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def pick_device(device: torch.device | str | None) -> torch.device:
    """``device`` as given, else CUDA when present, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


class DeployedNetwork:
    """A trained network in evaluation mode on ``device`` in ``dtype``, with the elements and
    cutoffs it knows and ``max_batch_atoms`` atoms per batch (``graph.default_batch_atoms``).
    Evaluation holds no state between calls, so threads may call it side by side."""

    thread_safe = True

    def __init__(self, network: nn.Module, metadata: Mapping | None, device: torch.device | str | None,
                 dtype: torch.dtype, max_batch_atoms: int | None):
        self.device = pick_device(device)
        self.dtype = dtype
        self.network = network.to(device=self.device, dtype=dtype).eval()
        self.metadata = dict(metadata or {})
        self.elements = frozenset(network.elements)
        self.cutoffs = dict(network.cutoffs)
        self.max_batch_atoms = int(max_batch_atoms or default_batch_atoms(self.device))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(elements={sorted(self.elements)}, cutoffs={self.cutoffs}, "
                f"device={self.device}, dtype={self.dtype})")

    def _graph(self, atoms: Atoms) -> HeteroGraph:
        """The structure's graph with the model's cutoffs; refuses unknown elements, overlaps,
        missing vacuum (``graph.model_graph``)."""
        return model_graph(atoms, self.cutoffs, self.elements, self.dtype)
