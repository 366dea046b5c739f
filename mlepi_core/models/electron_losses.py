"""Losses and errors of HedgeNet-Electron's blocks (Table II reports the MAE in meV)."""

from __future__ import annotations

from typing import Mapping

import torch

from .electron import ONSITE, HedgeNetElectron


def block_errors(pred: Mapping[str, Mapping[str, torch.Tensor]],
                 target: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per target: MSE and MAE over every matrix element of on-site and hopping blocks.

    Returns {"h_mse": eV^2, "h_mae": eV, "s_mse", "s_mae", ...} as tensors (differentiable);
    the paper's Table II reports the MAE in meV over all elements of the test set.
    """
    out = {}
    for t, blocks in pred.items():
        diff = torch.cat([(blocks[k] - target[t][k].to(blocks[k].dtype)).reshape(-1) for k in blocks])
        out[f"{t}_mse"] = diff.pow(2).mean()
        out[f"{t}_mae"] = diff.abs().mean()
    return out


def normalised_block_mse(model: HedgeNetElectron, pred: Mapping[str, Mapping[str, torch.Tensor]],
                         target: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per target: MSE of the irreps of the blocks in units of their training RMS (dimensionless).

    Each irrep copy of each relation (and of the on-site blocks) is divided by the scale
    that ``fit_normalisation`` found, so weak interlayer hoppings (~0.03 eV) weigh as
    much as strong intralayer ones (~1 eV); components with scale 0 (fixed, e.g. S_ii)
    are left out. Returns {"h": tensor, "s": tensor}.
    """
    bm = model.block_map
    out = {}
    for t, blocks in pred.items():
        norm = model.normalisers[t]
        scales = {ONSITE: norm.onsite_scale, **{rel: norm.edge_scale[r] for r, rel in enumerate(model.relations)}}
        total, count = 0.0, 0
        for key, b in blocks.items():
            scale = scales[key]
            keep = scale > 0
            diff = bm.inverse(b - target[t][key].to(b.dtype))[:, keep] / scale[keep]
            total = total + diff.pow(2).sum()
            count += diff.numel()
        out[t] = total / max(count, 1)
    return out
