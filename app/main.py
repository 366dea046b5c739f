"""The mlepi dashboard: widgets and plots over one ``Session`` per browser tab.

Served by ``mlepi dashboard`` (the README's main command) or ``panel serve app/main.py``.
The view holds no physics: it reads the Session's snapshot every half second from
the server's event loop and redraws what changed, so a running Monte Carlo job (in
the Session's own thread) never blocks the page.
"""

from __future__ import annotations

import io

import holoviews as hv
import panel as pn
from panel.theme.fast import Fast

from app import plots
from app.viewmodel import Session

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

**3. Electrons.** HedgeNet-Electron (or GFN1-xTB) gives the Hamiltonian and overlap blocks
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

class OfflineFast(Fast):
    """Panel's Fast design without its Google-fonts link: the page requests nothing
    outside this server (all JS/CSS is Panel's bundled copy). Panel resolves a design's
    bundled files by its class name, hence the name below."""

    _resources = {k: v for k, v in Fast._resources.items() if k != "font"}


OfflineFast.__name__ = "Fast"


hv.extension("bokeh", logo=False)
pn.extension("katex", notifications=True, sizing_mode="stretch_width")


def _status_kind(status: str) -> str:
    return {"error": "danger", "done": "success", "stopped": "warning", "paused": "warning"}.get(status, "info")


def create_app(session: Session | None = None):
    """One dashboard page bound to ``session`` (a new Session per browser tab)."""
    vm = session or Session()
    w = pn.widgets
    structure = w.Select.from_param(vm.param.structure, name="Structure", css_classes=["mlepi-structure"])
    upload = w.FileInput(accept=".xyz,.extxyz,.cif,.vasp,.poscar,POSCAR,CONTCAR,.json,.traj,.in,.pdb,.xsf",
                         name="Upload a structure", multiple=False, css_classes=["mlepi-upload"])
    supercell = w.Select.from_param(vm.param.supercell, name="Supercell (n x n)", css_classes=["mlepi-supercell"])
    forces = w.Select.from_param(vm.param.forces, name="Force model")
    electrons = w.Select.from_param(vm.param.electrons, name="Hamiltonian model")
    executor = w.RadioButtonGroup.from_param(vm.param.executor, name="Run on", button_type="light",
                                             css_classes=["mlepi-executor"])
    unit = w.RadioButtonGroup.from_param(vm.param.unit, name="Unit", button_type="light",
                                         options={"cm⁻¹": "cm1", "THz": "thz", "meV": "mev"},
                                         css_classes=["mlepi-unit"])
    show_ref = w.Checkbox.from_param(vm.param.show_reference, name="overlay the reference dispersion")
    t_slider = w.FloatSlider.from_param(vm.param.temperature, name="Temperature (K)", start=0, end=1000,
                                        step=10)
    t_input = w.FloatInput.from_param(vm.param.temperature, name="Temperature (K), typed", start=0, end=3000,
                                      css_classes=["mlepi-temperature"])
    samples = w.IntInput.from_param(vm.param.samples, name="Samples", start=2, end=5000,
                                   css_classes=["mlepi-samples"])
    seed = w.IntInput.from_param(vm.param.seed, name="Seed", start=0, css_classes=["mlepi-seed"])
    antithetic = w.Checkbox.from_param(vm.param.antithetic, name="antithetic pairs (+u, −u)")
    run_btn = w.Button(name="Run", button_type="primary", css_classes=["mlepi-run"])
    pause_btn = w.Button(name="Pause", button_type="warning", disabled=True, css_classes=["mlepi-pause"])
    stop_btn = w.Button(name="Stop", button_type="danger", disabled=True, css_classes=["mlepi-stop"])
    progress = w.Progress(value=0, max=1, bar_color="primary", sizing_mode="stretch_width", visible=False)
    progress_text = pn.pane.Markdown("", css_classes=["mlepi-progress"])
    alert = pn.pane.Alert("", alert_type="info", visible=False, css_classes=["mlepi-message"])
    summary = pn.pane.Markdown("", css_classes=["mlepi-summary"])
    phonon_note = pn.pane.Markdown("", css_classes=["mlepi-phonon-status"])

    csv_dl = w.FileDownload(callback=lambda: io.StringIO(vm.results_csv()), filename="mlepi_samples.csv",
                            label="Samples (CSV)", button_type="light", css_classes=["mlepi-csv"])
    json_dl = w.FileDownload(callback=lambda: io.StringIO(vm.results_json()), filename="mlepi_results.json",
                             label="Results (JSON)", button_type="light", css_classes=["mlepi-json"])
    png_dl = w.FileDownload(callback=lambda: io.BytesIO(vm.figure_png()), filename="mlepi_figures.png",
                            label="Figures (PNG)", button_type="light", css_classes=["mlepi-png"])

    top, side = plots.structure_views(vm.atoms)
    top_pane = pn.pane.HoloViews(top, css_classes=["mlepi-top"])
    side_pane = pn.pane.HoloViews(side, css_classes=["mlepi-side"])
    disp_pane = pn.pane.HoloViews(plots.phonon_dispersion({}, vm.unit), css_classes=["mlepi-phonons"])
    dos_pane = pn.pane.HoloViews(plots.phonon_dos({}, vm.unit), sizing_mode="fixed", width=190)
    # live figures: a new batch replaces their data in place
    live = {"vf": plots.RunningFermiVelocity(), "vft": plots.FermiVelocityVsT(),
            "spectral": plots.SpectralFunction(), "near_k": plots.NearKBands()}
    vf_pane = pn.Column(pn.pane.Bokeh(live["vf"].figure), css_classes=["mlepi-vf"])
    vft_pane = pn.Column(pn.pane.Bokeh(live["vft"].figure), css_classes=["mlepi-vft"])
    spec_pane = pn.Column(pn.pane.Bokeh(live["spectral"].figure), css_classes=["mlepi-spectral"])
    nk_pane = pn.Column(pn.pane.Bokeh(live["near_k"].figure), css_classes=["mlepi-near-k"])
    counters = pn.pane.Markdown("", css_classes=["mlepi-counters"], styles={"color": "#888", "font-size": "0.8em"})

    def on_upload(event):
        if upload.value is not None:
            vm.load_upload(upload.filename, upload.value)

    upload.param.watch(on_upload, "value")

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

    run_btn.on_click(on_run)
    pause_btn.on_click(on_pause)
    stop_btn.on_click(on_stop)

    seen = {"version": -1, "structure": None, "phonons": None, "snap": None, "hist": None, "redraws": 0}

    def refresh():
        """Runs on the server's event loop every 0.5 s: copy the Session's state to the page."""
        controls()
        phonon_note.object = vm.phonon_status
        if vm.version == seen["version"]:
            return
        seen["version"] = vm.version
        if seen["structure"] is not vm.atoms:
            seen["structure"] = vm.atoms
            s = vm.summary()
            summary.object = (f"**{s['formula']}** · {s['atoms']} atoms · {s['layers']} layer(s) · "
                              f"stacking: {s['stacking']} · cell {s['cell']}")
            top_pane.object, side_pane.object = plots.structure_views(vm.atoms)
        curves = vm.phonon_curves()
        key = (tuple(curves), id(next(iter(curves.values()), None)), vm.unit)
        if key != seen["phonons"]:
            seen["phonons"] = key
            disp_pane.object = plots.phonon_dispersion(curves, vm.unit)
            dos_pane.object = plots.phonon_dos(curves, vm.unit)
        snap = vm.snapshot()
        if snap.get("n_done") != (seen["snap"] or {}).get("n_done") or snap.get("T") != (seen["snap"] or {}).get("T") \
                or (not snap and seen["snap"]):
            seen["snap"] = snap
            seen["redraws"] += 1
            for name in ("vf", "spectral", "near_k"):
                live[name].update(snap)
            counters.object = f"plot updates: {seen['redraws']}"
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
                progress.value, progress_text.object = 0, ""
        hist = vm.history()
        if hist != seen["hist"]:
            seen["hist"] = hist
            live["vft"].update(hist)

    @pn.depends(vm.param.unit, watch=True)
    def _unit_changed(_=None):
        vm.version += 1

    callback = pn.state.add_periodic_callback(refresh, period=500, start=False)
    pn.state.onload(lambda: (vm.compute_phonons(), refresh(), callback.start()))
    if pn.state.curdoc is not None:
        pn.state.on_session_destroyed(lambda _ctx: vm.close())

    sidebar = [
        pn.pane.Markdown("#### Structure"), structure, upload, supercell,
        pn.pane.Markdown("#### Models"), forces, electrons,
        pn.pane.Markdown("#### Phonons"), unit, show_ref,
        pn.pane.Markdown("#### Monte Carlo"), t_slider, t_input, samples, seed, antithetic,
        pn.pane.Markdown("Run on (dask: the server's cluster)", styles={"font-size": "0.85em"}), executor,
        pn.Row(run_btn, pause_btn, stop_btn),
        pn.pane.Markdown("#### Results"), csv_dl, json_dl, png_dl,
    ]
    main = [
        pn.Column(alert, progress, progress_text, counters),
        pn.Row(pn.Card(summary, top_pane, side_pane, title="Structure", collapsible=True, width_policy="max"),
               pn.Card(phonon_note, pn.Row(disp_pane, dos_pane), title="Phonons", collapsible=True,
                       width_policy="max")),
        pn.Card(pn.GridBox(vf_pane, vft_pane, spec_pane, nk_pane, ncols=2), title="Monte Carlo, live", css_classes=["mlepi-monte-carlo"],
                collapsible=True),
        pn.Card(pn.pane.Markdown(EQUATIONS, css_classes=["mlepi-equations"]), title="How this is computed",
                collapsed=True),
    ]
    template = pn.template.FastListTemplate(
        title="mlepi: electron-phonon renormalisation of layered materials, live",
        sidebar=sidebar, main=main, accent=plots.ACCENT, sidebar_width=330, theme_toggle=False,
        font="system-ui, Segoe UI, Helvetica, Arial, sans-serif", font_url="", design=OfflineFast)
    template.session = vm  # tests and scripts reach the view-model through the page
    return template


if __name__.startswith("bokeh"):  # `panel serve app/main.py`
    create_app().servable()
