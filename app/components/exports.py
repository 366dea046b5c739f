"""The results panel: the samples (CSV), the results (JSON), the figures (PNG) and one
self-contained HTML page (``app.exports`` writes them)."""

from __future__ import annotations

import io
import json

import panel as pn
import param

from app import exports


class Exports(pn.viewable.Viewer):
    """The downloads of one tab's results."""

    subject = param.Parameter(precedence=-1, doc="the tab's Session, whose results are written")

    def results_dict(self) -> dict:
        """Settings, static and thermal values, v_F(T), pins and the reference check."""
        return exports.results_dict(self.subject)

    def results_json(self) -> str:
        return json.dumps(self.results_dict(), indent=1, default=float)

    def results_csv(self) -> str:
        """One row per finished sample: T, sample index, v_F, gamma_1."""
        return exports.results_csv(self.subject)

    def export_html(self) -> str:
        """The current figures and numbers as one self-contained HTML page."""
        return exports.export_html(self.subject)

    def figure_png(self) -> bytes:
        return exports.figure_png(self.subject)

    def downloads(self) -> list:
        """The four download buttons: HTML, CSV, JSON, PNG."""
        files = (("html", "mlepi_view.html", "Figures + numbers (HTML, opens offline)",
                  lambda: io.StringIO(self.export_html())),
                 ("csv", "mlepi_samples.csv", "Samples (CSV)", lambda: io.StringIO(self.results_csv())),
                 ("json", "mlepi_results.json", "Results (JSON)", lambda: io.StringIO(self.results_json())),
                 ("png", "mlepi_figures.png", "Figures (PNG)", lambda: io.BytesIO(self.figure_png())))
        return [pn.widgets.FileDownload(callback=make, filename=name, label=label, button_type="light",
                                        css_classes=[f"mlepi-{css}"]) for css, name, label, make in files]

    def __panel__(self):
        return pn.Column(pn.pane.Markdown("#### Results"), *self.downloads())
