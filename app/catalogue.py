"""What the dashboard offers: the structure gallery, the force and Hamiltonian models
(shipped networks first, then the references), their short names in links, and a
process-wide cache of the loaded models and prepared lattices that every tab shares."""

from __future__ import annotations

import threading
from pathlib import Path

from mlepi_core.shipped import shipped_models_dir
from mlepi_core.structures import twist_angle

MODELS = shipped_models_dir()

GALLERY = {
    "AB bilayer": "AB",
    "AA bilayer": "AA",
    "Monolayer": "monolayer",
    "SP bilayer (saddle point)": "SP",
    **{f"Twisted bilayer {twist_angle(m, n):.1f}°": f"tbg:{m},{n}" for m, n in ((1, 2), (2, 3), (3, 4), (4, 5))},
}
UPLOADED = "Uploaded file"


def force_choices() -> dict[str, str]:
    """Label -> model name for ``mlepi_core.model_names.force_model_from_name``; the shipped ML model first."""
    out = {}
    if (MODELS / "phonon" / "metadata.json").is_file():
        out["HedgeNet-Phonon (ML)"] = str(MODELS / "phonon")
    out["LCBOP + Kolmogorov-Crespi (reference)"] = "empirical"
    return out


GFN1_ML = "HedgeNet-Electron, GFN1-trained (ML)"
SK_ML = "HedgeNet-Electron, Slater-Koster-trained (ML)"
# The shipped networks' short names in links ("ml" stays the GFN1-trained electron model).
ML_CODES = {"phonon": "ml", "electron": "ml", "electron_sk": "ml-sk"}


def electron_choices() -> dict[str, str]:
    """Label -> model name for ``mlepi_core.model_names.hamiltonian_model_from_name``; ML first: the
    GFN1-trained network (s, p with overlap; the bilayer EPI demo's default, README) and the
    Slater-Koster-trained one (p_z, realistic interlayer coupling; twisted cells' default)."""
    out = {}
    if (MODELS / "electron" / "metadata.json").is_file():
        out[GFN1_ML] = str(MODELS / "electron")
    if (MODELS / "electron_sk" / "metadata.json").is_file():
        out[SK_ML] = str(MODELS / "electron_sk")
    out["GFN1-xTB (reference, slow)"] = "reference"
    out["Slater-Koster p_z (reference, fast; γ₁ 0.31 eV)"] = "slater-koster"
    return out


def default_electrons(structure_code: str | None, current: str) -> str:
    """The Hamiltonian model a gallery entry starts with: the Slater-Koster-trained network
    for twisted bilayers (GFN1 couples the layers too weakly for moire physics, DESIGN.md
    section 4); leaving a twisted entry returns from it to the first choice. Other changes
    keep ``current``."""
    choices = electron_choices()
    twisted = (structure_code or "").startswith("tbg:")
    if twisted and SK_ML in choices:
        return SK_ML
    if not twisted and current == SK_ML:
        return next(iter(choices))
    return current


def model_code(name: str) -> str:
    """A model's short name in links: "ml" (or "ml-sk") for a shipped network, else its
    reference name."""
    if Path(name).is_absolute():
        return ML_CODES.get(Path(name).name, Path(name).name)
    return {"reference": "gfn1"}.get(name, name)


def label_of(choices: dict, code: str) -> str:
    """The label in ``choices`` of the model whose short name is ``code``."""
    for label, name in choices.items():
        if model_code(name) == code:
            return label
    raise ValueError(f"no model {code!r} here (have {', '.join(model_code(v) for v in choices.values())})")



class Cache:
    """Process-wide, thread-safe memo of expensive read-only objects (models, lattices)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._items: dict = {}
        self._key_locks: dict = {}

    def get(self, key, make):
        with self._lock:
            if key in self._items:
                return self._items[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # one builder per key; other keys go on
            with self._lock:
                if key in self._items:
                    return self._items[key]
            value = make()
            with self._lock:
                self._items[key] = value
            return value


CACHE = Cache()


def force_model(name: str):
    from mlepi_core.model_names import force_model_from_name

    return CACHE.get(("forces", name), lambda: force_model_from_name(name))


def electron_model(name: str):
    from mlepi_core.model_names import hamiltonian_model_from_name

    return CACHE.get(("electrons", name), lambda: hamiltonian_model_from_name(name))
