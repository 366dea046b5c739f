"""The mlepi dashboard: widgets and plots over one ``Session`` per browser tab.

Served by ``mlepi dashboard`` (the README's main command) or ``panel serve app/main.py``.
The view holds no physics: it reads the Session's snapshot every half second from
the server's event loop and redraws what changed, so a running Monte Carlo job (in
the Session's own thread) never blocks the page.
"""

from __future__ import annotations

import asyncio
import io
import time
from urllib.parse import urlencode

import holoviews as hv
import panel as pn
from panel.theme.fast import Fast

from app import plots
from app.catalogue import electron_choices, force_choices
from app.formulas import math_markdown
from app.lesson import EXERCISES, LESSON
from app.upload import StructureUpload
from app.links import query_of
from app.viewmodel import Session
from mlepi_core.model_cards import model_card
from mlepi_core.structures import StructureError

PLOT_PERIOD_S = 1.0  # live Monte Carlo plots redraw at most this often during a run (the text every 0.5 s)

EQUATIONS = r"""
### How this is computed

**1. Phonons.** The force model (HedgeNet-Phonon, or the LCBOP + Kolmogorov-Crespi reference) gives
force constants of an $n \times n$ supercell by finite displacements (phonopy), hence frequencies
$\omega_\nu$ and eigenvectors $e_\nu$.

**2. Thermal samples.** Each Monte Carlo sample displaces atom $\kappa$ (mass $M_\kappa$) by

$$
u_\kappa = \sum_\nu \frac{e_{\nu\kappa}}{\sqrt{M_\kappa}}\, x_\nu,\qquad
\langle x_\nu^2\rangle = \frac{\hbar}{2\omega_\nu}\coth\frac{\hbar\omega_\nu}{2k_BT}
$$

with Gaussian $x_\nu$ (quantum harmonic amplitudes: at $T = 0$ the zero-point motion remains).

**3. Electrons.** HedgeNet-Electron (trained on GFN1-xTB or on the Slater-Koster $p_z$ model), or
either reference itself, gives the Hamiltonian and overlap blocks
$H_{ij}(R)$, $S_{ij}(R)$ of the displaced cell; the bands solve $H(k)\,c = E\,S(k)\,c$ and are
unfolded onto the primitive zone with spectral weights $W_n(k)$.

**4. The thermal average (the paper's Eq. 1-2).** An observable $O$, here the Fermi velocity
from the unfolded bands near $K$, is averaged over $m$ samples $y_j$:

$$
\langle O \rangle_T \simeq \frac{1}{m}\sum_{j=1}^{m} O(y_j),\qquad
\sigma_{\langle O\rangle} = \frac{s_O}{\sqrt{m}}
$$

so the error band of the running $\langle v_F\rangle$ narrows as $1/\sqrt{m}$. The averaged spectral
function is $\langle A(k,E)\rangle = \frac{1}{m}\sum_j \sum_n W_n(k; y_j)\,\delta(E - E_n(k; y_j))$
(Gaussian-broadened, 50 meV).

$v_F$ is $\hbar^{-1}$ times the mean slope $|dE/dq|$ of the four bands at $|k - K| = 0.06$ to $0.10$ Å⁻¹
(both valleys, six directions); the dashed lines show the static lattice.
"""

DISCONNECTED = ("Connection to the server lost. Every setting is in this page's link: reload it (or paste it) "
                "and press Run; samples are keyed by (seed, j), so a rerun reproduces the same numbers.")


class OfflineFast(Fast):
    """Panel's Fast design without its Google-fonts link: the page requests nothing
    outside this server (all JS/CSS is Panel's bundled copy). Panel resolves a design's
    bundled files by its class name, hence the name below."""

    _resources = {k: v for k, v in Fast._resources.items() if k != "font"}


OfflineFast.__name__ = "Fast"


hv.extension("bokeh", logo=False)
pn.extension("mathjax", notifications=True, sizing_mode="stretch_width",
             disconnect_notification=DISCONNECTED)


def _status_kind(status: str) -> str:
    return {"error": "danger", "done": "success", "stopped": "warning", "paused": "warning"}.get(status, "info")


def create_app(session: Session | None = None):
    """One dashboard page bound to ``session`` (a new Session per browser tab)."""
    vm = session or Session()
    w = pn.widgets
    structure = w.Select.from_param(vm.param.structure, name="Structure", css_classes=["mlepi-structure"])
    upload = StructureUpload(css_classes=["mlepi-upload"])
    supercell = w.Select.from_param(vm.param.supercell, name="Supercell (n x n)", css_classes=["mlepi-supercell"])
    forces = w.Select.from_param(vm.param.forces, name="Force model", css_classes=["mlepi-forces"])
    electrons = w.Select.from_param(vm.param.electrons, name="Hamiltonian model", css_classes=["mlepi-electrons"])
    card_style = {"font-size": "0.8em", "color": "#555"}
    force_card = pn.pane.Markdown(model_card(force_choices()[vm.forces]), styles=card_style,
                                  css_classes=["mlepi-force-card"])
    electron_card = pn.pane.Markdown(model_card(electron_choices()[vm.electrons]), styles=card_style,
                                     css_classes=["mlepi-electron-card"])

    @pn.depends(vm.param.forces, vm.param.electrons, watch=True)
    def _models_changed(*_):
        """The chosen models' cards: what each is and how well it matches its reference."""
        force_card.object = model_card(force_choices()[vm.forces])
        electron_card.object = model_card(electron_choices()[vm.electrons])
        vm.version += 1  # the status line says again what these models allow
    executor = w.RadioButtonGroup.from_param(vm.param.executor, name="Run on", button_type="light",
                                             css_classes=["mlepi-executor"])
    unit = w.RadioButtonGroup.from_param(vm.param.unit, name="Unit", button_type="light",
                                         options={"cm⁻¹": "cm1", "THz": "thz", "meV": "mev"},
                                         css_classes=["mlepi-unit"])
    show_ref = w.Checkbox.from_param(vm.param.show_reference, name="overlay the reference dispersion",
                                  css_classes=["mlepi-reference-toggle"])
    t_slider = w.FloatSlider.from_param(vm.param.temperature, name="Temperature (K)", start=0, end=1000,
                                        step=10)
    t_input = w.FloatInput.from_param(vm.param.temperature, name="Temperature (K), typed", start=0, end=3000,
                                      css_classes=["mlepi-temperature"])
    samples = w.IntInput.from_param(vm.param.samples, name="Samples", start=2, end=5000,
                                   css_classes=["mlepi-samples"])
    seed = w.IntInput.from_param(vm.param.seed, name="Seed", start=0, css_classes=["mlepi-seed"])
    antithetic = w.Checkbox.from_param(vm.param.antithetic, name="antithetic pairs (+u, −u)",
                                    css_classes=["mlepi-antithetic"])
    run_btn = w.Button(name="Run", button_type="primary", css_classes=["mlepi-run"])
    pause_btn = w.Button(name="Pause", button_type="warning", disabled=True, css_classes=["mlepi-pause"])
    stop_btn = w.Button(name="Stop", button_type="danger", disabled=True, css_classes=["mlepi-stop"])
    progress = w.Progress(value=0, max=1, bar_color="primary", sizing_mode="stretch_width", visible=False)
    progress_text = pn.pane.Markdown("", css_classes=["mlepi-progress"])

    def idle_hint() -> str:
        """What the status line says before a run: what to do, or why Monte Carlo is off here."""
        ok, why = vm.mc_allowed
        return ("Pick a temperature and a sample count, then **Run**: the Fermi velocity and the spectral "
                "function converge live under *Monte Carlo, live*." if ok else why)

    progress_text.object = idle_hint()
    alert = pn.pane.Alert("", alert_type="info", visible=False, css_classes=["mlepi-message"])
    summary = pn.pane.Markdown("", css_classes=["mlepi-summary"])
    phonon_note = pn.pane.Markdown("", css_classes=["mlepi-phonon-status"])

    presentation = w.Toggle.from_param(vm.param.presentation, name="Presentation mode", button_type="light",
                                       css_classes=["mlepi-presentation"])
    pin_btn = w.Button(name="Pin this run", button_type="light", css_classes=["mlepi-pin"])
    clear_btn = w.Button(name="Clear pins", button_type="light", css_classes=["mlepi-clear-pins"])
    amplitude = w.FloatSlider.from_param(vm.param.mode_amplitude, name="Mode amplitude (Å)", step=0.01)
    speed = w.FloatSlider.from_param(vm.param.mode_speed, name="Mode speed (periods/s)", step=0.1)
    sample_btn = w.Button(name="Show the newest sample (× 10)", button_type="light",
                          css_classes=["mlepi-show-sample"])
    mode_text = pn.pane.Markdown("Click a point of the dispersion to see that mode move.",
                                 css_classes=["mlepi-mode-text"])
    animation = plots.ModeAnimation()
    anim_pane = pn.Row(pn.pane.Bokeh(animation.top), pn.pane.Bokeh(animation.side), css_classes=["mlepi-mode-view"])
    layers_box = w.Checkbox.from_param(vm.param.show_layers, name="layer-resolved views",
                                       css_classes=["mlepi-layers-toggle"])
    check_btn = w.Button(name="Check this sample against the reference", button_type="light",
                         css_classes=["mlepi-check"])
    check_cancel = w.Button(name="Cancel check", button_type="light", css_classes=["mlepi-check-cancel"])
    check_text = pn.pane.Markdown("Run some samples, then check the newest against GFN1-xTB (6 x 6 or larger).",
                                  css_classes=["mlepi-check-text"])
    overlay = plots.ReferenceOverlay()
    overlay_pane = pn.Column(pn.pane.Bokeh(overlay.figure), css_classes=["mlepi-reference-overlay"])
    layer_figs = [plots.SpectralFunction(), plots.SpectralFunction()]
    for n, fig in enumerate(layer_figs):
        fig.figure.title.text = f"⟨A(k, E)⟩ on layer {n + 1} (Mulliken weights; the layers sum to the total)"
    layer_dos_fig = plots.LayerDOS()
    layers_card = pn.Card(pn.GridBox(*[pn.pane.Bokeh(f.figure) for f in layer_figs], pn.pane.Bokeh(layer_dos_fig.figure),
                                     ncols=2),
                          title="Layers", collapsible=True, visible=False, css_classes=["mlepi-layers"])
    html_dl = w.FileDownload(callback=lambda: io.StringIO(vm.export_html()), filename="mlepi_view.html",
                             label="Figures + numbers (HTML, opens offline)", button_type="light",
                             css_classes=["mlepi-html"])
    csv_dl = w.FileDownload(callback=lambda: io.StringIO(vm.results_csv()), filename="mlepi_samples.csv",
                            label="Samples (CSV)", button_type="light", css_classes=["mlepi-csv"])
    json_dl = w.FileDownload(callback=lambda: io.StringIO(vm.results_json()), filename="mlepi_results.json",
                             label="Results (JSON)", button_type="light", css_classes=["mlepi-json"])
    png_dl = w.FileDownload(callback=lambda: io.BytesIO(vm.figure_png()), filename="mlepi_figures.png",
                            label="Figures (PNG)", button_type="light", css_classes=["mlepi-png"])

    top, side = plots.structure_views(vm.atoms)
    top_pane = pn.pane.HoloViews(top, css_classes=["mlepi-top"])
    side_pane = pn.pane.HoloViews(side, css_classes=["mlepi-side"])
    tap = hv.streams.Tap(x=None, y=None)

    def on_tap(x=None, y=None):
        if x is not None and y is not None:
            vm.select_mode_at(x, y)

    tap.add_subscriber(on_tap)

    def dispersion_figure(curves):
        view = vm.mode_view() or {}
        selected = (view["distance"], view["frequency_thz"]) if view.get("kind") == "mode" else None
        overlay = plots.phonon_dispersion(curves, vm.unit, vm.presentation, selected, vm.branch_layer_weight(),
                                          empty="no phonons (see above)" if vm.phonon_failed else
                                          "computing phonons ...")
        tap.source = overlay  # clicks on the new figure select modes
        return overlay

    disp_pane = pn.pane.HoloViews(dispersion_figure({}), css_classes=["mlepi-phonons"])
    dos_pane = pn.pane.HoloViews(plots.phonon_dos({}, vm.unit, vm.presentation), sizing_mode="fixed", width=190)
    # live figures: a new batch replaces their data in place
    live = {"vf": plots.RunningFermiVelocity(), "vft": plots.FermiVelocityVsT(),
            "spectral": plots.SpectralFunction(), "near_k": plots.NearKBands()}
    vf_pane = pn.Column(pn.pane.Bokeh(live["vf"].figure), css_classes=["mlepi-vf"])
    vft_pane = pn.Column(pn.pane.Bokeh(live["vft"].figure), css_classes=["mlepi-vft"])
    spec_pane = pn.Column(pn.pane.Bokeh(live["spectral"].figure), css_classes=["mlepi-spectral"])
    nk_pane = pn.Column(pn.pane.Bokeh(live["near_k"].figure), css_classes=["mlepi-near-k"])
    counters = pn.pane.Markdown("", css_classes=["mlepi-counters"], styles={"color": "#888", "font-size": "0.8em"})

    async def on_upload(event):
        """Read the file off the event loop (a child process does the parsing), then show it."""
        if not event.new:
            return
        name, data = upload.filename, upload.decode(event.new)
        vm.message = f"Reading the file ({len(data) / 2**20:.1f} MiB) ..."  # the outcome names the file
        try:
            atoms = await asyncio.get_running_loop().run_in_executor(None, vm.read_upload, name, data)
        except StructureError as err:
            vm.message = str(err)
            return
        finally:
            del data
        vm.use_upload(name, atoms)

    def on_refused(event):
        if event.new:
            vm.message = f"Not sent: {event.new}"

    upload.param.watch(on_upload, "encoded")
    upload.param.watch(on_refused, "refused")

    def controls():
        """Buttons and the message follow the Session's status (at once after a click)."""
        busy = vm.busy
        run_btn.disabled = busy
        pause_btn.disabled = vm.status not in ("running", "paused")
        pause_btn.name = "Resume" if vm.status == "paused" else "Pause"
        stop_btn.disabled = not busy
        for widget in (structure, upload, supercell, forces, electrons, seed, antithetic, executor):
            widget.disabled = busy
        alert.object = vm.message or " "
        alert.alert_type = _status_kind(vm.status)
        alert.visible = bool(vm.message)

    def on_run(_):
        try:
            vm.run()
        except (ValueError, RuntimeError) as err:
            vm.message = str(err)
        controls()

    def on_pause(_):
        vm.resume() if vm.status == "paused" else vm.pause()
        controls()

    def on_stop(_):
        vm.stop()
        controls()

    def on_pin(_):
        try:
            vm.pin()
        except ValueError as err:
            vm.message = str(err)

    def on_sample(_):
        try:
            vm.show_sample(10.0)
        except ValueError as err:
            vm.message = str(err)

    def on_check(_):
        try:
            vm.check_reference()
        except (ValueError, RuntimeError) as err:
            vm.message = str(err)

    check_btn.on_click(on_check)
    check_cancel.on_click(lambda _: vm.cancel_reference_check())

    lesson_rows = []
    for number, exercise in enumerate(EXERCISES):
        button = w.Button(name="Compute", button_type="primary", css_classes=[f"mlepi-exercise-{number}"])
        button.on_click(lambda _, n=number: vm.solve_exercise(n))
        answer = math_markdown("", css_classes=[f"mlepi-answer-{number}"])
        lesson_rows.append((button, answer))

    def restore_from_url():
        """A pasted link: its query sets every control (before the first phonons are computed)."""
        if pn.state.location is not None and pn.state.location.search.strip("?"):
            vm.apply_query(query_of(pn.state.location.search))  # the link's own text, not Panel's numbers

    def write_url(*_):
        if pn.state.location is not None:
            pn.state.location.search = "?" + urlencode(vm.to_query())

    vm.param.watch(write_url, ["structure", "supercell", "forces", "electrons", "temperature", "samples", "seed",
                               "antithetic", "unit", "show_reference", "presentation", "mode", "show_layers"])

    pin_btn.on_click(on_pin)
    clear_btn.on_click(lambda _: vm.clear_pins())
    sample_btn.on_click(on_sample)

    run_btn.on_click(on_run)
    pause_btn.on_click(on_pause)
    stop_btn.on_click(on_stop)

    def phonon_key():
        """What the phonon figures show: redrawn (a new HoloViews plot, costly) only when it changes."""
        curves = vm.phonon_curves()
        return (tuple(curves), id(next(iter(curves.values()), None)), vm.unit, vm.presentation,
                id(vm.mode_view()), vm.show_layers, vm.phonon_failed)

    # Each redraw of a HoloViews pane makes Bokeh re-index every model of the page (~1 s on
    # a busy CPU): the first refresh keeps the figures the page was built with.
    seen = {"version": -1, "structure": None, "plotted": vm.atoms, "phonons": phonon_key(), "snap": None,
            "hist": None, "redraws": 0, "drawn": None, "drawn_at": -1e9}

    def refresh():
        """Runs on the server's event loop every 0.5 s: copy the Session's state to the page."""
        controls()
        phonon_note.object = vm.phonon_status
        if vm.version == seen["version"]:
            return
        seen["version"] = vm.version
        if not vm.snapshot() and not vm.busy:
            progress_text.object = idle_hint()  # the models may have changed what this structure allows
        if seen["structure"] is not vm.atoms:
            seen["structure"] = vm.atoms
            s = vm.summary()
            summary.object = (f"**{s['formula']}** · {s['atoms']} atoms · {s['layers']} layer(s) · "
                              f"stacking: {s['stacking']} · cell {s['cell']}")
            if seen["plotted"] is not vm.atoms:  # (the page opens with the views of its first structure)
                seen["plotted"] = vm.atoms
                top_pane.object, side_pane.object = plots.structure_views(vm.atoms)
        key = phonon_key()
        if key != seen["phonons"]:
            seen["phonons"] = key
            curves = vm.phonon_curves()
            disp_pane.object = dispersion_figure(curves)
            dos_pane.object = plots.phonon_dos(curves, vm.unit, vm.presentation)
        view = vm.mode_view()
        if view is not seen.get("mode"):
            seen["mode"] = view
            if view and "frames" in view:
                animation.show(view["atoms"], vm.animation_frame(0), view["text"].split(":")[0])
                mode_text.object = f"**{view['text']}**"
            elif view:
                mode_text.object = view["text"]
        check = vm.reference_result()
        if check is not seen.get("check"):
            seen["check"] = check
            check_text.object = check["text"] if check else check_text.object
            overlay.update(check.get("result") if check else None,
                           f"sample {check['sample']} at {check['T']:g} K: ML vs GFN1-xTB"
                           if check and check.get("result") else "")
        answers = vm.exercise_answers()
        for n, (_, answer) in enumerate(lesson_rows):
            answer.object = answers.get(n, "")
        snap = vm.snapshot()
        layers_card.visible = vm.show_layers
        if vm.show_layers and (snap.get("n_done"), snap.get("T")) != seen.get("layers_n"):
            spectra = vm.layer_spectra()
            if spectra is not None:
                seen["layers_n"] = (snap.get("n_done"), snap.get("T"))
                for n, fig in enumerate(layer_figs):
                    fig.update({**spectra, "spectral": spectra["layers"][n]})
        dos = vm.layer_dos_result()
        if dos is not seen.get("layer_dos"):
            seen["layer_dos"] = dos
            layer_dos_fig.update(dos)
        pins = vm.pins()
        if [id(p) for p in pins] != seen.get("pins"):
            seen["pins"] = [id(p) for p in pins]
            for name in ("vf", "vft", "spectral"):
                live[name].set_pins(pins)
        if snap.get("n_done") != (seen["snap"] or {}).get("n_done") or snap.get("T") != (seen["snap"] or {}).get("T") \
                or (not snap and seen["snap"]):
            seen["snap"] = snap
            progress.visible = bool(snap)
            if snap:
                progress.max = max(1, snap["n_total"])
                progress.value = min(snap["n_done"], snap["n_total"])
                rate, eta = snap["rate"], snap["eta_s"]
                progress_text.object = (
                    f"**{snap['n_done']} / {snap['n_total']}** samples at {snap['T']:g} K · "
                    + (f"{rate:.2f} samples/s · {eta:.0f} s left · " if rate == rate and eta == eta else "")
                    + f"⟨v_F⟩ = {snap['vf']:.4f} ± {snap['vf_se']:.4f} × 10⁶ m/s "
                    f"({100 * snap['rel_change']:+.2f} % vs static {snap['static']['vf']:.4f})")
            else:
                progress.value, progress_text.object = 0, idle_hint()
        # the live plots follow at most once per PLOT_PERIOD_S while sampling (each redraw costs
        # the browser a repaint of three figures), and at once when the run ends
        if seen["snap"] is not seen["drawn"] and (not vm.busy or time.perf_counter() - seen["drawn_at"] >= PLOT_PERIOD_S):
            seen["drawn"], seen["drawn_at"] = seen["snap"], time.perf_counter()
            seen["redraws"] += 1
            for name in ("vf", "spectral", "near_k"):
                live[name].update(seen["snap"] or {})
            counters.object = f"plot updates: {seen['redraws']}"
        elif seen["snap"] is not seen["drawn"]:
            seen["version"] = -1  # a redraw is due: come back on the next tick
        hist = vm.history()
        if hist != seen["hist"]:
            seen["hist"] = hist
            live["vft"].update(hist)

    @pn.depends(vm.param.unit, watch=True)
    def _unit_changed(_=None):
        vm.version += 1

    clock = {"t0": time.perf_counter(), "frame": -1}

    def animate():
        """Every 80 ms: the animation's next frame (24 frames per period, ``mode_speed`` periods/s)."""
        view = vm.mode_view()
        if not view or "frames" not in view:
            return
        frame = int((time.perf_counter() - clock["t0"]) * vm.mode_speed * 24) % 24
        if frame != clock["frame"]:
            clock["frame"] = frame
            animation.move(vm.animation_frame(frame))

    callback = pn.state.add_periodic_callback(refresh, period=500, start=False)
    animator = pn.state.add_periodic_callback(animate, period=80, start=False)
    pn.state.onload(lambda: (restore_from_url(), vm.compute_phonons(), refresh(), callback.start(),
                             animator.start()))
    if pn.state.curdoc is not None:
        pn.state.on_session_destroyed(lambda _ctx: vm.close())

    advanced = [seed, antithetic, executor, counters, csv_dl, json_dl, png_dl,  # hidden in presentation mode
                force_card, electron_card]
    run_on = pn.pane.Markdown("Run on (dask: the server's cluster)", styles={"font-size": "0.85em"})
    advanced.append(run_on)
    sidebar = [
        presentation,
        pn.pane.Markdown("#### Structure"), structure, upload, supercell,
        pn.pane.Markdown("#### Models"), forces, force_card, electrons, electron_card,
        pn.pane.Markdown("#### Phonons"), unit, show_ref, layers_box, amplitude, speed,
        pn.pane.Markdown("#### Monte Carlo"), t_slider, t_input, samples, seed, antithetic, run_on, executor,
        pn.Row(run_btn, pause_btn, stop_btn),
        pn.Row(pin_btn, clear_btn),
        pn.pane.Markdown("#### Results"), html_dl, csv_dl, json_dl, png_dl,
    ]
    equations = pn.Card(math_markdown(EQUATIONS, css_classes=["mlepi-equations"]), title="How this is computed",
                        collapsed=True)
    advanced.append(equations)
    mode_card = pn.Card(mode_text, anim_pane, sample_btn, title="Mode", collapsible=True,
                        css_classes=["mlepi-mode"])
    check_card = pn.Card(pn.Row(check_btn, check_cancel), check_text, overlay_pane,
                         title="Check a sample against the reference (Fig. 4d)", collapsible=True,
                         css_classes=["mlepi-reference-check"])
    explore = pn.Column(
        pn.Row(pn.Card(summary, top_pane, side_pane, title="Structure", collapsible=True, width_policy="max"),
               pn.Card(phonon_note, pn.Row(disp_pane, dos_pane), title="Phonons", collapsible=True,
                       width_policy="max")),
        mode_card,
        pn.Card(pn.GridBox(vf_pane, vft_pane, spec_pane, nk_pane, ncols=2), title="Monte Carlo, live",
                css_classes=["mlepi-monte-carlo"], collapsible=True),
        layers_card, check_card, equations)
    lesson = pn.Column(math_markdown(LESSON, css_classes=["mlepi-lesson"]),
                       *[pn.Column(math_markdown(f"**{i + 1}. {ex.title}** {ex.question}"), button, answer)
                         for i, (ex, (button, answer)) in enumerate(zip(EXERCISES, lesson_rows))],
                       css_classes=["mlepi-lesson-tab"])
    tabs = pn.Tabs(("Explore", explore), ("Lesson", lesson), dynamic=False, css_classes=["mlepi-tabs"])
    # The status line and progress are a layout root of their own (template items are), so that
    # their changes (pause, a new message) re-lay out only themselves, not every figure in the tabs.
    status = pn.Column(alert, progress, progress_text, counters, css_classes=["mlepi-status"])
    main = [status, tabs]
    texts = [alert, progress_text, summary, phonon_note, mode_text, check_text, counters]

    @pn.depends(vm.param.presentation, watch=True)
    def apply_presentation(on=None):
        """Presentation mode: large type, black on white, the colour-blind-safe palette, and only
        what a talk needs."""
        on = vm.presentation
        big = {"font-size": "1.6em", "color": "#000000"} if on else {}
        for pane in (*texts, explore, lesson):
            pane.styles = big
        for widget in advanced:
            widget.visible = not on
        for fig in (*[f.figure for f in live.values()], *[f.figure for f in layer_figs], overlay.figure,
                    layer_dos_fig.figure, animation.top, animation.side):
            plots.style_figure(fig, on)
        for fig in (live["spectral"], *layer_figs):
            fig.set_palette(on)
        vm.version += 1  # redraw the phonon figures with their presentation style

    apply_presentation()

    template = pn.template.FastListTemplate(
        title="mlepi: electron-phonon renormalisation of layered materials, live",
        # one Column: each template item is a Bokeh root, and every root re-indexes the whole page
        sidebar=[pn.Column(*sidebar, sizing_mode="stretch_width")], main=main, accent=plots.ACCENT,
        sidebar_width=330, theme_toggle=False,
        font="system-ui, Segoe UI, Helvetica, Arial, sans-serif", font_url="", design=OfflineFast)
    template.session = vm  # tests and scripts reach the view-model through the page
    return template


if __name__.startswith("bokeh"):  # `panel serve app/main.py`
    create_app().servable()
