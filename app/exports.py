"""The dashboard's results as files: the numbers (JSON, CSV of the samples), one
self-contained HTML page and one PNG of the figures."""

from __future__ import annotations

import dataclasses
import io
import re

import numpy as np

from mlepi_core import __version__


def results_dict(session) -> dict:
    """The run's settings, static and thermal values per temperature, v_F(T), the pinned runs
    and a finished reference check, as one JSON-ready dict."""
    engine, system, mc = session.monte_carlo.engine, session.system, session.monte_carlo
    out = {"mlepi_version": __version__, "structure": system.structure, **system.summary(),
           "forces": system.forces, "electrons": system.electrons,
           "units": {"vf": "1e6 m/s", "gamma1": "eV", "T": "K"}, "vf_vs_T": mc.history,
           "view": session.to_query(),
           "pinned": [{k: r[k] for k in ("label", "T", "vf", "vf_se", "n", "settings", "history")} for r in mc.pins]}
    check = session.check.result
    if check and check.get("status") == "done":
        r = check["result"]
        out["reference_check"] = {"T": check["T"], "sample": check["sample"], "reference": "GFN1-xTB",
                                  "max_abs_diff_mev": r["max_abs_diff_mev"], "n_compared": r["n_compared"],
                                  "window_ev": 1.0}
    if engine is not None:
        out["settings"] = dataclasses.asdict(engine.settings)
        out["static"] = dict(engine.static)
        out["temperatures"] = [engine.statistics(t) for t in sorted(engine.per_sample)
                               if engine.per_sample[t]]
    return out


def results_csv(session) -> str:
    """One row per finished sample: T, sample index, v_F, gamma_1 (the run's raw data)."""
    buf = io.StringIO()
    buf.write("T_K,sample,vf_1e6_m_per_s,gamma1_ev\n")
    engine = session.monte_carlo.engine
    if engine is not None:
        for t in sorted(engine.per_sample):
            for j in sorted(engine.per_sample[t]):
                v, g = engine.per_sample[t][j]
                buf.write(f"{t:g},{j},{v:.10g},{g:.10g}\n")
    return buf.getvalue()


def export_html(session) -> str:
    """The current figures and numbers as one self-contained HTML page (BokehJS inlined:
    it opens offline, for a slide deck or an e-mail)."""
    import html

    import holoviews as hv
    from bokeh.embed import file_html
    from bokeh.layouts import column, gridplot
    from bokeh.models import Div
    from bokeh.resources import INLINE

    from app import plots

    system, mc = session.system, session.monte_carlo
    snap, pins, summary = mc.snapshot, mc.pins, system.summary()
    figures = []
    curves = session.phonons.curves
    if curves:
        figures.append(hv.render(plots.phonon_dispersion(curves, session.phonons.unit), backend="bokeh"))
    vf, vft, spec = plots.RunningFermiVelocity(), plots.FermiVelocityVsT(), plots.SpectralFunction()
    vf.update(snap.as_dict() if snap else {})
    vf.set_pins(pins)
    vft.update(mc.history)
    vft.set_pins(pins)
    spec.update(snap.as_dict() if snap else {})
    spec.set_pins(pins)
    figures += [vf.figure, vft.figure] + ([spec.figure] if snap else [])
    for fig in figures:
        fig.sizing_mode, fig.width, fig.height = "fixed", 560, 360
        plots.style_figure(fig, session.ctx.presentation)
    rows = [("structure", f"{summary['formula']}, {summary['atoms']} atoms, {summary['stacking']}"),
            ("force model", system.forces), ("Hamiltonian model", system.electrons),
            ("supercell", f"{system.supercell} x {system.supercell}"), ("seed", str(mc.seed))]
    if snap:
        rows += [("temperature", f"{snap.T:g} K"), ("samples", f"{snap.n_done} / {snap.n_total}"),
                 ("<v_F>", f"{snap.vf:.4f} ± {snap.vf_se:.4f} × 10⁶ m/s"),
                 ("static lattice v_F", f"{snap.static['vf']:.4f} × 10⁶ m/s"),
                 ("change vs static", f"{100 * snap.rel_change:+.2f} %")]
    rows += [(f"pinned: {pin['label']}", f"{pin['vf']:.4f} ± {pin['vf_se']:.4f} × 10⁶ m/s") for pin in pins]
    table = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
                    f"<td class='mlepi-number'>{html.escape(v)}</td></tr>" for k, v in rows)
    head = Div(text=f"<h2>mlepi {html.escape(__version__)}: {html.escape(system.structure)}</h2>"
                    f"<table>{table}</table><p style='color:#666'>Link to this view: "
                    f"?{html.escape('&'.join(f'{k}={v}' for k, v in session.to_query().items()))}</p>",
               width=1100)
    grid = [(figures[i:i + 2] + [None])[:2] for i in range(0, len(figures), 2)]
    page = file_html(column(head, gridplot(grid)), resources=INLINE, title=f"mlepi: {system.structure}")
    # the page holds Bokeh models only: the module loader that importing Panel adds to Bokeh's
    # resources is a server-relative URL that a file opened on its own cannot load
    return re.sub(r'<script[^>]*src="static/extensions/panel/[^"]*"[^>]*>\s*</script>\s*', "", page)

def figure_png(session) -> bytes:
    """The current results as one PNG (running v_F, v_F(T), averaged spectral function)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    snap, hist = session.monte_carlo.snapshot, session.monte_carlo.history
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    if snap:
        c, mean, se = snap.count, snap.running_mean, np.nan_to_num(snap.running_se)
        axes[0].plot(c, mean, color="C0")
        axes[0].fill_between(c, mean - se, mean + se, color="C0", alpha=0.3)
        axes[0].axhline(snap.static["vf"], color="k", ls="--", lw=1, label="static lattice")
        axes[0].set(xlabel="samples", ylabel="running <v$_F$> (10$^6$ m/s)",
                    title=f"{snap.T:g} K")
        axes[0].legend(fontsize=8)
        axes[2].pcolormesh(snap.k_distances, snap.energies, snap.spectral.T,
                           shading="nearest", cmap="magma")
        axes[2].set_xticks(snap.label_distances, snap.k_labels)
        axes[2].set(ylabel="E - E$_F$ (eV)", title=f"<A(k, E)>, {snap.n_spectral} samples")
    if hist:
        axes[1].errorbar([h["T"] for h in hist], [h["vf"] for h in hist],
                         yerr=[h["vf_se"] for h in hist], marker="o", capsize=3)
        axes[1].axhline(hist[0]["static"], color="k", ls="--", lw=1)
    axes[1].set(xlabel="T (K)", ylabel="<v$_F$> (10$^6$ m/s)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()
