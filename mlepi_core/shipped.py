"""The trained models mlepi ships, found as package data wherever mlepi is installed.

``shipped_model("phonon")`` is the folder of the shipped HedgeNet-Phonon; the names are
the folders of ``mlepi_core/shipped_models/`` (``phonon``, ``electron``, ``electron_sk``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def shipped_models_dir() -> Path:
    """The folder that holds the shipped models (inside the installed package)."""
    return Path(str(files("mlepi_core") / "shipped_models"))


def shipped_model_names() -> list[str]:
    """Names of the shipped models, e.g. ["electron", "electron_sk", "phonon"]."""
    root = shipped_models_dir()
    return sorted(p.name for p in root.iterdir() if (p / "metadata.json").is_file())


def shipped_model(name: str) -> Path:
    """The folder of the shipped model ``name``; KeyError naming the choices if unknown."""
    path = shipped_models_dir() / name
    if not (path / "metadata.json").is_file():
        raise KeyError(f"no shipped model {name!r} (shipped: {', '.join(shipped_model_names())})")
    return path


def resolve_model_name(name: str) -> str:
    """A model name as the model registry takes it: a shipped model's name becomes its folder,
    anything else (a folder, a reference's name) is returned unchanged."""
    if Path(name).is_dir():
        return name
    path = shipped_models_dir() / name
    return str(path) if (path / "metadata.json").is_file() else name
