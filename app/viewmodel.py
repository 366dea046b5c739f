"""The dashboard's state: one ``Session`` per browser tab, composed of its panels
(``app.components``), each a ``param`` component that owns its state and actions.

The view (``app/main.py``) lays the panels out; they redraw through param dependencies,
and background jobs (phonons, the Monte Carlo run in a thread, the reference check, the
lesson's exercises) hand their results to the page through ``Context.dispatch``, so the
page never waits on physics. Runs of different tabs share nothing but read-only caches
(loaded models, relaxed lattices and their phonons).

    session = Session(temperature=300, samples=40)   # AB bilayer, shipped models
    session.monte_carlo.run(); session.monte_carlo.wait()
    session.monte_carlo.snapshot.vf, session.exports.results_csv()
"""

from __future__ import annotations

from app.catalogue import CACHE
from app.components.context import Context, release_memory
from app.components.exports import Exports
from app.components.layers import Layers
from app.components.lesson import Lesson
from app.components.monte_carlo import BATCH, MonteCarlo, Snapshot
from app.components.phonons import Phonons
from app.components.reference_check import ReferenceCheck
from app.components.runs import Runs
from app.components.structure import System

__all__ = ["BATCH", "Session", "Snapshot"]

PANELS = {"ctx": Context, "system": System, "phonons": Phonons, "monte_carlo": MonteCarlo, "runs": Runs}


class Session:
    """The panels of one dashboard tab. ``Session(**settings)`` takes any linked parameter
    (``structure``, ``supercell``, ``temperature``, ``mode``, ...: ``app.links.OWNERS``) and
    hands it to the panel that owns it."""

    def __init__(self, **settings):
        from app.links import OWNERS

        unknown = set(settings) - set(OWNERS) - {"executor", "mode_amplitude", "mode_speed"}
        if unknown:
            raise TypeError(f"Session got unknown settings {sorted(unknown)}")
        own = {name: {k: v for k, v in settings.items() if k in cls.param and k != "name"}
               for name, cls in PANELS.items()}
        self.ctx = Context(**own["ctx"])
        self.system = System(ctx=self.ctx, **own["system"])
        self.phonons = Phonons(ctx=self.ctx, system=self.system, **own["phonons"])
        self.monte_carlo = MonteCarlo(ctx=self.ctx, system=self.system, view_query=self.to_query,
                                      **own["monte_carlo"])
        self.runs = Runs(ctx=self.ctx, monte_carlo=self.monte_carlo, apply_link=self.apply_query, **own["runs"])
        self.layers = Layers(ctx=self.ctx, system=self.system, monte_carlo=self.monte_carlo)
        self.check = ReferenceCheck(ctx=self.ctx, monte_carlo=self.monte_carlo)
        self.lesson = Lesson(ctx=self.ctx, subject=self)
        self.exports = Exports(subject=self)
        self.system.param.watch(self._structure_changed, "atoms")

    def setting(self, name: str):
        """The value of the linked parameter ``name``, from the panel that owns it."""
        from app.links import OWNERS

        return getattr(getattr(self, OWNERS[name]), name)

    def wait(self, timeout: float | None = None) -> None:
        """Block until the current run and every phonon job end (tests, scripts)."""
        for future in (self.monte_carlo.future, *self.phonons.futures):
            if future is not None:
                future.result(timeout=timeout)

    def show_sample(self, exaggeration: float = 10.0) -> None:
        """Animate the newest Monte Carlo sample's displacement in the mode card."""
        snap = self.monte_carlo.snapshot
        if self.monte_carlo.engine is None or snap is None or not snap.n_done:
            raise ValueError("no Monte Carlo sample yet: press Run first")
        self.phonons.show_sample(self.monte_carlo.engine, snap.T, exaggeration)

    def _structure_changed(self, _event) -> None:
        """After every panel has let go of the previous structure: its cache entries, unless
        another tab uses them, and the freed memory. The new structure's entries stay: its
        jobs may have reached the cache already (a hit is immediate)."""
        current = self.system.key()
        CACHE.release(self.ctx.cache_owner, keep=lambda key: len(key) > 1 and key[1] == current)
        release_memory()

    # --- the view state in the page URL (app.links) ----------------------------------------
    @staticmethod
    def parameters() -> dict:
        """{linked name: its ``param`` Parameter} (``app.links.OWNERS``)."""
        from app.links import OWNERS

        return {name: PANELS[owner].param[name] for name, owner in OWNERS.items()}

    def to_query(self) -> dict[str, str]:
        """The whole view state as URL query parameters (``app.links.view_query``)."""
        from app.links import view_query

        return view_query(self)

    @classmethod
    def parse_query(cls, query: dict) -> tuple[dict, list[str]]:
        """URL query parameters -> ({parameter: valid value}, [problems]) (``app.links``)."""
        from app.links import parse_query

        return parse_query(query, cls.parameters())

    def apply_query(self, query: dict) -> list[str]:
        """Set the view from URL query parameters; returns the problems (``app.links``)."""
        from app.links import apply_query

        return apply_query(self, query)

    def close(self) -> None:
        """End this tab's work (called when the browser session ends)."""
        self.monte_carlo.close()
        self.ctx.close()
        self.system._uploaded = None
        self.phonons.mode_view, self.layers.dos, self.check.result = None, None, None
        CACHE.release(self.ctx.cache_owner, retire=True)
        release_memory()
