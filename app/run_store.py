"""Dashboard runs on disk: every run is a folder under one runs directory, written after
each batch, so that a run survives the server and continues where it stopped.

A run's folder is named by what makes its samples what they are (the structure, both
models' identities, the supercell, the seed, antithetic pairs): the same settings reach the
same folder, whose checkpoint (``MonteCarloEngine.save_checkpoint``, atomic, as ``mlepi mc``
writes) holds every finished sample of every temperature. Keyed random streams make a
continued run's numbers equal to those of a run that never stopped. ``run.json`` beside it
keeps the provenance: mlepi's version, the models and their weights' sha256, the settings,
the machine and when.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import time
from pathlib import Path

CHECKPOINT = "checkpoint_run.pkl"


class RunStore:
    """The runs directory of this server (``mlepi dashboard --runs DIR``); None: runs stay in memory."""

    root: Path | None = None

    @classmethod
    def configure(cls, root: str | Path | None) -> None:
        cls.root = None if root is None else Path(root)

    @classmethod
    def folder(cls, identity: dict) -> Path | None:
        """The folder of the run with ``identity`` (None without a runs directory)."""
        if cls.root is None:
            return None
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
        slug = "".join(c if c.isalnum() else "-" for c in str(identity["structure"]))[:24]
        return cls.root / f"{slug}-{digest}"

    @staticmethod
    def resume(engine, folder: Path | None, identity: dict) -> int:
        """Load the finished samples of ``folder`` into ``engine``; returns how many (0: none yet)."""
        import pickle

        if folder is None or not (folder / CHECKPOINT).is_file():
            return 0
        with open(folder / CHECKPOINT, "rb") as fh:
            saved = pickle.load(fh).get("identity")
        if saved != identity:
            raise ValueError(f"{folder} holds another run ({saved})")
        return engine.load_checkpoint(folder / CHECKPOINT)

    @staticmethod
    def save(engine, folder: Path | None, identity: dict, models: dict) -> None:
        """Write the engine's finished samples and the run's provenance to ``folder``."""
        from mlepi_core import __version__
        from mlepi_core.files import write_text_atomic

        if folder is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        engine.save_checkpoint(folder / CHECKPOINT, {"identity": identity})
        temperatures = sorted(t for t, done in engine.per_sample.items() if done)
        record = {"identity": identity, "models": models, "mlepi_version": __version__,
                  "settings": dataclasses.asdict(engine.settings), "static": engine.static,
                  "machine": platform.node(), "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "where": "mlepi dashboard", "temperatures": [engine.statistics(t) for t in temperatures]}
        write_text_atomic(folder / "run.json", json.dumps(record, indent=1, default=float))
