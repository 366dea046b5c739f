"""The reference check panel (the paper's Fig. 4d, live): GFN1-xTB on the newest sample of
the run, in the background and cancellable, its bands overlaid on the ML ones."""

from __future__ import annotations

import threading

import panel as pn
import param

from app import plots
from app.catalogue import electron_model
from app.components.context import Context
from app.components.monte_carlo import MonteCarlo


class ReferenceCheck(pn.viewable.Viewer):
    """``result``: the check's status, its text and, when done, ``check_sample``'s numbers."""

    ctx = param.ClassSelector(class_=Context, constant=True, precedence=-1)
    monte_carlo = param.ClassSelector(class_=MonteCarlo, constant=True, precedence=-1)
    result = param.Dict(default=None, allow_None=True, precedence=-1)

    def __init__(self, **params):
        super().__init__(**params)
        self.future, self._cancel = None, threading.Event()

    def check(self, sample: int | None = None) -> None:
        """Run the electron reference (GFN1-xTB) on sample ``sample`` (default the newest) of
        the current run in the background; ``result`` holds the outcome."""
        from mlepi_core.reference_check import Cancelled, check_sample

        engine, snap = self.monte_carlo.engine, self.monte_carlo.snapshot
        if engine is None or snap is None or not snap.n_done:
            raise ValueError("no Monte Carlo sample yet: press Run first")
        if self.future is not None and not self.future.done():
            raise RuntimeError("a reference check is already running")
        t = snap.T
        index = int(max(engine.per_sample[t]) if sample is None else sample)
        reference = electron_model("reference")
        self._cancel.clear()
        self.result = {"status": "running", "T": t, "sample": index,
                       "text": f"running GFN1-xTB on sample {index} at {t:g} K ..."}

        def job():
            try:
                out = check_sample(engine, t, index, reference, window_ev=1.0, cancelled=self._cancel.is_set)
                text = (f"sample {index} at {t:g} K: largest |E_ML − E_ref| within 1 eV of E_F = "
                        f"{out['max_abs_diff_mev']:.1f} meV ({out['n_compared']} states; "
                        f"{out['seconds']['total']:.1f} s)")
                result = {"status": "done", "T": t, "sample": index, "text": text, "result": out}
            except Cancelled:
                result = {"status": "cancelled", "T": t, "sample": index, "text": "reference check cancelled"}
            except Exception as err:
                hint = (" GFN1-xTB needs a cell of 13 Å or more: choose a supercell of 6 x 6 or larger."
                        if "cell too small" in str(err) else "")
                result = {"status": "error", "T": t, "sample": index,
                          "text": f"reference check failed: {type(err).__name__}: {err}.{hint}"}
            self.ctx.dispatch(lambda: setattr(self, "result", result))

        self.future = self.ctx.submit(job)

    def cancel(self) -> None:
        self._cancel.set()

    def __panel__(self):
        w = pn.widgets
        check = w.Button(name="Check this sample against the reference", button_type="light",
                         css_classes=["mlepi-check"])
        cancel = w.Button(name="Cancel check", button_type="light", css_classes=["mlepi-check-cancel"])
        check.on_click(self._on_check)
        cancel.on_click(lambda _: self.cancel())
        self.text = pn.pane.Markdown("Run some samples, then check the newest against GFN1-xTB (6 x 6 or larger).",
                                     css_classes=["mlepi-check-text"])
        self.overlay = plots.ReferenceOverlay()
        return pn.Card(pn.Row(check, cancel), self.text,
                       pn.Column(pn.pane.Bokeh(self.overlay.figure), css_classes=["mlepi-reference-overlay"]),
                       title="Check a sample against the reference (Fig. 4d)", collapsible=True,
                       css_classes=["mlepi-reference-check"])

    def _on_check(self, _):
        try:
            self.check()
        except (ValueError, RuntimeError) as err:
            self.ctx.message = str(err)

    @param.depends("result", watch=True)
    def _redraw(self):
        check = self.result
        if check is None or not hasattr(self, "overlay"):
            return
        self.text.object = check["text"]
        self.overlay.update(check.get("result"), f"sample {check['sample']} at {check['T']:g} K: ML vs GFN1-xTB"
                            if check.get("result") else "")
