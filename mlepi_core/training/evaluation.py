"""A saved model's metrics on the splits of a data set, and the paper's Table II."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from .config import DTYPES, TrainConfig, plain, resolve_device
from .task import evaluate
from .trainer import TASKS


def evaluate_model(model_dir: str | Path, data: str | Path | None = None,
                   splits: Sequence[str] = ("val", "test"), batch_size: int = 16, device: str = "auto",
                   dtype: str = "float64", progress: bool = False, kind: str | None = "phonon") -> dict:
    """Metrics of a saved model on the splits of a data set: a phonon model on an extxyz file,
    an electron model on a DeepH data set (``data`` None: the one it was trained on).

    ``kind`` ("phonon", "electron", or None for whichever the folder holds) is required of
    the model (ModelFormatError otherwise). Splits the data set lacks are left out.
    """
    from ..models.io import load_model, read_metadata

    meta = read_metadata(model_dir, kind)
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
    from ..models.io import read_metadata

    if data is None:
        data = (read_metadata(model_dir).get("training_data") or {}).get("path") or "data/electron"
    for path in [model_dir, *(ablation or {}).values()]:
        read_metadata(path, "electron")
    kw = dict(data=data, splits=splits, batch_size=batch_size, device=device, dtype=dtype, progress=progress,
              kind="electron")
    table = evaluate_model(model_dir, **kw)
    table["units"] = dict(ELECTRON_METRIC_UNITS)
    table["ablation"] = {}
    for name, path in (ablation or {}).items():
        row = evaluate_model(path, **kw)
        row.pop("data", None)
        table["ablation"][name] = row
    return plain(table)
