"""The layers panel: the run's spectral function and the static DOS projected on each layer."""

from __future__ import annotations

import panel as pn
import param

from app import plots
from app.catalogue import electron_choices, electron_model
from app.components.context import Context
from app.components.monte_carlo import MonteCarlo
from app.components.structure import System


class Layers(pn.viewable.Viewer):
    """Shown while ``ctx.show_layers`` is on; ``dos`` is the static DOS per layer once computed."""

    ctx = param.ClassSelector(class_=Context, constant=True, precedence=-1)
    system = param.ClassSelector(class_=System, constant=True, precedence=-1)
    monte_carlo = param.ClassSelector(class_=MonteCarlo, constant=True, precedence=-1)
    dos = param.Dict(default=None, allow_None=True, precedence=-1)

    def __init__(self, **params):
        super().__init__(**params)
        self._compute_dos()

    def spectra(self) -> dict | None:
        """The current run's layer-projected <A_L(k, E)> (Mulliken weights in the overlap
        metric, summing to <A(k, E)>) and the static lattice's; None for one layer."""
        engine, snap = self.monte_carlo.engine, self.monte_carlo.snapshot
        if engine is None or snap is None or engine.n_layers < 2:
            return None
        mean, count = engine.layer_spectral_mean(snap.T)
        return {"layers": mean, "count": count, "static": engine.static_layer_spectrum,
                "energies": snap.energies, "k_distances": snap.k_distances, "k_labels": snap.k_labels,
                "label_distances": snap.label_distances, "static_spectral": snap.static_spectral}

    def static_dos(self) -> dict:
        """The static lattice's electronic DOS per layer (primitive-cell k mesh)."""
        from mlepi_core.layers import layer_dos

        name, atoms = electron_choices()[self.system.electrons], self.system.atoms
        return self.system.cached(("layer dos", self.system.key(), name),
                                  lambda: layer_dos(electron_model(name), atoms))

    @param.depends("ctx.show_layers", "system.electrons", "system.atoms", watch=True)
    def _compute_dos(self):
        self.dos = None
        if self.ctx.show_layers:
            def job():
                try:
                    dos = self.static_dos()
                    self.ctx.dispatch(lambda: setattr(self, "dos", dos))
                except Exception as err:
                    text = f"layer DOS failed: {type(err).__name__}: {err}"
                    self.ctx.dispatch(lambda: setattr(self.ctx, "message", text))
            self.ctx.submit(job)

    def __panel__(self):
        self.figures = [plots.SpectralFunction(), plots.SpectralFunction()]
        for n, fig in enumerate(self.figures):
            fig.figure.title.text = f"⟨A(k, E)⟩ on layer {n + 1} (Mulliken weights; the layers sum to the total)"
        self.dos_figure = plots.LayerDOS()
        self._drawn = None
        grid = pn.GridBox(*[pn.pane.Bokeh(f.figure) for f in self.figures], pn.pane.Bokeh(self.dos_figure.figure),
                          ncols=2)
        return pn.Card(grid, title="Layers", collapsible=True, visible=self.ctx.param.show_layers,
                       css_classes=["mlepi-layers"])

    @param.depends("ctx.show_layers", "monte_carlo.snapshot", watch=True)
    def _draw_spectra(self):
        snap = self.monte_carlo.snapshot
        if not hasattr(self, "figures") or not self.ctx.show_layers or snap is None:
            return
        spectra = self.spectra()
        if spectra is not None:
            for n, fig in enumerate(self.figures):
                fig.update({**spectra, "spectral": spectra["layers"][n]})

    @param.depends("dos", watch=True)
    def _draw_dos(self):
        if hasattr(self, "dos_figure"):
            self.dos_figure.update(self.dos)
