"""Runs on disk: every dashboard run is a folder under one runs directory, written after
each batch, so that a run survives the server and continues where it stopped; a folder of
``mlepi mc`` carries the same record (``run.json``), so the dashboard lists and opens it too.

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

    @classmethod
    def save(cls, engine, folder: Path | None, identity: dict, models: dict, label: str = "",
             query: dict | None = None) -> None:
        """Write the engine's finished samples and the run's record to ``folder``
        (``label``: how the page names it; ``query``: the page's link parameters)."""
        if folder is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        engine.save_checkpoint(folder / CHECKPOINT, {"identity": identity})
        cls.describe(engine, folder, identity, models, label, query)

    @staticmethod
    def describe(engine, folder: Path, identity: dict, models: dict, label: str = "", query: dict | None = None,
                 where: str = "mlepi dashboard", checkpoint: str = CHECKPOINT) -> None:
        """Write ``run.json``, the record a runs directory lists and opens: provenance (mlepi's
        version, the models with their identities, the settings, the machine, when, where it
        ran), the statistics per temperature and the spectral axes; ``checkpoint`` names the
        file of the samples."""
        from mlepi_core import __version__
        from mlepi_core.files import write_text_atomic
        from mlepi_core.model_names import model_identity

        temperatures = sorted(t for t, done in engine.per_sample.items() if done)
        sp = engine.spectral
        record = {"label": label, "identity": identity, "query": query or {}, "mlepi_version": __version__,
                  "models": {k: {"name": v, "identity": model_identity(v)} for k, v in models.items()},
                  "settings": dataclasses.asdict(engine.settings), "static": engine.static,
                  "machine": platform.node(), "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "where": where, "checkpoint": checkpoint,
                  "temperatures": [engine.statistics(t) for t in temperatures],
                  "spectral_axes": {"energies_ev": sp.energies.tolist(), "k_distances": sp.distances.tolist()}}
        write_text_atomic(folder / "run.json", json.dumps(record, indent=1, default=float))

    @classmethod
    def listing(cls) -> list[dict]:
        """The runs of the directory, newest first: {"name", "label", "temperatures", "written", ...}."""
        if cls.root is None or not cls.root.is_dir():
            return []
        rows = []
        for folder in cls.root.iterdir():
            why = cls._unreadable(folder)
            if why:  # listed with the reason; nothing else depends on it
                rows.append({"name": folder.name, "unreadable": why, "label": "", "temperatures": [],
                             "written": "", "where": "", "machine": "", "models": {}})
                continue
            record = json.loads((folder / "run.json").read_text())
            rows.append({"name": folder.name, **{k: record.get(k) for k in ("label", "temperatures", "written",
                                                                          "where", "machine", "models", "mlepi_version")}})
        return sorted(rows, key=lambda r: r["written"] or "", reverse=True)

    @staticmethod
    def _unreadable(folder: Path) -> str:
        """Why ``folder`` is not a run that can be listed and opened ("" when it is)."""
        if not folder.is_dir():
            return "not a folder"
        try:
            record = json.loads((folder / "run.json").read_text())
        except FileNotFoundError:
            return "no run.json: not a run folder (or its first batch is still running)"
        except (OSError, ValueError) as err:
            return f"run.json cannot be read: {type(err).__name__}: {err}"
        if not isinstance(record, dict) or not isinstance(record.get("temperatures"), list):
            return "run.json is not a run record"
        if not (folder / record.get("checkpoint", CHECKPOINT)).is_file():
            return f"its samples ({record.get('checkpoint', CHECKPOINT)}) are missing"
        return ""

    @staticmethod
    def continuable(row: dict) -> bool:
        """Whether a listed run's models are still here, with the same weights (else it opens
        from disk but cannot be continued)."""
        from mlepi_core.model_names import model_identity

        try:
            return all(model_identity(m["name"]) == m["identity"] for m in (row.get("models") or {}).values())
        except Exception:  # a model folder gone or unreadable
            return False

    @classmethod
    def open(cls, name: str) -> dict:
        """A run of the directory as a pinned overlay (``MonteCarlo.pin``'s record) at its last
        temperature: running v_F with its error, the peaks of its averaged spectral function,
        its v_F(T) points. Needs no model: the numbers are on disk."""
        import pickle

        import numpy as np

        from mlepi_core.spectral import spectral_peaks
        from mlepi_core.statistics import estimator_units, running_error

        folder = cls.root / name if cls.root is not None else None
        if folder is None or folder.parent != cls.root or not folder.exists():
            raise ValueError(f"no run {name!r} in the runs directory")
        why = cls._unreadable(folder)
        if why:
            raise ValueError(f"run {name!r} cannot be opened: {why}")
        record = json.loads((folder / "run.json").read_text())
        try:
            with open(folder / record.get("checkpoint", CHECKPOINT), "rb") as fh:
                state = pickle.load(fh)
            state["per_sample"], state["spectra"]
        except Exception as err:  # a damaged or foreign pickle
            raise ValueError(f"run {name!r} cannot be opened: its samples cannot be read "
                             f"({type(err).__name__}: {err})") from None
        t = max(state["per_sample"])
        done = state["per_sample"][t]
        vf = np.array([done[i][0] for i in sorted(done)])
        settings = record["settings"]
        vf = estimator_units(sorted(done), vf, settings.get("antithetic", False), settings.get("sampling", "mc"))
        m = np.arange(1, len(vf) + 1)
        axes = record["spectral_axes"]
        acc = state["spectra"].get(t)
        peaks = {"k": [], "e": [], "hwhm": []}
        if acc and acc["samples"]:
            k, e, hwhm = spectral_peaks(acc["sum"] / len(acc["samples"]), np.asarray(axes["energies_ev"]),
                                        np.asarray(axes["k_distances"]))
            peaks = {"k": k, "e": e, "hwhm": hwhm}
        stats = next(s for s in record["temperatures"] if s["T"] == t)
        history = [{"T": s["T"], "vf": s["vf"], "vf_se": s["vf_se"], "samples": s["samples"],
                    "static": record["static"]["vf"]} for s in record["temperatures"]]
        return {"label": f"{record['label'] or name} · {t:g} K · {len(done)} samples (on disk)", "T": t,
                "vf": stats["vf"], "vf_se": stats["vf_se"], "n": len(done), "count": m,
                "running_mean": np.cumsum(vf) / m, "running_se": running_error(vf), "peaks": peaks,
                "history": history, "settings": record["query"], "run": name}
