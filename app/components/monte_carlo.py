"""The Monte Carlo panel: the run's settings, Run / Pause / Stop, the running <v_F> with
its error band, <v_F>(T), the averaged spectral function, the bands near K, the status
line, and pinned runs overlaid on later ones."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import panel as pn
import param

from app import plots
from app.catalogue import GALLERY, UPLOADED, electron_choices, electron_model, force_choices, force_model
from app.components.context import Context
from app.components.structure import System
from app.dask_executor import EXECUTORS, DaskExecutor
from mlepi_core.run_store import RunStore
from mlepi_core.structures import dirac_bands

BATCH = 2  # samples per engine batch: frequent updates; results do not depend on it (keyed samples)
PLOT_PERIOD_S = 1.0  # the live plots redraw at most this often during a run (the status line every batch)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What the page shows of a run after a batch, copied out of the engine."""

    T: float
    n_done: int
    n_total: int
    count: np.ndarray  # 1 .. n_done
    running_mean: np.ndarray  # running <v_F> (1e6 m/s)
    running_se: np.ndarray  # its standard error
    vf: float
    vf_se: float
    gamma1: float
    gamma1_se: float
    static: dict  # the static lattice's vf, gamma1, and gap of a gapped material
    gap: float  # <E_g> (eV) of a gapped material, nan otherwise
    gap_se: float
    rel_change: float  # <v_F> / static - 1
    rate: float  # samples per second in this run (nan before the first)
    eta_s: float  # seconds left (nan when unknown)
    spectral: np.ndarray  # <A(k, E)> (n_k, n_E)
    n_spectral: int
    static_spectral: np.ndarray
    k_distances: np.ndarray
    energies: np.ndarray
    k_labels: list
    label_distances: np.ndarray
    near_k: dict  # the band profile near K (engine.band_profile)
    setup_s: float
    n_imaginary: int

    def as_dict(self) -> dict:
        """The fields by name (no copies), as the figures take them."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def observable_text(stats: dict, static: dict, brackets: bool = False) -> str:
    """The run's observable with its error: the gap of a gapped material, v_F of graphene."""
    lt, gt = ("⟨", "⟩") if brackets else ("", "")
    if "gap" in static:
        return (f"{lt}E_g{gt} = {stats['gap']:.4f} ± {stats['gap_se']:.4f} eV "
                f"({1000 * (stats['gap'] - static['gap']):+.1f} meV vs static {static['gap']:.4f} eV, {static['gap_at']})")
    return (f"{lt}v_F{gt} = {stats['vf']:.4f} ± {stats['vf_se']:.4f} × 10⁶ m/s "
            f"({100 * stats['vf_rel_change']:+.2f} % vs static {static['vf']:.4f})")


def _fields(snap: Snapshot | None) -> dict:
    return snap.as_dict() if snap is not None else {}


class MonteCarlo(pn.viewable.Viewer):
    """One tab's Monte Carlo run of the engine, in a background thread: ``status``,
    ``snapshot`` (after every batch), ``history`` (v_F(T)) and ``pins`` are what it shows."""

    ctx = param.ClassSelector(class_=Context, constant=True, precedence=-1)
    system = param.ClassSelector(class_=System, constant=True, precedence=-1)
    temperature = param.Number(default=300.0, bounds=(0.0, 3000.0), doc="K")
    samples = param.Integer(default=40, bounds=(2, 5000), doc="samples per temperature")
    seed = param.Integer(default=0, bounds=(0, 2 ** 31 - 1))
    antithetic = param.Boolean(default=False, doc="antithetic pairs (+u, -u)")
    sampling = param.Selector(objects=["mc", "zg", "zg-gh"], default="mc",
                              doc="mc: Monte Carlo draws; zg: special displacements (ZG pairs +u, -u), a few suffice; "
                                  "zg-gh: ZG with Gauss-Hermite amplitudes, exact to fourth order (blocks of 6)")
    estimator = param.Selector(objects=["plain", "curvature"], default="plain",
                               doc="plain: sample means; curvature: the same samples regressed on control variates "
                                   "from each mode's curvature (one solve per mode first), several times smaller errors")
    path_points = param.Selector(objects=[0, 15, 30, 60], default=30,
                                 doc="points per segment of the spectral map, one eigen-solve each (0: coarse)")
    executor = param.Selector(objects=list(EXECUTORS), default="local",
                              doc="local: in this server process; dask: sample batches on the server's Dask cluster")
    status = param.Selector(objects=["idle", "preparing", "running", "paused", "stopping", "stopped",
                                     "done", "error"], default="idle", constant=True)
    snapshot = param.ClassSelector(class_=Snapshot, default=None, allow_None=True, precedence=-1)
    history = param.List(default=[], doc="v_F(T) points of this structure and these models (Fig. 4f)",
                         precedence=-1)
    pins = param.List(default=[], doc="finished runs kept for comparison overlays", precedence=-1)
    view_query = param.Callable(default=dict, precedence=-1, doc="the view's link parameters (for a pin)")
    continue_from = param.Dict(default=None, allow_None=True, precedence=-1,
                               doc="an `mlepi mc` run this view continues: {checkpoint, identity, spectral_every, name}")

    def __init__(self, **params):
        super().__init__(**params)
        self.engine = None
        self._engine_key = None
        self.future = None
        self._points: dict[float, dict] = {}
        self._t_start = None

    @param.depends("system.atoms", watch=True)
    def _new_structure(self):
        self.stop()
        with self.ctx.lock:
            self.engine, self._engine_key = None, None
            self._points.clear()
        self.param.update(snapshot=None, history=[], continue_from=None)

    def settings(self):
        from mlepi_core.engine import MCSettings

        n_bands = dirac_bands(self.system.atoms)
        settings = MCSettings(temperatures=(float(self.temperature),), n_samples=int(self.samples),
                              seed=int(self.seed), batch_size=BATCH, antithetic=bool(self.antithetic),
                              sampling=self.sampling, estimator=self.estimator, path_points=int(self.path_points),
                              supercell=int(self.system.supercell), n_bands=n_bands)
        source = self.continue_from
        if source and self._identity(settings) == source["identity"]:  # its spectra came every n-th sample
            settings = dataclasses.replace(settings, spectral_every=source["spectral_every"])
        return settings

    def _set_status(self, status: str, message: str | None = None):
        with param.edit_constant(self):
            self.status = status
        self.system.locked = self.busy
        if message is not None:
            self.ctx.message = message

    def _report(self, status: str, message: str | None = None):
        """``_set_status`` from the run's thread, applied where the page may change."""
        self.ctx.dispatch(lambda: self._set_status(status, message))

    @property
    def busy(self) -> bool:
        return self.status in ("preparing", "running", "paused", "stopping")

    def run(self) -> None:
        """Start (or continue) sampling at the current temperature in the background."""
        if self.busy:
            raise RuntimeError(f"a run is already {self.status}")
        ok, why = self.system.mc_allowed
        if not ok:
            self._set_status("error", why)
            return
        settings = self.settings()  # validates (even sample count for antithetic, ...)
        self._set_status("preparing", "preparing the lattice, phonons and pristine bands ...")
        self.future = self.ctx.submit(self._run_job, settings)

    def _engine_for(self, settings):
        from mlepi_core.engine import MonteCarloEngine

        system = self.system
        key = (system.key(), settings.supercell, system.forces, system.electrons, settings.path_points)
        if self.engine is None or self._engine_key != key:
            lattice = system.lattice(system.forces, settings.supercell)
            engine = MonteCarloEngine(system.atoms, force_model(force_choices()[system.forces]),
                                      electron_model(electron_choices()[system.electrons]), settings, lattice=lattice)
            with self.ctx.lock:
                self.engine, self._engine_key = engine, key
                self._points.clear()
        engine = self.engine
        old = engine.settings
        if (old.seed, old.antithetic, old.sampling) != (settings.seed, settings.antithetic, settings.sampling):
            engine.reset()  # other random numbers: earlier samples no longer belong
            with self.ctx.lock:
                self._points.clear()
        engine.settings = settings
        engine.resume()
        return engine

    def _identity(self, settings) -> dict:
        """What makes this run's samples what they are (``RunStore``): structure, models, cell, seed."""
        import hashlib

        from mlepi_core.model_names import model_identity

        system, atoms = self.system, self.system.atoms
        if system.structure == UPLOADED:
            digest = hashlib.sha256(np.round(atoms.positions, 6).tobytes() + np.round(np.asarray(atoms.cell), 6)
                                    .tobytes() + atoms.numbers.tobytes()).hexdigest()[:16]
            structure = f"{atoms.get_chemical_formula()} upload {digest}"
        else:
            structure = GALLERY[system.structure]
        return {"structure": structure, "forces": model_identity(force_choices()[system.forces]),
                "electrons": model_identity(electron_choices()[system.electrons]), "supercell": settings.supercell,
                "seed": settings.seed, "antithetic": settings.antithetic, "n_bands": settings.n_bands,
                "path_points": settings.path_points,
                **({"sampling": settings.sampling} if settings.sampling != "mc" else {})}

    def _attach_run(self, engine, settings) -> tuple:
        """The run's folder in the runs directory; its finished samples join ``engine`` the first
        time (a run the server lost continues where its last batch ended)."""
        identity = self._identity(settings)
        folder = RunStore.folder(identity)
        if getattr(engine, "run_folder", None) != folder:
            engine.reset()
            done, where = RunStore.resume(engine, folder, identity), f"the run in {folder}"
            source = self.continue_from
            if not done and source and source["identity"] == identity:  # an `mlepi mc` run, continued here
                done, where = engine.load_checkpoint(source["checkpoint"]), f"{source['name']} (mlepi mc)"
            engine.run_folder = folder
            with self.ctx.lock:
                self._points = {t: self._point(engine, t) for t in sorted(engine.per_sample) if engine.per_sample[t]}
            engine.samples_from_disk = {t: len(v) for t, v in engine.per_sample.items()}
            if done:
                self._report("running", f"continuing {where}: {done} samples on disk")
        system = self.system
        return folder, identity, {"forces": force_choices()[system.forces], "electrons": electron_choices()[system.electrons]}

    def _point(self, engine, t: float) -> dict:
        stats = engine.statistics(t)
        return {"T": t, "vf": stats["vf"], "vf_se": stats["vf_se"], "samples": stats["samples"],
                "static": engine.static["vf"]}

    def _run_job(self, settings):
        try:
            engine = self._engine_for(settings)
            folder, identity, models = self._attach_run(engine, settings)
            if self.status == "stopping":
                self._report("stopped", "stopped")
                return
            if settings.estimator == "curvature" and not self._mode_curvature(engine):
                self._report("stopped", "stopped while measuring the mode curvatures; Run continues")
                return
            t = settings.temperatures[0]
            self._report("running", f"sampling {t:g} K ...")
            self._t_start = time.perf_counter()
            start_count = len(engine.per_sample.get(t, {}))
            self._publish(engine, t, start_count)
            label = (f"{self.system.summary()['formula']} {self.system.summary()['stacking']} · "
                     f"{self.system.electrons.split(' (')[0]} · seed {settings.seed}")
            for _ in self._batches(engine, settings, t):
                RunStore.save(engine, folder, identity, models, label, self.view_query())
                self._publish(engine, t, start_count)
            stats = engine.statistics(t)
            self._publish(engine, t, start_count)
            if stats["samples"] >= settings.n_samples:
                from_disk = getattr(engine, "samples_from_disk", {}).get(t, 0)
                self._report("done", f"{stats['samples']} samples at {t:g} K: " + observable_text(stats, engine.static)
                             + (f"; the run continued from {from_disk} samples on disk" if from_disk else ""))
            else:
                self._report("stopped", f"stopped after {stats['samples']} samples; Run continues")
        except Exception as err:
            self._report("error", f"the run failed: {type(err).__name__}: {err}")

    def _mode_curvature(self, engine) -> bool:
        """The curvature estimator's one solve per mode (``MonteCarloEngine.mode_curvature``),
        with its progress in the status line; False if the run was stopped meanwhile."""
        if engine._curvature is None:
            self._report("preparing", "mode curvatures: one solve per phonon mode of the supercell ...")
            engine.mode_curvature(progress=lambda done, n: self._report(
                "preparing", f"mode curvatures: {done} of {n} solves (once per structure and models)"))
        return engine._curvature is not None

    def _batches(self, engine, settings, t: float):
        """The run at ``t``, in this process or as tasks on the server's Dask cluster (the same
        samples and numbers: keyed random streams)."""
        if self.executor == "local":
            return engine.run(t)
        from mlepi_core.distributed import RunSpec, run_distributed

        self._report("running", f"sampling {t:g} K on {DaskExecutor.describe()} ...")
        system = self.system
        spec = RunSpec(system.atoms, force_choices()[system.forces], electron_choices()[system.electrons], settings)
        return run_distributed(engine, spec, DaskExecutor.client(), t)

    def _publish(self, engine, t: float, start_count: int):
        """Copy what the page shows out of the engine into ``snapshot`` and ``history``."""
        from mlepi_core.statistics import running_error

        idx, vf = engine.sample_values(t)
        units = engine.estimator_units(idx, vf)
        m = np.arange(1, len(units) + 1)
        spectrum, n_spectral = engine.spectral_mean(t)
        stats = engine.statistics(t)
        elapsed = time.perf_counter() - self._t_start
        new = len(idx) - start_count
        rate = new / elapsed if new > 0 and elapsed > 0 else float("nan")
        left = (engine.settings.n_samples - len(idx)) / rate if rate == rate and rate > 0 else float("nan")
        sp = engine.spectral
        snap = Snapshot(
            T=t, n_done=len(idx), n_total=engine.settings.n_samples, count=m,
            running_mean=np.cumsum(units) / m if len(units) else np.array([]), running_se=running_error(units),
            vf=stats["vf"], vf_se=stats["vf_se"], gamma1=stats["gamma1"], gamma1_se=stats["gamma1_se"],
            static=dict(engine.static), gap=stats.get("gap", float("nan")), gap_se=stats.get("gap_se", float("nan")),
            rel_change=stats["vf_rel_change"], rate=rate, eta_s=left,
            spectral=spectrum, n_spectral=n_spectral, static_spectral=engine.static_spectrum,
            k_distances=sp.distances, energies=sp.energies, k_labels=list(sp.labels),
            label_distances=sp.label_distances, near_k=engine.band_profile(t), setup_s=engine.setup_seconds,
            n_imaginary=engine.sampler.n_imaginary)
        with self.ctx.lock:
            if len(idx):
                self._points[t] = self._point(engine, t)
            history = [self._points[k] for k in sorted(self._points)]
        self.ctx.dispatch(lambda: self.param.update(snapshot=snap, history=history))

    def pause(self) -> None:
        if self.status == "running" and self.engine is not None:
            self.engine.pause()
            self._set_status("paused", "paused")

    @property
    def held(self) -> bool:
        """Paused, with every finished batch shown and no sample being computed."""
        return self.status == "paused" and self.engine is not None and self.engine.held

    def resume(self) -> None:
        if self.status == "paused" and self.engine is not None:
            self.engine.resume()
            self._set_status("running", "running")

    def stop(self) -> None:
        if self.busy:
            self._set_status("stopping")
            if self.engine is not None:
                self.engine.cancel()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the current run ends (tests, scripts)."""
        if self.future is not None:
            self.future.result(timeout=timeout)

    def quick_engine(self, temperatures: tuple[float, ...], n_samples: int, supercell: int = 3):
        """A small Monte Carlo engine of its own on this tab's structure and models (the
        lesson's exercises), leaving the tab's run alone."""
        from mlepi_core.engine import MonteCarloEngine

        ok, why = self.system.mc_allowed
        if not ok:
            raise ValueError(why)
        settings = dataclasses.replace(self.settings(), temperatures=tuple(temperatures),
                                       n_samples=int(n_samples), supercell=int(supercell), antithetic=False)
        system = self.system
        return MonteCarloEngine(system.atoms, force_model(force_choices()[system.forces]),
                                electron_model(electron_choices()[system.electrons]), settings,
                                lattice=system.lattice(system.forces, supercell))

    def pin(self, label: str | None = None) -> dict:
        """Keep the current run (running v_F with its error band, the spectral peaks, the
        v_F(T) points) to overlay on later runs. Returns the pinned record."""
        from mlepi_core.spectral import spectral_peaks

        snap = self.snapshot
        if snap is None or not snap.n_done:
            raise ValueError("nothing to pin yet: run some samples first")
        label = label or (f"{self.system.summary()['stacking']} · {snap.T:g} K · "
                          f"{self.system.electrons.split(' (')[0]} · {snap.n_done} samples")
        k, e, hwhm = spectral_peaks(snap.spectral, snap.energies, snap.k_distances)
        record = {"label": label, "T": snap.T, "vf": snap.vf, "vf_se": snap.vf_se, "n": snap.n_done,
                  "count": snap.count.copy(), "running_mean": snap.running_mean.copy(),
                  "running_se": np.asarray(snap.running_se).copy(), "peaks": {"k": k, "e": e, "hwhm": hwhm},
                  "history": list(self.history), "settings": self.view_query()}
        self.pins = [*self.pins, record]
        return record

    def clear_pins(self) -> None:
        self.pins = []

    def close(self) -> None:
        self.stop()
        self.engine, self.snapshot, self.pins = None, None, []

    # --- the view -----------------------------------------------------------------------
    def controls(self) -> list:
        """The sidebar's run settings and buttons."""
        w = pn.widgets
        self.run_btn = w.Button(name="Run", button_type="primary", css_classes=["mlepi-run"])
        self.pause_btn = w.Button(name="Pause", button_type="warning", disabled=True, css_classes=["mlepi-pause"])
        self.stop_btn = w.Button(name="Stop", button_type="danger", disabled=True, css_classes=["mlepi-stop"])
        self.run_btn.on_click(lambda _: self._act(self.run))
        self.pause_btn.on_click(lambda _: self._act(self.resume if self.status == "paused" else self.pause))
        self.stop_btn.on_click(lambda _: self._act(self.stop))
        pin, clear = (w.Button(name="Pin this run", button_type="light", css_classes=["mlepi-pin"]),
                      w.Button(name="Clear pins", button_type="light", css_classes=["mlepi-clear-pins"]))
        pin.on_click(lambda _: self._act(self.pin))
        clear.on_click(lambda _: self.clear_pins())
        self.seed_input = w.IntInput.from_param(self.param.seed, name="Seed", start=0, css_classes=["mlepi-seed"])
        self.antithetic_box = w.Checkbox.from_param(self.param.antithetic, name="antithetic pairs (+u, −u)",
                                                    css_classes=["mlepi-antithetic"])
        self.sampling_buttons = w.RadioButtonGroup.from_param(
            self.param.sampling, name="Sampling", button_type="light",
            options={"Monte Carlo": "mc", "special displacements (ZG)": "zg",
                     "ZG, 4th order (Gauss–Hermite)": "zg-gh"}, css_classes=["mlepi-sampling"])
        self.estimator_buttons = w.RadioButtonGroup.from_param(
            self.param.estimator, name="Estimator", button_type="light",
            options={"plain mean": "plain", "curvature control variates": "curvature"},
            css_classes=["mlepi-estimator"])
        self.path_select = w.Select.from_param(self.param.path_points, name="Spectral map: points per segment",
                                               css_classes=["mlepi-path-points"])
        self.executor_buttons = w.RadioButtonGroup.from_param(self.param.executor, name="Run on",
                                                              button_type="light", css_classes=["mlepi-executor"])
        self.run_on = pn.pane.Markdown("Run on (dask: the server's cluster)", styles={"font-size": "0.85em"})
        self._buttons()
        return [pn.pane.Markdown("#### Monte Carlo"),
                w.FloatSlider.from_param(self.param.temperature, name="Temperature (K)", start=0, end=1000, step=10),
                w.FloatInput.from_param(self.param.temperature, name="Temperature (K), typed", start=0, end=3000,
                                        css_classes=["mlepi-temperature"]),
                w.IntInput.from_param(self.param.samples, name="Samples", start=2, end=5000,
                                      css_classes=["mlepi-samples"]),
                self.sampling_buttons, self.estimator_buttons, self.seed_input, self.antithetic_box,
                self.path_select, self.run_on,
                self.executor_buttons,
                pn.Row(self.run_btn, self.pause_btn, self.stop_btn), pn.Row(pin, clear)]

    def _act(self, action) -> None:
        """A button's action; a refusal is shown in the status line."""
        try:
            action()
        except (ValueError, RuntimeError) as err:
            self.ctx.message = str(err)

    @param.depends("status", watch=True)
    def _buttons(self):
        """Buttons follow the status (at once after a click)."""
        if not hasattr(self, "run_btn"):
            return
        busy = self.busy
        self.run_btn.disabled = busy
        self.pause_btn.disabled = self.status not in ("running", "paused")
        self.pause_btn.name = "Resume" if self.status == "paused" else "Pause"
        self.stop_btn.disabled = not busy
        for widget in (self.seed_input, self.antithetic_box, self.executor_buttons, self.sampling_buttons,
                       self.estimator_buttons, self.path_select):
            widget.disabled = busy

    def status_panel(self) -> pn.Column:
        """The status line: the message, the progress bar and line, the plot counter."""
        kind = {"error": "danger", "done": "success", "stopped": "warning", "paused": "warning"}
        alert = pn.pane.Alert(pn.bind(lambda m: m or " ", self.ctx.param.message),
                              alert_type=pn.bind(lambda s: kind.get(s, "info"), self.param.status),
                              visible=pn.bind(bool, self.ctx.param.message), css_classes=["mlepi-message"])
        self.progress = pn.widgets.Progress(value=0, max=1, bar_color="primary", sizing_mode="stretch_width",
                                            visible=pn.bind(lambda s: s is not None, self.param.snapshot))
        self.progress_text = pn.pane.Markdown(self._progress_text, css_classes=["mlepi-progress"])
        self.counters = pn.pane.Markdown("", css_classes=["mlepi-counters"], styles={"color": "#888", "font-size": "0.8em"})
        self.texts = [alert, self.progress_text, self.counters]
        return pn.Column(alert, self.progress, self.progress_text, self.counters, css_classes=["mlepi-status"])

    @param.depends("snapshot", "system.atoms", "system.forces", "system.electrons")
    def _progress_text(self) -> str:
        snap = self.snapshot
        if snap is None:
            ok, why = self.system.mc_allowed
            return ("Pick a temperature and a sample count, then **Run**: the Fermi velocity and the spectral "
                    "function converge live under *Monte Carlo, live*." if ok else why)
        self.progress.param.update(max=max(1, snap.n_total), value=min(snap.n_done, snap.n_total))
        rate, eta = snap.rate, snap.eta_s
        stats = {"vf": snap.vf, "vf_se": snap.vf_se, "vf_rel_change": snap.rel_change, "gap": snap.gap,
                 "gap_se": snap.gap_se}
        return (f"**{snap.n_done} / {snap.n_total}** samples at {snap.T:g} K · "
                + (f"{rate:.2f} samples/s · {eta:.0f} s left · " if rate == rate and eta == eta else "")
                + observable_text(stats, snap.static, brackets=True))

    def __panel__(self):
        self.live = {"vf": plots.RunningFermiVelocity(), "vft": plots.FermiVelocityVsT(),
                     "spectral": plots.SpectralFunction(), "near_k": plots.NearKBands()}
        self._drawn, self._drawn_at, self._redraws, self._due = None, -1e9, 0, False
        panes = [pn.Column(pn.pane.Bokeh(self.live[name].figure), css_classes=[f"mlepi-{css}"])
                 for name, css in (("vf", "vf"), ("vft", "vft"), ("spectral", "spectral"), ("near_k", "near-k"))]
        return pn.Card(pn.GridBox(*panes, ncols=2), title="Monte Carlo, live", css_classes=["mlepi-monte-carlo"],
                       collapsible=True)

    @param.depends("snapshot", "status", watch=True)
    def _draw(self):
        """The live plots follow the snapshot at most once per PLOT_PERIOD_S while sampling
        (each redraw costs the browser a repaint of four figures), and at once when the run ends."""
        if not hasattr(self, "live") or self.snapshot is self._drawn:
            return
        wait = self._drawn_at + PLOT_PERIOD_S - time.perf_counter()
        if self.busy and wait > 0:
            if not self._due and pn.state.curdoc is not None:
                self._due = True
                pn.state.curdoc.add_timeout_callback(self._draw_due, int(1000 * wait) + 1)
            return
        self._drawn, self._drawn_at, self._redraws = self.snapshot, time.perf_counter(), self._redraws + 1
        for name in ("vf", "spectral", "near_k"):
            self.live[name].update(_fields(self.snapshot))
        self.live["vft"].update(self.history)
        self.counters.object = f"plot updates: {self._redraws}"

    def _draw_due(self):
        self._due = False
        self._draw()

    @param.depends("history", watch=True)
    def _draw_history(self):
        """v_F(T) when the history changes outside a run (during one, ``_draw`` paces it)."""
        if hasattr(self, "live") and not self.busy:
            self.live["vft"].update(self.history)

    @param.depends("pins", watch=True)
    def _draw_pins(self):
        if hasattr(self, "live"):
            for name in ("vf", "vft", "spectral"):
                self.live[name].set_pins(self.pins)
