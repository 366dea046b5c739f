"""An exponential moving average of a network's weights, the weights that are validated and saved."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Mapping

import torch


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
