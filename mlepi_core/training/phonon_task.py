"""The phonon task: HedgeNet-Phonon learns energies (eV) and forces (eV/A) of an extxyz data set.

Loss: L = w_E * mean_b ((E_b - E_b^ref) / N_b)^2 + w_F * mean_{i,a} (F_ia - F_ia^ref)^2 (or
Huber's loss on the force components) + w_L * mean_{b,l,a} (sum_{i in l} (F_ia - F_ia^ref))^2 / N_bl,
the last on the force summed over each layer l of structure b (N_bl atoms): the intralayer
forces cancel in that sum, so it is the interlayer (sliding and breathing) force, whose
~1 meV/A per atom the per-atom term cannot resolve under errors of ~15 meV/A; divided by
N_bl it weighs as one atom's force would if the atoms' errors were independent. Reported
as MAEs in meV/atom and meV/A, and the RMS error of the layer-summed force per atom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..files import file_sha256
from .config import TrainConfig
from .task import Task


@dataclass
class PhononBatch:
    graph: Any  # HeteroGraph on the training device/dtype
    energy: torch.Tensor  # (B,) eV
    forces: torch.Tensor  # (N, 3) eV/A
    n_atoms: torch.Tensor  # (B,)


class PhononTask(Task):
    """HedgeNet-Phonon on an extxyz data set (energy, forces, layer, split per frame).

    Graphs are built once per frame with the model's cutoffs; batches concatenate them.
    Data statistics for the model (fitted on the training split only): per-element
    reference energies E0 by least squares on the total energies, the mean number of
    edges per atom of each relation, and the RMS force component as energy scale.
    """

    kind = "phonon"
    fitted = ("atomic_energies_ev", "avg_num_neighbors", "energy_scale_ev")  # from the training split
    metric_names = ("energy_mae_mev_per_atom", "energy_rmse_mev_per_atom", "force_mae_mev_per_a",
                    "force_rmse_mev_per_a", "layer_force_rmse_mev_per_a")

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
        from ..data.extxyz import read_extxyz
        from ..graph import build_graph
        from ..models.phonon import HedgeNetPhononConfig

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
        from ..models.phonon import HedgeNetPhonon

        return HedgeNetPhonon(self.model_config)

    def batch(self, split: str, positions: Sequence[int], device, dtype) -> PhononBatch:
        from ..graph import batch_graphs

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
        dl, n_l = self.layer_sums(batch.graph, df)
        if self.cfg.layer_forces_weight:
            loss = loss + self.cfg.layer_forces_weight * (dl.pow(2) / n_l[:, None]).mean().to(torch.float64)
        with torch.no_grad():
            sums = {"n_e": float(len(de)), "e_abs": float(de.abs().sum()), "e_sq": float(de.pow(2).sum()),
                    "n_f": float(df.numel()), "f_abs": float(df.abs().sum()),
                    "f_sq": float(df.pow(2).sum()), "loss": float(loss) * len(de),
                    "n_l": float(dl.numel()), "l_sq": float((dl / n_l[:, None]).pow(2).sum())}
        return loss, sums

    @staticmethod
    def layer_sums(graph, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-atom vectors (N, 3) summed over each layer of each structure: (G, 3) and the atom
        count of each of the G (structure, layer) groups."""
        n_layers = int(graph.layer.max()) + 1
        group = graph.batch * n_layers + graph.layer
        _, group = torch.unique(group, return_inverse=True)
        g = int(group.max()) + 1
        sums = values.new_zeros(g, values.shape[1]).index_add(0, group, values)
        counts = torch.bincount(group, minlength=g).to(values.dtype)
        return sums, counts

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
            **({"layer_force_rmse_mev_per_a": 1e3 * math.sqrt(sums["l_sq"] / sums["n_l"])} if sums.get("n_l") else {}),
            "n_structures": int(sums["n_e"]),
        }

    def data_info(self) -> dict:
        if not hasattr(self, "_data_sha256"):
            self._data_sha256 = file_sha256(self.data_path) if self.data_path.is_file() else None
        return {"path": str(self.data_path), "sha256": self._data_sha256, "n_frames": len(self.frames),
                "split_counts": {s: len(v) for s, v in self.splits.items()}}
