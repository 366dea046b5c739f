"""Saved models: a folder with weights, metadata.json and the config that made it.

    model/
      weights.pt       state_dict of the network (torch.save)
      metadata.json    kind, architecture settings, elements, cutoffs (A), irreps, units,
                       training-data hash, metrics, code version, weights hash; for an
                       electron model also the orbital shells and order ("s,py,pz,px")
      config.yaml      the training config of the run (when there is one)

``load_model(path)`` is the one call that brings a model back: it checks the metadata
(format, kind, units, code version, weights hash, elements, cutoffs, irreps and layers
against the architecture, orbital order) before building the network, and returns it
behind its seam: a phonon model (kind "phonon") as a ForceModel (``MLForceModel``), an
electron model (kind "electron") as a HamiltonianModel (``MLHamiltonianModel``); both
refuse structures with elements the model does not know (StructureError). A folder is
written under a temporary name and renamed into place, so a reader never sees half a
model.
"""

from __future__ import annotations

import datetime
import json
import os
import pickle
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Mapping

import torch
import yaml

from .. import __version__
from ..files import file_sha256
from .electron import HedgeNetElectron, HedgeNetElectronConfig
from .electron_deployed import MLHamiltonianModel
from .electron_layers import float64_default
from .deployed import count_parameters
from .phonon import HedgeNetPhonon, HedgeNetPhononConfig, MLForceModel

MODEL_FORMAT = 1
WEIGHTS_FILE = "weights.pt"
METADATA_FILE = "metadata.json"
CONFIG_FILE = "config.yaml"
UNITS = {"length": "A", "energy": "eV", "forces": "eV/A"}  # a phonon model's
ELECTRON_UNITS = {"length": "A", "H": "eV", "S": "1"}
UNITS_BY_KIND = {"phonon": UNITS, "electron": ELECTRON_UNITS}
# In-memory orbital order of the blocks an electron model predicts (tblite's, mlepi_core.seams.Blocks)
ORBITAL_ORDER = "s,py,pz,px"
ARCHITECTURES = {"HedgeNetPhonon": (HedgeNetPhonon, HedgeNetPhononConfig, "phonon"),
                 "HedgeNetElectron": (HedgeNetElectron, HedgeNetElectronConfig, "electron")}


class ModelFormatError(ValueError):
    """A saved model folder that mlepi cannot load, with the reason."""


def _json_default(x):
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, (set, frozenset, tuple)):
        return list(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _learned_state(model) -> dict:
    """What a saved model needs: HedgeNet-Phonon's parameters and fitted buffers, or
    HedgeNet-Electron's persistent state (parameters and output normalisation; its
    Clebsch-Gordan tables are rebuilt from the architecture)."""
    if hasattr(model, "learned_state_dict"):
        return model.learned_state_dict()
    return model.state_dict()


def _load_learned_state(network, state: Mapping) -> None:
    if hasattr(network, "load_learned_state_dict"):
        network.load_learned_state_dict(state)
    else:
        network.load_state_dict(dict(state), strict=True)


def save_model(path: str | Path, model: HedgeNetPhonon | HedgeNetElectron, *,
               train_config: Mapping | None = None, metrics: Mapping | None = None,
               training_data: Mapping | None = None) -> Path:
    """Write ``model`` (weights in float64 for portability) to the folder ``path``; returns it."""
    path = Path(path)
    name = type(model).__name__
    if name not in ARCHITECTURES:
        raise TypeError(f"cannot save a {name}; known architectures: {sorted(ARCHITECTURES)}")
    cfg = model.config
    kind = ARCHITECTURES[name][2]
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        state = {k: (v.detach().to("cpu", torch.float64) if v.is_floating_point() else v.detach().cpu())
                 for k, v in _learned_state(model).items()}
        torch.save(state, tmp / WEIGHTS_FILE)
        if kind == "electron":
            specific = {"shells": list(cfg.shells), "orbital_order": ORBITAL_ORDER, "sh_lmax": cfg.sh_lmax,
                        "targets": list(cfg.targets), "block_irreps": str(model.block_map.irreps_out)}
        else:
            specific = {"max_ell": cfg.max_ell}
        meta = {
            "format": MODEL_FORMAT,
            "kind": kind,
            "architecture": name,
            "model_config": cfg.to_dict(),
            "elements": list(cfg.elements),
            "cutoffs_a": dict(cfg.cutoffs),
            "relations": list(cfg.cutoffs),
            "hidden_irreps": cfg.hidden_irreps,
            **specific,
            "num_layers": cfg.num_layers,
            **({"correlation": cfg.correlation} if kind == "phonon" else {}),
            "n_parameters": count_parameters(model),
            "units": dict(UNITS_BY_KIND[kind]),
            "training_data": dict(training_data) if training_data else None,
            "metrics": dict(metrics) if metrics else {},
            "code_version": __version__,
            "torch_version": torch.__version__,
            "e3nn_version": __import__("e3nn").__version__,
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "weights_sha256": file_sha256(tmp / WEIGHTS_FILE),
        }
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=1, default=_json_default))
        if train_config is not None:
            (tmp / CONFIG_FILE).write_text(yaml.safe_dump(json.loads(json.dumps(
                dict(train_config), default=_json_default)), sort_keys=False))
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_metadata(path: str | Path, kind: str | None = None) -> dict:
    """metadata.json of a saved model folder, checked for format, kind and units; ``kind``
    ("phonon" or "electron"), when given, is required of the model."""
    wanted = kind
    path = Path(path)
    if not path.is_dir():
        raise ModelFormatError(f"{path}: no such model folder")
    for f in (WEIGHTS_FILE, METADATA_FILE):
        if not (path / f).is_file():
            raise ModelFormatError(f"{path}: not a saved mlepi model (missing {f})")
    try:
        meta = json.loads((path / METADATA_FILE).read_text())
    except json.JSONDecodeError as err:
        raise ModelFormatError(f"{path / METADATA_FILE}: unreadable ({err})") from None
    if meta.get("format") != MODEL_FORMAT:
        raise ModelFormatError(f"{path}: model format {meta.get('format')!r}, this mlepi reads "
                               f"format {MODEL_FORMAT}")
    if meta.get("architecture") not in ARCHITECTURES:
        raise ModelFormatError(f"{path}: unknown architecture {meta.get('architecture')!r}")
    kind = ARCHITECTURES[meta["architecture"]][2]
    if meta.get("kind") != kind:
        raise ModelFormatError(f"{path}: kind {meta.get('kind')!r} does not fit architecture "
                               f"{meta['architecture']} ({kind!r})")
    if meta.get("units") != UNITS_BY_KIND[kind]:
        raise ModelFormatError(f"{path}: units {meta.get('units')} differ from mlepi's {UNITS_BY_KIND[kind]}")
    if wanted is not None and kind != wanted:
        article = "an" if wanted[0] in "aeiou" else "a"
        raise ModelFormatError(f"{path}: a saved {kind} model, not {article} {wanted} model")
    return meta


def _check_version(saved: str | None, path: Path) -> None:
    if saved is None:
        raise ModelFormatError(f"{path}: metadata has no code_version")
    major = lambda v: v.split(".")[0]  # noqa: E731
    if major(saved) != major(__version__):
        raise ModelFormatError(f"{path}: saved by mlepi {saved}, incompatible with {__version__}")
    if saved != __version__:
        warnings.warn(f"{path}: saved by mlepi {saved}, loading with {__version__}", stacklevel=3)


def load_model(path: str | Path, device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float64, max_batch_atoms: int | None = None,
               kind: str | None = None) -> MLForceModel | MLHamiltonianModel:
    """The model saved in the folder ``path``, validated, on ``device``/``dtype``: a phonon
    model as a ForceModel (``MLForceModel``), an electron model as a HamiltonianModel
    (``MLHamiltonianModel``). ``kind`` ("phonon" or "electron"), when given, is required.

    Float64 by default: phonons take finite differences of the forces, and small band
    splittings come from eigen-solves of H.
    """
    path = Path(path)
    meta = read_metadata(path, kind)
    _check_version(meta.get("code_version"), path)
    net_cls, cfg_cls, model_kind = ARCHITECTURES[meta["architecture"]]
    try:
        cfg = cfg_cls.from_dict(meta["model_config"])
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFormatError(f"{path}: bad model_config in metadata ({err})") from None
    if list(cfg.elements) != list(meta.get("elements", [])):
        raise ModelFormatError(f"{path}: elements {meta.get('elements')} disagree with the "
                               f"architecture's {list(cfg.elements)}")
    if {k: float(v) for k, v in meta.get("cutoffs_a", {}).items()} != dict(cfg.cutoffs):
        raise ModelFormatError(f"{path}: cutoffs {meta.get('cutoffs_a')} disagree with the "
                               f"architecture's {dict(cfg.cutoffs)}")
    for key in ("hidden_irreps", "num_layers"):
        if key in meta and meta[key] != getattr(cfg, key):
            raise ModelFormatError(f"{path}: {key} {meta[key]!r} disagrees with the architecture's "
                                   f"{getattr(cfg, key)!r}")
    if model_kind == "electron":
        if meta.get("orbital_order") != ORBITAL_ORDER:
            raise ModelFormatError(f"{path}: orbital order {meta.get('orbital_order')!r}, mlepi's blocks "
                                   f"are in {ORBITAL_ORDER!r}")
        if list(meta.get("shells", [])) != list(cfg.shells):
            raise ModelFormatError(f"{path}: shells {meta.get('shells')} disagree with the "
                                   f"architecture's {list(cfg.shells)}")
    weights = path / WEIGHTS_FILE
    if meta.get("weights_sha256") and file_sha256(weights) != meta["weights_sha256"]:
        raise ModelFormatError(f"{weights}: contents do not match the hash in metadata.json")
    try:
        if model_kind == "electron":
            with float64_default():  # Clebsch-Gordan tables exact, whatever dtype runs later
                network = net_cls(cfg)
        else:
            network = net_cls(cfg)
    except ValueError as err:
        raise ModelFormatError(f"{path}: bad model_config in metadata ({err})") from None
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise ModelFormatError(f"{weights}: not a torch weights file ({str(err).splitlines()[0]})") from None
    try:
        _load_learned_state(network, state)
    except RuntimeError as err:
        raise ModelFormatError(f"{path}: weights do not fit the architecture "
                               f"({str(err).splitlines()[0]})") from None
    if model_kind == "electron":
        return MLHamiltonianModel(network, metadata=meta, device=device, dtype=dtype,
                                  max_batch_atoms=max_batch_atoms)
    return MLForceModel(network, metadata=meta, device=device, dtype=dtype,
                        max_batch_atoms=max_batch_atoms)


def update_metrics(path: str | Path, metrics: Mapping) -> None:
    """Merge ``metrics`` into a saved model's metadata.json (atomically)."""
    path = Path(path)
    meta = read_metadata(path)
    meta["metrics"] = {**meta.get("metrics", {}), **dict(metrics)}
    tmp = path / f".{METADATA_FILE}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.write_text(json.dumps(meta, indent=1, default=_json_default))
    os.replace(tmp, path / METADATA_FILE)
