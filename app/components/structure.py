"""The structure panel: which structure (the gallery or an uploaded file), the sampling
supercell and the force and Hamiltonian models, with the structure's views and the
models' cards."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import numpy as np
import panel as pn
import param

from app import plots
from app.catalogue import (CACHE, GALLERY, UPLOADED, default_electrons, electron_choices, force_choices,
                           model_elements)
from app.components.context import Context
from mlepi_core.isolated_load import load_isolated
from mlepi_core.model_cards import model_card
from mlepi_core.structures import StructureError, build, stacking_name

MC_MAX_ATOMS = 6  # Monte Carlo samples primitive cells: graphene, hBN or MoS2 monolayers and bilayers
STACKING_MAX_ATOMS = 2000  # stacking_name compares every atom pair of two layers


def structure_summary(atoms) -> dict:
    """Formula, atom count, layers and stacking of a structure (for the page)."""
    layers = np.asarray(atoms.arrays["layer"])
    n_layers = int(layers.max()) + 1
    a, b = atoms.cell.lengths()[:2]
    stacking = (stacking_name(atoms) if n_layers != 2 or len(atoms) <= STACKING_MAX_ATOMS
                or "twist_deg" in atoms.info else f"not classified (over {STACKING_MAX_ATOMS:,} atoms)")
    return {"formula": atoms.get_chemical_formula(), "atoms": len(atoms), "layers": n_layers,
            "stacking": stacking, "cell": f"{a:.3f} x {b:.3f} Å, {atoms.cell.angles()[2]:.0f}°"}


def read_upload(filename: str, data: bytes):
    """An uploaded file's structure (with its layers), read and validated in a child
    process with a time and a memory bound (``mlepi_core.isolated_load``), so that a
    reader that crashes or hangs costs one message; StructureError with that message
    otherwise. Safe to call off the server's event loop."""
    suffix = Path(filename or "upload").suffix or ".xyz"
    with tempfile.TemporaryDirectory(prefix="mlepi-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data or b"")
        try:
            return load_isolated(path)
        except StructureError as err:
            text = str(err).replace(str(path), str(filename)).replace(path.name, str(filename))
            raise StructureError(f"Could not use {filename!r}: {text}") from None


class System(pn.viewable.Viewer):
    """The system studied: ``atoms`` follows ``structure`` (or the last upload); the other
    panels depend on ``atoms`` and the models."""

    ctx = param.ClassSelector(class_=Context, constant=True, precedence=-1)
    structure = param.Selector(objects=list(GALLERY) + [UPLOADED], default="AB bilayer")
    supercell = param.Selector(objects=[3, 6, 9, 12], default=6,
                               doc="n x n sampling supercell (n a multiple of 3: K and K' fold together)")
    forces = param.Selector(objects=list(force_choices()), doc="force model for phonons and sampling")
    electrons = param.Selector(objects=list(electron_choices()), doc="Hamiltonian model for the bands")
    atoms = param.Parameter(doc="the current structure (ase.Atoms with layer labels)", precedence=-1)
    locked = param.Boolean(default=False, doc="a run is on: the system cannot change", precedence=-1)

    def __init__(self, **params):
        super().__init__(**params)
        self._uploaded = None
        self._switched: set[str] = set()  # the models _pick_models switched away from the first choice
        self.atoms = build(GALLERY[self.structure])

    def summary(self) -> dict:
        return structure_summary(self.atoms)

    @param.depends("structure", watch=True)
    def _structure_changed(self):
        if self.structure == UPLOADED:
            if self._uploaded is None:
                self.ctx.message = "Drop a structure file (any ASE format: CIF, POSCAR, extxyz, ...) to load it."
                return
            self.atoms = self._uploaded
        else:
            self.electrons = default_electrons(GALLERY[self.structure], self.electrons)
            self.atoms = build(GALLERY[self.structure])

    read_upload = staticmethod(read_upload)

    def use_upload(self, filename: str, atoms) -> None:
        """Show ``atoms`` (from ``read_upload``) as the uploaded structure."""
        self._uploaded = atoms
        self.ctx.message = f"Loaded {filename}: {atoms.get_chemical_formula()}, {len(atoms)} atoms."
        if self.structure == UPLOADED:
            self.atoms = atoms
        else:
            self.structure = UPLOADED

    def load_upload(self, filename: str, data: bytes) -> bool:
        """Load an uploaded file; on bad input set the message and keep the current structure."""
        try:
            atoms = read_upload(filename, data)
        except StructureError as err:
            self.ctx.message = str(err)
            return False
        self.use_upload(filename, atoms)
        return True

    @param.depends("atoms", watch=True)
    def _pick_models(self):
        """Models that know the structure's elements: a force or Hamiltonian model that lacks
        one gives way to the first choice that has them all (a reference when no network
        does); one switched that way is picked anew for the next structure (the first choice
        again when that knows it), while a model the user picked stays while it knows the
        elements."""
        for name, choices in (("forces", force_choices()), ("electrons", electron_choices())):
            knowing = [label for label in choices if not self.unknown_elements(label)]
            current, first = getattr(self, name), next(iter(choices))
            if knowing and (current not in knowing or name in self._switched):
                pick = knowing[0]
            else:
                continue
            if pick == first:
                self._switched.discard(name)
            else:
                self._switched.add(name)
            setattr(self, name, pick)

    def unknown_elements(self, label: str) -> list[str]:
        """Elements of the current structure that the force or Hamiltonian model ``label`` does not know."""
        name = {**force_choices(), **electron_choices()}[label]
        return sorted(set(self.atoms.get_chemical_symbols()) - model_elements(name))

    def knows_not(self, label: str) -> str:
        """"<model> knows C, not Mo, S" when model ``label`` lacks an element of this structure, else ""."""
        missing = self.unknown_elements(label)
        if not missing:
            return ""
        name = {**force_choices(), **electron_choices()}[label]
        return f"{label} knows {', '.join(sorted(model_elements(name)))}, not {', '.join(missing)}"

    @property
    def mc_allowed(self) -> tuple[bool, str]:
        why = self.knows_not(self.forces) or self.knows_not(self.electrons)
        if not why:
            from app.catalogue import electron_model
            from mlepi_core.seams import refusal

            model = electron_model(electron_choices()[self.electrons])
            why = refusal(model, self.atoms) or self._cell_too_small(model)
        if why:
            return False, f"No Monte Carlo for this structure: {why}."
        if len(self.atoms) > MC_MAX_ATOMS:
            return False, (f"Monte Carlo samples supercells of a primitive cell (v_F near K of graphene, the gap of "
                           f"hBN or MoS2; at most {MC_MAX_ATOMS} atoms); this cell has {len(self.atoms)}. "
                           f"Phonons are shown.")
        return True, ""

    def _cell_too_small(self, model) -> str:
        """Why the Monte Carlo supercell is too small for a reference that splits its matrices
        into pair blocks within a cutoff (GFN1-xTB: 8 A for MoS2), else ""."""
        cutoff = getattr(model, "cutoff", None)
        if cutoff is None:
            return ""
        from mlepi_core.reference.tblite_electrons import check_cell_for_cutoff
        from mlepi_core.structures import supercell

        try:
            check_cell_for_cutoff(supercell(self.atoms, self.supercell).cell, cutoff(self.atoms))
        except ValueError as err:
            return f"{err} (the supercell setting)"
        return ""

    def lattice(self, force_label: str, size: int):
        """(relaxed cell, phonopy object) of this structure under ``force_label`` on a ``size``-fold cell."""
        from app.catalogue import force_model
        from mlepi_core.engine import prepare_lattice

        atoms, name = self.atoms, force_choices()[force_label]
        return self.cached(("lattice", self.key(), size, name), lambda: prepare_lattice(atoms, force_model(name), size))

    def cached(self, key: tuple, make):
        """``CACHE.get``: results for an uploaded structure are charged to this tab and
        dropped when no tab uses them (``Cache.release``), the gallery's are kept."""
        upload = any(isinstance(part, tuple) and part[:1] == ("upload",) for part in key)
        return CACHE.get(key, make, owner=self.ctx.cache_owner if upload else None)

    def key(self):
        """What identifies the current structure in the shared cache."""
        if self.structure == UPLOADED:
            a = self.atoms
            return ("upload", a.get_chemical_formula(), np.round(a.positions, 6).tobytes(),
                    np.round(np.asarray(a.cell), 6).tobytes())
        return GALLERY[self.structure]

    # --- the view -----------------------------------------------------------------------
    def controls(self) -> list:
        """The sidebar's structure and model choices."""
        from app.upload import FileUpload  # a custom component: Bokeh exports then load its module shim

        w, card = pn.widgets, {"font-size": "0.8em", "color": "#555"}
        self._widgets = [
            w.Select.from_param(self.param.structure, name="Structure", css_classes=["mlepi-structure"]),
            FileUpload(css_classes=["mlepi-upload"]),
            w.Select.from_param(self.param.supercell, name="Supercell (n x n)", css_classes=["mlepi-supercell"]),
            w.Select.from_param(self.param.forces, name="Force model", css_classes=["mlepi-forces"]),
            w.Select.from_param(self.param.electrons, name="Hamiltonian model", css_classes=["mlepi-electrons"])]
        upload = self._widgets[1]
        upload.param.watch(self._on_upload, "encoded")
        upload.param.watch(self._on_refused, "refused")
        self.force_card = pn.pane.Markdown(pn.bind(lambda f: model_card(force_choices()[f]), self.param.forces),
                                           styles=card, css_classes=["mlepi-force-card"])
        self.electron_card = pn.pane.Markdown(pn.bind(lambda e: model_card(electron_choices()[e]),
                                                      self.param.electrons), styles=card,
                                              css_classes=["mlepi-electron-card"])
        self._lock_widgets()
        return [pn.pane.Markdown("#### Structure"), *self._widgets[:3], pn.pane.Markdown("#### Models"),
                self._widgets[3], self.force_card, self._widgets[4], self.electron_card]

    @param.depends("locked", watch=True)
    def _lock_widgets(self):
        for widget in getattr(self, "_widgets", ()):
            widget.disabled = self.locked

    async def _on_upload(self, event):
        """Read the file off the event loop (a child process does the parsing), then show it."""
        if not event.new:
            return
        upload = event.obj
        name, data = upload.filename, upload.decode(event.new)
        self.ctx.message = f"Reading the file ({len(data) / 2**20:.1f} MiB) ..."
        try:
            atoms = await asyncio.get_running_loop().run_in_executor(None, read_upload, name, data)
        except StructureError as err:
            self.ctx.message = str(err)
            return
        finally:
            del data
        self.use_upload(name, atoms)

    def _on_refused(self, event):
        if event.new:
            self.ctx.message = f"Not sent: {event.new}"

    def __panel__(self):
        self.summary_pane = pn.pane.Markdown(self._summary_text, css_classes=["mlepi-summary"])
        top, side = plots.structure_views(self.atoms)
        self._top = pn.pane.HoloViews(top, css_classes=["mlepi-top"])
        self._side = pn.pane.HoloViews(side, css_classes=["mlepi-side"])
        return pn.Card(self.summary_pane, self._top, self._side, title="Structure", collapsible=True,
                       width_policy="max")

    @param.depends("atoms")
    def _summary_text(self) -> str:
        s = self.summary()
        return (f"**{s['formula']}** · {s['atoms']} atoms · {s['layers']} layer(s) · "
                f"stacking: {s['stacking']} · cell {s['cell']}")

    @param.depends("atoms", watch=True)
    def _redraw(self):
        if hasattr(self, "_top"):
            self._top.object, self._side.object = plots.structure_views(self.atoms)
