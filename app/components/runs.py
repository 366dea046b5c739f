"""The runs panel: the runs directory's runs (this server's, kept across restarts), listed
newest first, any number of them overlaid on the page's plots, named in the page's link."""

from __future__ import annotations

import html

import panel as pn
import param

from app.components.context import Context
from app.components.monte_carlo import MonteCarlo
from mlepi_core.run_store import RunStore


class Runs(pn.viewable.Viewer):
    """``opened`` names the runs shown as overlays (the link's ``runs=``)."""

    ctx = param.ClassSelector(class_=Context, constant=True, precedence=-1)
    monte_carlo = param.ClassSelector(class_=MonteCarlo, constant=True, precedence=-1)
    opened = param.List(default=[], item_type=str, doc="runs of the runs directory overlaid on the plots")
    listing = param.List(default=[], precedence=-1, doc="the runs directory's runs, newest first")

    def __init__(self, **params):
        super().__init__(**params)
        self.refresh()

    def refresh(self) -> None:
        """Read the runs directory again (runs of other tabs and servers appear)."""
        self.listing = RunStore.listing()

    @param.depends("opened", watch=True)
    def _overlay(self):
        """The opened runs as pinned overlays, beside this page's own pins."""
        own = [p for p in self.monte_carlo.pins if "run" not in p]
        shown, problems = [], []
        for name in self.opened:
            try:
                shown.append(RunStore.open(name))
            except (OSError, ValueError, KeyError) as err:
                problems.append(f"{name}: {err}")
        self.monte_carlo.pins = own + shown
        if problems:
            self.ctx.message = "Some runs could not be opened: " + html.escape("; ".join(problems))

    def table(self) -> str:
        if RunStore.root is None:
            return "Runs stay in this page: the server has no runs directory (`mlepi dashboard --runs DIR`)."
        if not self.listing:
            return f"No runs in `{RunStore.root}` yet: every run of this server is kept there."
        head = "| run | temperatures: v_F (10⁶ m/s) | when | where |\n|---|---|---|---|\n"
        rows = []
        for r in self.listing:
            if r.get("unreadable"):
                rows.append(f"| `{html.escape(r['name'])}`<br>*unreadable: {html.escape(r['unreadable'])}* | | | |")
                continue
            temps = "; ".join(f"{s['T']:g} K: {s['vf']:.4f} ± {s['vf_se']:.4f} ({s['samples']})"
                              for s in r["temperatures"] or [])
            state = "" if RunStore.continuable(r) else "<br>*view only: its models are gone or changed*"
            rows.append(f"| {html.escape(r['label'] or r['name'])}<br>`{r['name']}`{state} | {temps} | "
                        f"{r['written']} | {html.escape(str(r['where']))} on {html.escape(str(r['machine']))} |")
        return head + "\n".join(rows)

    def __panel__(self):
        refresh = pn.widgets.Button(name="Refresh", button_type="light", css_classes=["mlepi-runs-refresh"])
        refresh.on_click(lambda _: self.refresh())
        names = lambda: sorted({r["name"] for r in self.listing} | set(self.opened))  # noqa: E731
        chooser = pn.widgets.MultiChoice(name="Overlay runs", options=names(), value=list(self.opened),
                                         css_classes=["mlepi-runs-open"])
        chooser.link(self, value="opened")
        self.param.watch(lambda e: chooser.param.update(options=names(), value=list(e.new)), "opened")
        self.param.watch(lambda _: setattr(chooser, "options", names()), "listing")
        listing = pn.pane.Markdown(pn.bind(lambda _: self.table(), self.param.listing), css_classes=["mlepi-runs"])
        return pn.Column(pn.Row(chooser, refresh), listing, css_classes=["mlepi-runs-panel"])
