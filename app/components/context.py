"""What the panels of one browser tab share: the status line, the display options, the
thread pool of background jobs, and the way those jobs' results reach the page."""

from __future__ import annotations

import ctypes
import threading
from concurrent.futures import ThreadPoolExecutor

import param


def release_memory() -> None:
    """Hand freed heap pages back to the system (glibc keeps them otherwise, so a closed
    tab's arrays would still count in the server's RSS)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class Context(param.Parameterized):
    """Shared by every panel of one tab."""

    message = param.String(default="", doc="the status line's text")
    presentation = param.Boolean(default=False, doc="large fonts, high contrast, colour-blind-safe palette")
    show_layers = param.Boolean(default=False, doc="layer-resolved views: branches, A(k, E) and DOS per layer")

    def __init__(self, **params):
        super().__init__(**params)
        self.lock = threading.RLock()
        self.cache_owner = object()  # this tab's share of the uploaded structures' cache entries
        self.pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="mlepi-session")
        self._doc = None

    def attach(self, doc) -> None:
        """Apply background results on ``doc``'s event loop (a served page); without a
        document (scripts, tests) they apply at once, in the job's thread."""
        self._doc = doc

    def dispatch(self, apply) -> None:
        """Run ``apply`` (which sets parameters) where the page may change: the views are
        functions of those parameters, so they redraw under the document's lock."""
        doc = self._doc
        if doc is None:
            apply()
            return
        from panel.io.state import set_curdoc

        def in_document():
            with set_curdoc(doc):
                apply()
        try:
            doc.add_next_tick_callback(in_document)
        except Exception:  # the tab has closed: nobody is left to show it to
            pass

    def submit(self, job, *args):
        return self.pool.submit(job, *args)

    def close(self) -> None:
        self._doc = None
        self.pool.shutdown(wait=False, cancel_futures=True)
