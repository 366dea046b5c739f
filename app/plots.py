"""HoloViews figures of the dashboard, each a pure function of data the Session holds."""

from __future__ import annotations

import holoviews as hv
import numpy as np

from mlepi_core.phonons import convert_frequencies

LAYER_COLORS = ["#1f6fb4", "#e4572e", "#3a9d5d", "#8e44ad"]
ACCENT = "#1f6fb4"
# pinned runs: Okabe & Ito's colour-blind-safe palette (also presentation mode's palette)
OKABE_ITO = ["#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#0072B2", "#000000", "#F0E442"]
UNIT_TEXT = {"cm1": "cm⁻¹", "thz": "THz", "mev": "meV"}
HEIGHT = 330


def _empty(title: str, text: str) -> hv.Overlay:
    return (hv.Text(0.5, 0.5, text).opts(text_color="#777777", text_font_size="11pt")
            * hv.Curve([]).opts(xaxis=None, yaxis=None)).opts(title=title, height=HEIGHT, responsive=True)


def marker_size(layer: int, n_layers: int, n_atoms: int, smallest: float = 2.0) -> float:
    """Screen size of layer ``layer``'s atoms: each layer smaller than the one below (so a
    lower layer shows around the upper), 2 px apart, closer with many layers, never below ``smallest``."""
    largest = 9.0 if n_atoms < 400 else 4.0
    step = min(2.0, (largest - smallest) / max(1, n_layers - 1))
    return largest - step * layer


def structure_views(atoms, min_extent: float = 10.0) -> list:
    """Top (x-y) and side (x-z) projections, atoms coloured by layer; small cells are
    repeated in-plane to at least ``min_extent`` Angstrom, the cell itself dashed."""
    cell = np.asarray(atoms.cell)
    reps = [max(1, int(np.ceil(min_extent / np.linalg.norm(cell[i])))) for i in (0, 1)]
    atoms = atoms.repeat((reps[0], reps[1], 1)) if len(atoms) * reps[0] * reps[1] <= 2000 else atoms
    layers = np.asarray(atoms.arrays["layer"])
    pos = atoms.positions
    a1, a2 = cell[0, :2], cell[1, :2]
    outline = np.array([[0, 0], a1, a1 + a2, a2, [0, 0]])
    n_layers = int(layers.max()) + 1
    views = []
    for (i, j), name, height in (((0, 1), "top view (x-y)", HEIGHT), ((0, 2), "side view (x-z)", 200)):
        points = [hv.Points((pos[layers == k, i], pos[layers == k, j], np.flatnonzero(layers == k)),
                            kdims=["x (Å)", "y (Å)" if j == 1 else "z (Å)"], vdims=["atom"],
                            label=f"layer {k + 1}").opts(color=LAYER_COLORS[k % 4],
                                                         size=marker_size(k, n_layers, len(pos)),
                                                         tools=["hover"], line_color="white")
                  for k in range(n_layers)]
        overlay = hv.Overlay(points)
        if j == 1:
            overlay = hv.Path([outline], kdims=["x (Å)", "y (Å)"]).opts(color="#999999", line_dash="dashed") * overlay
            views.append(overlay.opts(title=name, frame_height=250, data_aspect=1, legend_position="top_right",
                                      toolbar="above"))
        else:
            views.append(overlay.opts(title=name, height=height, responsive=True, legend_position="top_right",
                                      toolbar="above"))
    return views


def phonon_dispersion(curves: dict, unit: str, presentation: bool = False, selected=None,
                      layer_weight: np.ndarray | None = None, empty: str = "computing phonons ...") -> hv.Overlay:
    """Bands along Gamma-M-K-Gamma of each model (first solid, others dashed), hover readouts;
    ``selected`` (distance, THz) marks the chosen mode; ``layer_weight`` (n_q, n_bands), the
    first model's weight on layer 1, colours its branches (blue: layer 1, red: layer 2);
    ``empty`` is shown while there are no curves."""
    if not curves:
        return _empty("phonon dispersion", empty)
    ylabel = f"frequency ({UNIT_TEXT[unit]})"
    elements, first = [], None
    for n, (label, (disp, _)) in enumerate(curves.items()):
        freqs = convert_frequencies(disp.freq_thz, unit)
        color = ACCENT if n == 0 else "#222222"
        for b in range(freqs.shape[1]):
            elements.append(hv.Curve((disp.distances, freqs[:, b]), "wavevector", ylabel,
                                     label=label if b == 0 else "").opts(
                color=color, line_width=1.6 if n == 0 else 1.2, line_dash="solid" if n == 0 else "dashed",
                tools=["hover"], show_legend=b == 0))
        first = first or disp
    ticks = list(zip(first.label_distances, first.labels))
    lines = [hv.VLine(x).opts(color="#bbbbbb", line_width=1) for x in first.label_distances[1:-1]]
    if layer_weight is not None:
        disp = next(iter(curves.values()))[0]
        f = convert_frequencies(disp.freq_thz, unit)
        x = np.repeat(disp.distances, f.shape[1])
        elements.append(hv.Points((x, f.ravel(), np.asarray(layer_weight).ravel()), ["wavevector", ylabel],
                                  "weight on layer 1").opts(
            color="weight on layer 1", cmap="coolwarm_r", clim=(0, 1), size=4, colorbar=True,
            tools=["hover"]))
    if selected is not None:
        elements.append(hv.Points([(selected[0], float(convert_frequencies(np.array([selected[1]]), unit)[0]))],
                                  ["wavevector", ylabel]).opts(
            marker="circle", size=16, fill_alpha=0, line_color="#d62728", line_width=3))
    scale = 1.7 if presentation else 1.0
    return hv.Overlay(elements + lines).opts(
        title="phonons (click: see a mode)", xticks=ticks, height=HEIGHT, responsive=True,
        legend_position="bottom_right", fontscale=scale,
        xlim=(first.distances[0], first.distances[-1]), show_legend=len(curves) > 1, toolbar="above")


def phonon_dos(curves: dict, unit: str, presentation: bool = False) -> hv.Overlay:
    """Total phonon DOS, drawn sideways to share the dispersion's frequency axis."""
    if not curves:
        return _empty("DOS", "")
    ylabel = f"frequency ({UNIT_TEXT[unit]})"
    items = []
    for n, (label, (_, (f, dos))) in enumerate(curves.items()):
        items.append(hv.Curve((convert_frequencies(f, unit), dos), ylabel, "DOS").opts(
            color=ACCENT if n == 0 else "#222222", line_dash="solid" if n == 0 else "dashed", tools=["hover"]))
    return hv.Overlay(items).opts(hv.opts.Curve(invert_axes=True)).opts(
        title="DOS", height=HEIGHT, width=170, xticks=0, toolbar=None, fontscale=1.7 if presentation else 1.0)


# --- the live Monte Carlo figures ---------------------------------------------------------
# Bokeh figures whose data sources are replaced after every batch: the browser redraws
# in place (auto-ranging axes), and the server sends only the new numbers.

def pin_color(n: int) -> str:
    return OKABE_ITO[n % len(OKABE_ITO)]


def style_figure(fig, presentation: bool) -> None:
    """Presentation mode: larger type and thicker lines (the projector at the back of a room)."""
    size = "18pt" if presentation else "11pt"
    fig.title.text_font_size = size
    for axis in (*fig.xaxis, *fig.yaxis):
        axis.axis_label_text_font_size = "16pt" if presentation else "10pt"
        axis.major_label_text_font_size = "14pt" if presentation else "9pt"
    for r in fig.renderers:
        glyph = getattr(r, "glyph", None)
        if glyph is not None and hasattr(glyph, "line_width") and not isinstance(glyph.line_width, dict):
            base = getattr(r, "_mlepi_width", None)
            if base is None:
                r._mlepi_width = base = glyph.line_width
            glyph.line_width = base * (2 if presentation else 1)
    if fig.legend:
        fig.legend.label_text_font_size = "14pt" if presentation else "9pt"


def _figure(title: str, x_label: str, y_label: str, **kw):
    from bokeh.models import DataRange1d
    from bokeh.plotting import figure

    fig = figure(title=title, x_axis_label=x_label, y_axis_label=y_label, height=HEIGHT,
                 sizing_mode="stretch_width", toolbar_location="above", tools="pan,wheel_zoom,box_zoom,reset,save",
                 x_range=DataRange1d(range_padding=0.05), y_range=DataRange1d(range_padding=0.1), **kw)
    fig.title.text_font_size = "11pt"
    return fig


class RunningFermiVelocity:
    """Running <v_F> with its standard-error band vs sample count, static line dashed (Fig. 4e)."""

    def __init__(self):
        from bokeh.models import ColumnDataSource, HoverTool

        self.src = ColumnDataSource({"n": [], "mean": [], "lo": [], "hi": []})
        self.ref = ColumnDataSource({"n": [], "v": []})
        self.figure = _figure("running ⟨v_F⟩ (band: ± standard error; dashed: static lattice)", "samples",
                              "⟨v_F⟩ (10⁶ m/s)")
        self.figure.varea("n", "lo", "hi", source=self.src, color=ACCENT, alpha=0.25)
        line = self.figure.line("n", "mean", source=self.src, color=ACCENT, line_width=2)
        self.figure.line("n", "v", source=self.ref, color="#222222", line_dash="dashed")
        self.figure.add_tools(HoverTool(renderers=[line], tooltips=[("samples", "@n"), ("<v_F>", "@mean{0.0000}")]))
        self.pin_bands = ColumnDataSource({"xs": [], "ys": [], "color": []})
        self.pin_lines = ColumnDataSource({"xs": [], "ys": [], "color": [], "label": []})
        self.figure.patches("xs", "ys", source=self.pin_bands, color="color", alpha=0.18, line_alpha=0)
        self.figure.multi_line("xs", "ys", source=self.pin_lines, color="color", line_width=2,
                               legend_field="label")
        self.figure.legend.location = "bottom_right"

    def set_pins(self, pins: list[dict]) -> None:
        """Overlay pinned runs: their running mean and error band, each in its colour."""
        bands, lines = {"xs": [], "ys": [], "color": []}, {"xs": [], "ys": [], "color": [], "label": []}
        for n, pin in enumerate(pins):
            c = np.asarray(pin["count"], dtype=float)
            m, se = np.asarray(pin["running_mean"]), np.nan_to_num(np.asarray(pin["running_se"]))
            bands["xs"].append(np.concatenate([c, c[::-1]]))
            bands["ys"].append(np.concatenate([m - se, (m + se)[::-1]]))
            bands["color"].append(pin_color(n))
            lines["xs"].append(c)
            lines["ys"].append(m)
            lines["color"].append(pin_color(n))
            lines["label"].append(f"{pin['label']}: {pin['vf']:.4f} ± {pin['vf_se']:.4f}")
        self.pin_bands.data, self.pin_lines.data = bands, lines
        self.figure.legend.visible = bool(pins)

    def update(self, data: dict) -> None:
        c = np.asarray(data.get("count", []), dtype=float)
        mean = np.asarray(data.get("running_mean", []), dtype=float)
        se = np.nan_to_num(np.asarray(data.get("running_se", []), dtype=float))
        self.src.data = {"n": c, "mean": mean, "lo": mean - se, "hi": mean + se}
        static = data["static"]["vf"] if data else None
        n_max = max(2.0, float(c[-1])) if len(c) else 2.0
        self.ref.data = {"n": [1.0, n_max], "v": [static] * 2} if static is not None else {"n": [], "v": []}


class FermiVelocityVsT:
    """<v_F>(T) of the session's runs with error bars and the static line (Fig. 4f)."""

    def __init__(self):
        from bokeh.models import ColumnDataSource, HoverTool

        self.src = ColumnDataSource({"T": [], "vf": [], "lo": [], "hi": [], "samples": []})
        self.ref = ColumnDataSource({"T": [], "v": []})
        self.figure = _figure("⟨v_F⟩(T) of this session (dashed: static lattice)", "T (K)", "⟨v_F⟩ (10⁶ m/s)")
        self.figure.segment("T", "lo", "T", "hi", source=self.src, color=ACCENT, line_width=2)
        pts = self.figure.scatter("T", "vf", source=self.src, color=ACCENT, size=10)
        self.figure.line("T", "v", source=self.ref, color="#222222", line_dash="dashed")
        self.figure.add_tools(HoverTool(renderers=[pts], tooltips=[("T (K)", "@T"), ("<v_F>", "@vf{0.0000}"),
                                                                   ("samples", "@samples")]))
        self.pins = ColumnDataSource({"T": [], "vf": [], "lo": [], "hi": [], "color": [], "label": []})
        self.figure.segment("T", "lo", "T", "hi", source=self.pins, color="color", line_width=2)
        self.figure.scatter("T", "vf", source=self.pins, color="color", size=10, marker="diamond",
                            legend_field="label")
        self.figure.legend.location = "bottom_left"

    def set_pins(self, pins: list[dict]) -> None:
        rows = [(h, n, pin) for n, pin in enumerate(pins) for h in pin["history"]]
        vf = np.array([h["vf"] for h, _, _ in rows], dtype=float)
        se = np.nan_to_num(np.array([h["vf_se"] for h, _, _ in rows], dtype=float))
        self.pins.data = {"T": [h["T"] for h, _, _ in rows], "vf": vf, "lo": vf - se, "hi": vf + se,
                          "color": [pin_color(n) for _, n, _ in rows], "label": [p["label"] for _, _, p in rows]}
        self.figure.legend.visible = bool(rows)

    def update(self, history: list) -> None:
        t = np.array([h["T"] for h in history], dtype=float)
        v = np.array([h["vf"] for h in history], dtype=float)
        se = np.nan_to_num(np.array([h["vf_se"] for h in history], dtype=float))
        self.src.data = {"T": t, "vf": v, "lo": v - se, "hi": v + se,
                         "samples": [h["samples"] for h in history]}
        if history:
            self.ref.data = {"T": [min(0.0, t.min()), max(300.0, t.max())], "v": [history[0]["static"]] * 2}
        else:
            self.ref.data = {"T": [], "v": []}


class SpectralFunction:
    """Configuration-averaged unfolded A(k, E) along Gamma-M-K-Gamma (drawn on a uniform
    wavevector grid, each column the nearest computed path point)."""

    def __init__(self, emin: float = -3.0, emax: float = 3.0, columns: int = 400):
        from bokeh.models import ColumnDataSource, FixedTicker, LinearColorMapper, Range1d
        from bokeh.palettes import Magma256

        self.emin, self.emax, self.columns = emin, emax, columns
        self.mapper = LinearColorMapper(palette=Magma256, low=0.0, high=1.0)
        self.src = ColumnDataSource({"image": [np.zeros((2, 2))], "x": [0.0], "y": [emin], "dw": [1.0],
                                     "dh": [emax - emin]})
        self.marks = ColumnDataSource({"x": [], "y0": [], "y1": []})
        self.figure = _figure("⟨A(k, E)⟩, unfolded onto the primitive zone", "wavevector", "E - E_F (eV)")
        self.figure.y_range = Range1d(emin, emax)
        self.figure.image(image="image", x="x", y="y", dw="dw", dh="dh", source=self.src, color_mapper=self.mapper)
        self.figure.segment("x", "y0", "x", "y1", source=self.marks, color="white", alpha=0.6, line_width=1)
        self.figure.xaxis.ticker = FixedTicker(ticks=[])
        self.figure.xgrid.visible = self.figure.ygrid.visible = False
        self.pins = ColumnDataSource({"k": [], "e": [], "lo": [], "hi": [], "color": [], "label": []})
        self.figure.segment("k", "lo", "k", "hi", source=self.pins, color="color", line_width=3, alpha=0.8)
        self.figure.scatter("k", "e", source=self.pins, color="color", size=5, legend_field="label")
        self.figure.legend.location = "top_right"
        self.figure.legend.visible = False

    def set_pins(self, pins: list[dict]) -> None:
        """Pinned runs' quasiparticle peaks, each bar spanning ± its half width at half maximum."""
        cols = {"k": [], "e": [], "lo": [], "hi": [], "color": [], "label": []}
        for n, pin in enumerate(pins):
            k, e, w = (np.asarray(pin["peaks"][x]) for x in ("k", "e", "hwhm"))
            keep = (e >= self.emin) & (e <= self.emax)
            for key, values in (("k", k), ("e", e), ("lo", e - w), ("hi", e + w)):
                cols[key] += [float(v) for v in values[keep]]
            cols["color"] += [pin_color(n)] * int(keep.sum())
            cols["label"] += [f"{pin['label']} (peak ± HWHM)"] * int(keep.sum())
        self.pins.data = cols
        self.figure.legend.visible = bool(pins)

    def set_palette(self, presentation: bool) -> None:
        from bokeh.palettes import Cividis256, Magma256

        self.mapper.palette = Cividis256 if presentation else Magma256  # cividis: colour-blind safe

    def update(self, data: dict) -> None:
        if not data:
            return
        e = data["energies"]
        keep = (e >= self.emin) & (e <= self.emax)
        d = np.asarray(data["k_distances"])
        x = np.linspace(d[0], d[-1], self.columns)
        nearest = np.abs(x[:, None] - d[None, :]).argmin(axis=1)
        image = data["spectral"][nearest][:, keep].T  # (n_E, columns)
        self.mapper.high = float(np.percentile(data["static_spectral"][:, keep], 99.5)) or 1.0
        self.src.data = {"image": [image], "x": [d[0]], "y": [e[keep][0]], "dw": [d[-1] - d[0]],
                         "dh": [e[keep][-1] - e[keep][0]]}
        labels = np.asarray(data["label_distances"])
        self.figure.xaxis.ticker.ticks = [float(v) for v in labels]
        self.figure.xaxis.major_label_overrides = {float(v): n for v, n in zip(labels, data["k_labels"])}
        inner = labels[1:-1]
        self.marks.data = {"x": inner, "y0": [self.emin] * len(inner), "y1": [self.emax] * len(inner)}


class NearKBands:
    """Band energies at |k - K| = q (averaged over directions and valleys): thermal mean with
    errors, the static lattice dashed."""

    def __init__(self):
        from bokeh.models import ColumnDataSource, HoverTool

        self.static = ColumnDataSource({"xs": [], "ys": []})
        self.src = ColumnDataSource({"q": [], "e": [], "lo": [], "hi": []})
        self.figure = _figure("bands near K (dashed: static lattice)", "|k - K| (1/Å)", "E - E_F (eV)")
        self.figure.multi_line("xs", "ys", source=self.static, color="#222222", line_dash="dashed")
        self.figure.segment("q", "lo", "q", "hi", source=self.src, color=ACCENT, line_width=2)
        pts = self.figure.scatter("q", "e", source=self.src, color=ACCENT, size=8)
        self.figure.add_tools(HoverTool(renderers=[pts], tooltips=[("q (1/A)", "@q"), ("E - E_F (eV)", "@e{0.0000}")]))

    def update(self, data: dict) -> None:
        if not data:
            self.static.data, self.src.data = {"xs": [], "ys": []}, {"q": [], "e": [], "lo": [], "hi": []}
            return
        prof = data["near_k"]
        q = np.asarray(prof["q"], dtype=float)
        n_bands = prof["static"].shape[1]
        self.static.data = {"xs": [q] * n_bands, "ys": [prof["static"][:, b] for b in range(n_bands)]}
        if "mean" in prof:
            mean, se = prof["mean"].ravel(), np.nan_to_num(prof["se"]).ravel()
            self.src.data = {"q": np.repeat(q, n_bands), "e": mean, "lo": mean - se, "hi": mean + se}


class ModeAnimation:
    """Top (x-y) and side (x-z) views of a supercell whose positions the page replaces
    frame by frame (a phonon mode, or a Monte Carlo sample's displacement)."""

    def __init__(self):
        from bokeh.models import ColumnDataSource

        self.src = ColumnDataSource({"x": [], "y": [], "z": [], "color": []})
        self.top = _figure("mode: top view", "x (Å)", "y (Å)", match_aspect=True)
        self.side = _figure("mode: side view", "x (Å)", "z (Å)")
        self.top.height, self.side.height = 300, 220
        for fig, y in ((self.top, "y"), (self.side, "z")):
            fig.scatter("x", y, source=self.src, color="color", size=9, line_color="white")
        self.figure = self.top  # for styling with the other figures

    def show(self, atoms, positions: np.ndarray, title: str) -> None:
        layers = np.asarray(atoms.arrays["layer"])
        self.src.data = {"x": positions[:, 0], "y": positions[:, 1], "z": positions[:, 2],
                         "color": [LAYER_COLORS[k % 4] for k in layers]}
        self.top.title.text = title

    def move(self, positions: np.ndarray) -> None:
        self.src.data = {**self.src.data, "x": positions[:, 0], "y": positions[:, 1], "z": positions[:, 2]}


class ReferenceOverlay:
    """One Monte Carlo sample's unfolded bands from the ML Hamiltonian (blue, size ~ weight)
    over the reference solver's (black rings), as in the paper's Fig. 4d."""

    def __init__(self, emin: float = -3.0, emax: float = 3.0):
        from bokeh.models import ColumnDataSource, Range1d

        self.emin, self.emax = emin, emax
        self.ml = ColumnDataSource({"k": [], "e": [], "size": []})
        self.ref = ColumnDataSource({"k": [], "e": [], "size": []})
        self.figure = _figure("check against the reference: run it on a sample", "wavevector", "E - E_F (eV)")
        self.figure.y_range = Range1d(emin, emax)
        self.figure.scatter("k", "e", source=self.ref, size="size", fill_alpha=0, line_color="#000000",
                            line_width=1.5, legend_label="reference (GFN1-xTB)")
        self.figure.scatter("k", "e", source=self.ml, size="size", color=ACCENT, alpha=0.7,
                            legend_label="ML (HedgeNet-Electron)")
        self.figure.legend.location = "bottom_right"

    def update(self, result: dict | None, caption: str = "") -> None:
        from bokeh.models import FixedTicker

        if not result:
            self.ml.data = self.ref.data = {"k": [], "e": [], "size": []}
            return
        d = np.asarray(result["k_distances"])
        for src, name, scale in ((self.ml, "ml", 9.0), (self.ref, "reference", 13.0)):
            e, w = np.asarray(result[name]["energies_ev"]), np.asarray(result[name]["weights"])
            k = np.broadcast_to(d[:, None], e.shape)
            keep = (w > 0.05) & (e >= self.emin) & (e <= self.emax)
            src.data = {"k": k[keep], "e": e[keep], "size": 3 + scale * np.sqrt(w[keep])}
        labels = np.asarray(result["label_distances"])
        self.figure.xaxis.ticker = FixedTicker(ticks=[float(v) for v in labels])
        self.figure.xaxis.major_label_overrides = {float(v): n for v, n in zip(labels, result["k_labels"])}
        self.figure.title.text = caption


class LayerDOS:
    """The static lattice's electronic DOS projected on each layer (Mulliken), and the total."""

    def __init__(self):
        from bokeh.models import ColumnDataSource

        self.src = ColumnDataSource({"xs": [], "ys": [], "color": [], "label": []})
        self.figure = _figure("electronic DOS per layer (Mulliken, static lattice)", "E - E_F (eV)",
                              "states / eV / cell")
        self.figure.multi_line("xs", "ys", source=self.src, color="color", line_width=2, legend_field="label")

    def update(self, dos: dict | None) -> None:
        if not dos:
            self.src.data = {"xs": [], "ys": [], "color": [], "label": []}
            return
        e = np.asarray(dos["energies_ev"])  # about E_F already
        rows = [(dos["total"], "#222222", "total")] + [
            (d, LAYER_COLORS[n % 4], f"layer {n + 1}") for n, d in enumerate(dos["dos"])]
        self.src.data = {"xs": [e] * len(rows), "ys": [r[0] for r in rows], "color": [r[1] for r in rows],
                         "label": [r[2] for r in rows]}
