"""The mlepi dashboard: the panels of one ``Session`` per browser tab, laid out.

Served by ``mlepi dashboard`` (the README's main command) or ``panel serve app/main.py``.
The view holds no physics: each panel (``app.components``) redraws from its own
parameters, which background jobs set on the server's event loop, so a running Monte
Carlo job (in the Session's own thread) never blocks the page.
"""

from __future__ import annotations

import holoviews as hv
import panel as pn
from panel.theme.fast import Fast

from app import plots
from app.formulas import math_markdown
from app.links import URLState
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


def create_app(session: Session | None = None):
    """One dashboard page bound to ``session`` (a new Session per browser tab)."""
    vm = session or Session()
    ctx, system, phonons, mc = vm.ctx, vm.system, vm.phonons, vm.monte_carlo
    ctx.attach(pn.state.curdoc)
    URLState.restore(vm, pn.state.session_args)
    presentation = pn.widgets.Toggle.from_param(ctx.param.presentation, name="Presentation mode",
                                                button_type="light", css_classes=["mlepi-presentation"])
    sample_btn = pn.widgets.Button(name="Show the newest sample (× 10)", button_type="light",
                                   css_classes=["mlepi-show-sample"])

    sample_btn.on_click(lambda _: mc._act(vm.show_sample))
    downloads = vm.exports.downloads()
    sidebar = [presentation, *system.controls(), *phonons.controls(), *mc.controls(),
               pn.pane.Markdown("#### Results"), *downloads]
    status = mc.status_panel()  # before the panels: the progress line reads the run's snapshot
    structure_card, phonon_card = system.__panel__(), phonons.__panel__()
    mode_card, mc_card = phonons.mode_card(sample_btn), mc.__panel__()
    layers_card, check_card = vm.layers.__panel__(), vm.check.__panel__()
    equations = pn.Card(math_markdown(EQUATIONS, css_classes=["mlepi-equations"]), title="How this is computed",
                        collapsed=True)
    explore = pn.Column(pn.Row(structure_card, phonon_card), mode_card, mc_card, layers_card, check_card,
                        equations)
    lesson = vm.lesson.__panel__()
    tabs = pn.Tabs(("Explore", explore), ("Lesson", lesson), ("Runs", vm.runs.__panel__()), dynamic=False,
                   css_classes=["mlepi-tabs"])
    # hidden in presentation mode
    advanced = [mc.seed_input, mc.antithetic_box, mc.estimator_buttons, mc.executor_buttons, mc.run_on, mc.counters, *downloads[1:],
                system.force_card, system.electron_card, equations]
    texts = [*mc.texts, system.summary_pane, phonons.note, phonons.mode_text, vm.check.text]
    figures = [*[f.figure for f in mc.live.values()], *[f.figure for f in vm.layers.figures],
               vm.check.overlay.figure, vm.layers.dos_figure.figure, phonons.animation.top, phonons.animation.side]

    @pn.depends(ctx.param.presentation, watch=True)
    def apply_presentation(on=None):
        """Presentation mode: large type, black on white, the colour-blind-safe palette, and only
        what a talk needs."""
        on = ctx.presentation
        big = {"font-size": "1.6em", "color": "#000000"} if on else {}
        for pane in (*texts, explore, lesson):
            pane.styles = big
        for widget in advanced:
            widget.visible = not on
        for fig in figures:
            plots.style_figure(fig, on)
        for fig in (mc.live["spectral"], *vm.layers.figures):
            fig.set_palette(on)

    apply_presentation()
    urls = URLState(vm, pn.state.location)
    animator = pn.state.add_periodic_callback(phonons.animate, period=80, start=False)

    loaded = []

    def animate_while_shown(*_):
        """The 80 ms frame clock runs only while a mode or sample is shown (once the page has
        loaded): each tick costs the server and the browser work even with nothing to move."""
        shown = bool(loaded) and "frames" in (phonons.mode_view or {})
        if shown != animator.running:
            animator.start() if shown else animator.stop()

    def on_load():
        loaded.append(True)
        phonons.compute()
        animate_while_shown()

    phonons.param.watch(animate_while_shown, "mode_view")
    pn.state.onload(on_load)
    if pn.state.curdoc is not None:
        pn.state.on_session_destroyed(lambda _ctx: vm.close())
    template = pn.template.FastListTemplate(
        title="mlepi: electron-phonon renormalisation of layered materials, live",
        # one Column: each template item is a Bokeh root, and every root re-indexes the whole page;
        # the status line is a root of its own, so that its changes re-lay out only itself
        sidebar=[pn.Column(*sidebar, sizing_mode="stretch_width")], main=[status, tabs], accent=plots.ACCENT,
        sidebar_width=330, theme_toggle=False,
        font="system-ui, Segoe UI, Helvetica, Arial, sans-serif", font_url="", design=OfflineFast)
    template.session = vm  # tests and scripts reach the view-model through the page
    return template


if __name__.startswith("bokeh"):  # `panel serve app/main.py`
    create_app().servable()
