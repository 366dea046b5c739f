"""The phonons panel: the dispersion and DOS of the current structure under the chosen
force model (computed in the background), and the mode card: a clicked mode, or the
newest Monte Carlo sample, animated."""

from __future__ import annotations

import math
import time

import holoviews as hv
import numpy as np
import panel as pn
import param

from app import plots
from app.catalogue import force_choices
from app.components.context import Context
from app.components.structure import MC_MAX_ATOMS, System
from mlepi_core.limits import check_supercell
from mlepi_core.structures import StructureError


class Phonons(pn.viewable.Viewer):
    """``curves`` holds what has been computed for the view, ``mode_view`` what the mode card shows."""

    ctx = param.ClassSelector(class_=Context, constant=True, precedence=-1)
    system = param.ClassSelector(class_=System, constant=True, precedence=-1)
    unit = param.Selector(objects=["cm1", "thz", "mev"], default="cm1", doc="phonon frequency unit")
    show_reference = param.Boolean(default=False, doc="overlay the reference phonon dispersion")
    mode = param.Tuple(default=None, length=2, allow_None=True,
                       doc="the selected phonon mode: (index of the q-point on the path, band)")
    mode_amplitude = param.Number(default=0.3, bounds=(0.01, 2.0), doc="largest displacement shown (A)")
    mode_speed = param.Number(default=1.0, bounds=(0.1, 5.0), doc="animation periods per second")
    status = param.String(default="", doc="what the phonon job did")
    failed = param.Boolean(default=False, doc="the structure has no phonons under the chosen force model")
    curves = param.Dict(default={}, doc="{label: (Dispersion, (freq_thz, dos))} shown", precedence=-1)
    mode_view = param.Dict(default=None, allow_None=True, precedence=-1,
                           doc="the animation: supercell, frames at unit amplitude, caption")

    def __init__(self, **params):
        super().__init__(**params)
        self._computed: dict = {}
        self._running: set = set()  # (labels, size, structure key) of the jobs under way
        self.future = None
        self.futures: list = []  # every phonon job not known to be finished (Session.wait)
        self.mode_future = None

    def supercell(self) -> int:
        """The force-constant supercell: the sampling one for primitive cells, else >= 12 A."""
        atoms = self.system.atoms
        if len(atoms) <= MC_MAX_ATOMS:
            return int(self.system.supercell)
        return max(1, math.ceil(12.0 / min(atoms.cell.lengths()[:2])))

    @param.depends("system.atoms", watch=True)
    def _new_structure(self):
        self._computed = {}
        self.param.update(curves={}, mode=None)
        self.compute()

    def no_forces(self) -> str:
        """Why this structure has no phonons here ("" when it has): an element the chosen force
        model does not know, or a force-constant cell over the phonon limit (``mlepi_core.limits``)."""
        why = self.system.knows_not(self.system.forces)
        if why:
            return (f"No phonons: {why}. The structure is drawn; `mlepi phonons FILE --forces "
                    f"module:Class` computes them with any ASE calculator.")
        try:
            check_supercell(len(self.system.atoms), self.supercell(), "phonons")
        except StructureError as err:
            return f"No phonons here: {err}. The structure is drawn."
        return ""

    @param.depends("system.forces", "system.supercell", "show_reference", watch=True)
    def compute(self):
        """Dispersion and DOS of the current structure in the background."""
        no_forces = self.no_forces()
        if no_forces:
            self.param.update(status=no_forces, failed=True, curves={})
            return
        job = (tuple(self.missing()), self.supercell(), self.system.key())
        self.curves = self.shown()
        if job[0] and job not in self._running:
            self._running.add(job)
            self.param.update(status="computing phonons ...", failed=False)
            self.future = self.ctx.submit(self._job, *job)
            self.futures = [f for f in self.futures if not f.done()] + [self.future]

    def missing(self) -> list[str]:
        """The force models this view shows whose phonons are not computed yet."""
        ask = [self.system.forces] + ([lab for lab in force_choices() if "reference" in lab
                                       and lab != self.system.forces] if self.show_reference else [])
        return [lab for lab in ask if (lab, self.supercell()) not in self._computed]

    def of(self, label: str, size: int, key) -> tuple:
        """(Dispersion, (freq_thz, dos)) of the current structure under force model ``label``
        on a ``size`` x ``size`` force-constant cell (shared by every tab through the cache)."""
        from mlepi_core.phonons import density_of_states, dispersion

        def make():
            _, phonon = self.system.lattice(label, size)
            return dispersion(phonon), density_of_states(phonon)

        return self.system.cached(("phonons", key, size, force_choices()[label]), make)

    def _job(self, labels, size, key):
        try:
            self._run_job(labels, size, key)
        finally:
            self._running.discard((labels, size, key))

    def _run_job(self, labels, size, key):
        try:
            t0 = time.perf_counter()
            for label in labels:
                result = self.of(label, size, key)
                if key != self.system.key():
                    return  # the structure changed meanwhile
                self._computed[(label, size)] = result
            update = {"status": f"phonons: {size}x{size} force constants, {time.perf_counter() - t0:.1f} s"}
        except Exception as err:
            if key != self.system.key() or size != self.supercell():
                return
            update = {"status": f"phonons failed: {type(err).__name__}: {err}", "failed": True}
        if size != self.supercell() or self.missing():
            update = {}  # a job for an earlier view, or one of two still running: the status stays
        self.ctx.dispatch(lambda: self.param.update(curves=self.shown(), **update))

    def shown(self) -> dict:
        """{label: (Dispersion, (freq_thz, dos))} of what has been computed for this view."""
        size = self.supercell()
        return {lab: v for (lab, s), v in self._computed.items() if s == size
                and (lab == self.system.forces or self.show_reference)}

    def comparison(self) -> str:
        """The shown force model against the reference, branch by branch where it matters: the
        Gamma modes below 150 cm^-1 one by one (relative errors) and the RMS of the branches
        below 150 cm^-1 beside the full RMS ("" unless both dispersions are shown)."""
        from mlepi_core.interlayer import LOW_FREQUENCY_CM1, compare_modes, gamma_modes, low_branch_rms
        from mlepi_core.units import THZ_TO_CM1

        reference = next((lab for lab in self.curves if lab != self.system.forces), None)
        if reference is None or self.system.forces not in self.curves:
            return ""
        ml, ref = self.curves[self.system.forces][0], self.curves[reference][0]
        size = self.supercell()
        (ml_f, _), (ref_f, chars) = (gamma_modes(self.system.lattice(lab, size)[1], np.inf)
                                     for lab in (self.system.forces, reference))
        n = int((ref_f < LOW_FREQUENCY_CM1).sum())
        rows = compare_modes(ml_f[:n], ref_f[:n], chars[:n])
        modes = ", ".join(f"{r['character']} {r['ml_cm1']:.1f} vs {r['reference_cm1']:.1f}"
                          + (f" ({100 * r['rel_error']:+.0f} %)" if r["rel_error"] is not None else "")
                          for r in rows if r["character"] != "acoustic")
        full = float(np.sqrt(np.mean((ml.freq_thz - ref.freq_thz) ** 2))) * THZ_TO_CM1
        return (f"Against the reference: RMS {full:.1f} cm⁻¹ over all branches, "
                f"**{low_branch_rms(ml.freq_thz, ref.freq_thz):.1f} cm⁻¹ below {LOW_FREQUENCY_CM1:.0f} cm⁻¹**; "
                f"Γ modes below {LOW_FREQUENCY_CM1:.0f} cm⁻¹ (cm⁻¹): {modes or 'none'}.")

    # --- one phonon mode, or one Monte Carlo sample, to watch ------------------------------
    @param.depends("mode", watch=True)
    def _mode_changed(self):
        self.mode_view = None
        if self.mode is not None:
            self.mode_future = self.ctx.submit(self._mode_job, tuple(self.mode), self.system.key())

    def _mode_job(self, mode: tuple[int, int], key) -> None:
        from mlepi_core.modes import mode_at, mode_frames

        try:
            no_forces = self.no_forces()
            if no_forces:
                raise ValueError(no_forces)
            # this view's phonons, computed here if no phonon job has (a link may name a mode first)
            disp = self.of(self.system.forces, self.supercell(), key)[0]
            iq, band = mode
            if not (0 <= iq < len(disp.q_frac) and 0 <= band < disp.freq_thz.shape[1]):
                raise ValueError(f"no mode {iq},{band}: the path has {len(disp.q_frac)} q-points and "
                                 f"{disp.freq_thz.shape[1]} bands")
            relaxed, phonon = self.system.lattice(self.system.forces, self.supercell())
            m = mode_at(phonon, relaxed, disp.q_frac[iq], band)
            atoms, frames = mode_frames(relaxed, m, amplitude_a=1.0, n_frames=24)
            view = {"kind": "mode", "text": m.describe(), "atoms": atoms, "frames": frames,
                    "frequency_thz": m.frequency_thz, "distance": float(disp.distances[iq]),
                    "character": m.character}
        except Exception as err:
            view = {"kind": "error", "text": f"mode {mode}: {type(err).__name__}: {err}"}
        if key == self.system.key() and tuple(self.mode or ()) == tuple(mode):
            self.ctx.dispatch(lambda: setattr(self, "mode_view", view))

    def select_mode_at(self, distance: float, frequency: float) -> tuple[int, int] | None:
        """The mode nearest a click on the dispersion (distance 1/A, frequency in ``unit``)."""
        from mlepi_core.phonons import convert_frequencies

        if self.system.forces not in self.curves:
            return None
        disp = self.curves[self.system.forces][0]
        iq = int(np.abs(disp.distances - distance).argmin())
        band = int(np.abs(convert_frequencies(disp.freq_thz[iq], self.unit) - frequency).argmin())
        self.mode = (iq, band)
        return self.mode

    def show_sample(self, engine, t: float, exaggeration: float = 10.0) -> None:
        """Animate the newest Monte Carlo sample of ``engine`` at ``t``, ``exaggeration`` times enlarged."""
        from mlepi_core.modes import displacement_frames

        index = int(max(engine.per_sample[t]))
        ideal = engine.sampler.ideal
        u = engine.sample_atoms(t, index).positions - ideal.positions
        frames = displacement_frames(ideal.positions, u, exaggeration=1.0, n_frames=24)
        rms = float(np.sqrt(np.mean(np.sum(u ** 2, axis=1))))
        self.mode_view = {"kind": "sample", "atoms": ideal, "frames": frames, "exaggeration": exaggeration,
                          "text": f"Monte Carlo sample {index} at {t:g} K: RMS displacement {rms:.4f} Å, "
                                  f"shown × {exaggeration:g}"}

    def animation_frame(self, frame: int) -> np.ndarray | None:
        """Positions (N, 3) of animation frame ``frame`` at the chosen amplitude."""
        view = self.mode_view
        if not view or "frames" not in view:
            return None
        frames, ideal = view["frames"], view["atoms"].positions
        scale = self.mode_amplitude if view["kind"] == "mode" else view["exaggeration"]
        return ideal + scale * (frames[frame % len(frames)] - ideal)

    def branch_layer_weight(self) -> np.ndarray | None:
        """(n_q, n_bands) weight of each phonon branch on layer 1 along the shown path, when
        the layer view is on and the structure has two layers or more."""
        from mlepi_core.modes import branch_layer_character

        forces, atoms = self.system.forces, self.system.atoms
        if not self.ctx.show_layers or forces not in self.curves or len(set(atoms.arrays["layer"])) < 2:
            return None
        disp = self.curves[forces][0]

        def make():
            relaxed, phonon = self.system.lattice(forces, self.supercell())
            return branch_layer_character(phonon, relaxed, disp.q_frac)[..., 0]
        return self.system.cached(("branch layers", self.system.key(), self.supercell(),
                                   force_choices()[forces]), make)

    # --- the view -----------------------------------------------------------------------
    def controls(self) -> list:
        w = pn.widgets
        return [pn.pane.Markdown("#### Phonons"),
                w.RadioButtonGroup.from_param(self.param.unit, name="Unit", button_type="light",
                                              options={"cm⁻¹": "cm1", "THz": "thz", "meV": "mev"},
                                              css_classes=["mlepi-unit"]),
                w.Checkbox.from_param(self.param.show_reference, name="overlay the reference dispersion",
                                      css_classes=["mlepi-reference-toggle"]),
                w.Checkbox.from_param(self.ctx.param.show_layers, name="layer-resolved views",
                                      css_classes=["mlepi-layers-toggle"]),
                w.FloatSlider.from_param(self.param.mode_amplitude, name="Mode amplitude (Å)", step=0.01),
                w.FloatSlider.from_param(self.param.mode_speed, name="Mode speed (periods/s)", step=0.1)]

    def __panel__(self):
        self.tap = hv.streams.Tap(x=None, y=None)
        self.tap.add_subscriber(lambda x=None, y=None: None if x is None or y is None else self.select_mode_at(x, y))
        self.note = pn.pane.Markdown(self.param.status, css_classes=["mlepi-phonon-status"])
        self.compare_note = pn.pane.Markdown(pn.bind(lambda *_: self.comparison(), self.param.curves),
                                             css_classes=["mlepi-phonon-compare"], styles={"font-size": "0.85em"})
        self._disp = pn.pane.HoloViews(self._dispersion(), css_classes=["mlepi-phonons"])
        self._dos = pn.pane.HoloViews(plots.phonon_dos({}, self.unit), sizing_mode="fixed", width=190)
        return pn.Card(self.note, pn.Row(self._disp, self._dos), self.compare_note, title="Phonons", collapsible=True,
                       width_policy="max")

    def _dispersion(self):
        view = self.mode_view or {}
        selected = (view["distance"], view["frequency_thz"]) if view.get("kind") == "mode" else None
        overlay = plots.phonon_dispersion(self.curves, self.unit, self.ctx.presentation, selected,
                                          self.branch_layer_weight(),
                                          empty="no phonons (see above)" if self.failed else "computing phonons ...")
        self.tap.source = overlay  # clicks on the new figure select modes
        return overlay

    @param.depends("curves", "unit", "ctx.presentation", "ctx.show_layers", "failed", watch=True)
    def _redraw(self):
        if hasattr(self, "_disp"):
            self._disp.object = self._dispersion()
            self._dos.object = plots.phonon_dos(self.curves, self.unit, self.ctx.presentation)

    @param.depends("mode_view", watch=True)
    def _mode_redraw(self):
        view = self.mode_view
        if view and view.get("kind") == "mode" or view is None:
            self._redraw()  # the selected mode is marked on the dispersion
        if view and "frames" in view and hasattr(self, "animation"):
            self.animation.show(view["atoms"], self.animation_frame(0), view["text"].split(":")[0])
            self.mode_text.object = f"**{view['text']}**"
        elif view and hasattr(self, "mode_text"):
            self.mode_text.object = view["text"]

    def mode_card(self, sample_button) -> pn.Card:
        """The mode card: a clicked mode's caption and animation, and ``sample_button``."""
        self.mode_text = pn.pane.Markdown("Click a point of the dispersion to see that mode move.",
                                          css_classes=["mlepi-mode-text"])
        self.animation = plots.ModeAnimation()
        self._clock, self._frame = time.perf_counter(), -1
        view = pn.Row(pn.pane.Bokeh(self.animation.top), pn.pane.Bokeh(self.animation.side),
                      css_classes=["mlepi-mode-view"])
        return pn.Card(self.mode_text, view, sample_button, title="Mode", collapsible=True, css_classes=["mlepi-mode"])

    def animate(self) -> None:
        """The animation's next frame (24 frames per period, ``mode_speed`` periods per second)."""
        view = self.mode_view
        if not view or "frames" not in view:
            return
        frame = int((time.perf_counter() - self._clock) * self.mode_speed * 24) % 24
        if frame != self._frame:
            self._frame = frame
            self.animation.move(self.animation_frame(frame))
