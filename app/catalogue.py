"""What the dashboard offers: the structure gallery, the force and Hamiltonian models
(shipped networks first, then the references), their short names in links, and a
process-wide cache of the loaded models and prepared lattices that every tab shares."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from mlepi_core.shipped import shipped_models_dir
from mlepi_core.structures import twist_angle

MODELS = shipped_models_dir()

GALLERY = {
    "AB bilayer": "AB",
    "AA bilayer": "AA",
    "Monolayer": "monolayer",
    "SP bilayer (saddle point)": "SP",
    "AA′ hBN bilayer": "hBN",
    "Graphene on hBN": "GhBN",
    "2H MoS₂ bilayer": "MoS2",
    **{f"Twisted bilayer {twist_angle(m, n):.1f}°": f"tbg:{m},{n}" for m, n in ((1, 2), (2, 3), (3, 4), (4, 5))},
    f"Twisted hBN {twist_angle(1, 2):.1f}°": "thbn:1,2",
}
UPLOADED = "Uploaded file"


def force_choices() -> dict[str, str]:
    """Label -> model name for ``mlepi_core.model_names.force_model_from_name``; the shipped ML model first."""
    out = {}
    if (MODELS / "phonon" / "metadata.json").is_file():
        out["HedgeNet-Phonon (ML)"] = str(MODELS / "phonon")
    out["Empirical potentials (reference: LCBOP + KC; hBN, MoS₂: ExTeP, SW + ILP)"] = "empirical"
    return out


GFN1_ML = "HedgeNet-Electron, GFN1-trained (ML)"
SK_ML = "HedgeNet-Electron, Slater-Koster-trained (ML)"
HBN_ML = "HedgeNet-Electron, hBN, GFN1-trained (ML)"
# The shipped networks' short names in links ("ml" stays the GFN1-trained electron model).
ML_CODES = {"phonon": "ml", "electron": "ml", "electron_sk": "ml-sk", "electron_hbn": "ml-hbn"}


def electron_choices() -> dict[str, str]:
    """Label -> model name for ``mlepi_core.model_names.hamiltonian_model_from_name``; ML first: the
    GFN1-trained network (s, p with overlap; the bilayer EPI demo's default, docs/models.md#how-it-got-here) and the
    Slater-Koster-trained one (p_z, realistic interlayer coupling; twisted cells' default), then
    the hBN network (B, N: what an hBN bilayer picks, ``System._pick_models``)."""
    out = {}
    if (MODELS / "electron" / "metadata.json").is_file():
        out[GFN1_ML] = str(MODELS / "electron")
    if (MODELS / "electron_sk" / "metadata.json").is_file():
        out[SK_ML] = str(MODELS / "electron_sk")
    if (MODELS / "electron_hbn" / "metadata.json").is_file():
        out[HBN_ML] = str(MODELS / "electron_hbn")
    out["GFN1-xTB (reference, slow)"] = "reference"
    out["Slater-Koster p_z (reference, fast; γ₁ 0.31 eV)"] = "slater-koster"
    return out


def default_electrons(structure_code: str | None, current: str) -> str:
    """The Hamiltonian model a gallery entry starts with: the Slater-Koster-trained network
    for twisted bilayers (GFN1 couples the layers too weakly for moire physics,
    docs/physics.md#reference-solvers); leaving a twisted entry returns from it to the first choice. Other changes
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



def nbytes(value, depth: int = 4, _seen=None) -> int:
    """Bytes held by the arrays inside ``value`` (tuples, lists, dicts, objects' attributes,
    ``depth`` levels down): the size an entry of the cache is charged."""
    seen = set() if _seen is None else _seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        return value.nbytes if value.base is None else 0
    if hasattr(value, "element_size") and hasattr(value, "nelement"):  # a torch tensor
        return value.element_size() * value.nelement()
    if depth == 0 or isinstance(value, (str, bytes, int, float)):
        return 0
    if isinstance(value, dict):
        items = value.values()
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = value
    elif hasattr(value, "__dict__"):
        items = vars(value).values()
    else:
        return 0
    return sum(nbytes(v, depth - 1, seen) for v in items)


class Cache:
    """Process-wide, thread-safe memo of expensive read-only objects. Entries made without
    an owner (models, the gallery's lattices: a bounded set) stay; entries of an owner (a
    tab's uploaded structure) are charged their ``nbytes``, shared by every tab that asks
    for the same key, dropped least recently used first beyond ``budget_bytes``, and
    dropped as soon as no tab uses them (``release``)."""

    def __init__(self, budget_bytes: int = 512 * 2 ** 20):
        self.budget_bytes = budget_bytes
        self._lock = threading.Lock()
        self._items: dict = {}
        self._key_locks: dict = {}
        self._owned: OrderedDict = OrderedDict()  # key -> bytes, least recently used first
        self._users: dict = {}  # key -> owners using it
        self._retired: set = set()  # owners released for good (their late results are not kept)

    def get(self, key, make, owner=None):
        with self._lock:
            if key in self._items:
                self._use(key, owner)
                return self._items[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # one builder per key; other keys go on
            with self._lock:
                if key in self._items:
                    self._use(key, owner)
                    return self._items[key]
            value = make()
            size = nbytes(value) if owner is not None else 0
            with self._lock:
                self._key_locks.pop(key, None)
                if owner is None or owner not in self._retired:
                    self._items[key] = value
                    if owner is not None:
                        self._owned[key] = size
                        self._use(key, owner)
                        self._evict()
            return value

    def _use(self, key, owner):
        if key in self._owned:
            self._owned.move_to_end(key)
            if owner is not None and owner not in self._retired:
                self._users.setdefault(key, set()).add(owner)

    def _evict(self):
        while self._owned and sum(self._owned.values()) > self.budget_bytes:
            self._drop(next(iter(self._owned)))

    def _drop(self, key):
        self._items.pop(key, None)
        self._owned.pop(key, None)
        self._users.pop(key, None)

    def release(self, owner, retire: bool = False, keep=None) -> None:
        """``owner`` no longer uses its entries (but those whose key ``keep(key)`` holds);
        those no other owner uses are dropped. ``retire``: the owner is gone (a closed tab),
        later results of its jobs are not kept."""
        with self._lock:
            if retire:
                self._retired.add(owner)
            for key in list(self._users):
                if keep is not None and keep(key):
                    continue
                users = self._users[key]
                users.discard(owner)
                if not users:
                    self._drop(key)
            for key in [k for k in self._owned if k not in self._users]:
                self._drop(key)

    def owned_bytes(self) -> int:
        """Bytes charged to the entries of uploaded structures now held."""
        with self._lock:
            return sum(self._owned.values())

    def __len__(self) -> int:
        return len(self._items)


CACHE = Cache()


def model_elements(name: str) -> frozenset[str]:
    """The elements a force or Hamiltonian model knows, without loading a network (its
    ``metadata.json``); a reference is cheap to build and says itself."""
    if Path(name).is_absolute():
        return CACHE.get(("elements", name), lambda: frozenset(
            json.loads((Path(name) / "metadata.json").read_text())["elements"]))
    if name in force_choices().values():
        return frozenset(force_model(name).elements)
    return frozenset(electron_model(name).elements)


def force_model(name: str):
    from mlepi_core.model_names import force_model_from_name

    return CACHE.get(("forces", name), lambda: force_model_from_name(name))


def electron_model(name: str):
    from mlepi_core.model_names import hamiltonian_model_from_name

    return CACHE.get(("electrons", name), lambda: hamiltonian_model_from_name(name))
