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

from .checkpoints import CheckpointError, read_checkpoint
from .run_archive import MAX_FOLDER_BYTES, SAFE_NAME, pack, unpack

CHECKPOINT = "checkpoint_run.npz"
# an uploaded archive travels in one websocket message (Bokeh's limit: 20 MiB) as base64 (4/3)
MAX_ARCHIVE_BYTES = 14 * 2 ** 20


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
        if folder is None or not (folder / CHECKPOINT).is_file():
            return 0
        saved = read_checkpoint(folder / CHECKPOINT).get("identity")
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
            if folder.name.startswith("."):  # an archive being unpacked
                continue
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
        why = record_problem(record)
        if why:
            return f"run.json is not a run record ({why})"
        if not (folder / record.get("checkpoint", CHECKPOINT)).is_file():
            return f"its samples ({record.get('checkpoint', CHECKPOINT)}) are missing"
        return ""

    @classmethod
    def check(cls, folder: Path) -> None:
        """Raise ValueError unless ``folder`` is a run whose record and samples can be read."""
        why = cls._unreadable(folder)
        if why:
            raise ValueError(f"not a run folder: {why}")
        record = json.loads((folder / "run.json").read_text())
        try:
            read_checkpoint(folder / record.get("checkpoint", CHECKPOINT))
        except CheckpointError as err:
            raise ValueError(f"its samples cannot be read ({err})") from None

    @classmethod
    def add_folder(cls, source: str | Path) -> str:
        """Copy a run folder from elsewhere on this machine (a dashboard run's or an `mlepi mc`
        folder) into the runs directory after checking it; returns its name there."""
        source = Path(source).expanduser()
        try:
            cls.check(source)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None
        files = [f for f in source.iterdir() if f.is_file() and not f.name.startswith(".")]
        size = sum(f.stat().st_size for f in files)
        if size > MAX_FOLDER_BYTES:
            raise ValueError(f"{source} holds {size / 2**20:.0f} MiB, over the {MAX_FOLDER_BYTES / 2**20:.0f} MiB "
                             f"a run folder may bring")
        return cls._unpack(pack(source), source.name)

    @classmethod
    def add_archive(cls, data: bytes, filename: str = "run.zip") -> str:
        """A run archive (zip or tar, ``run_archive.py``) unpacked into the runs directory after
        checking every entry and the run it holds; returns the run's name there."""
        if cls.root is None:
            raise ValueError("the server has no runs directory (`mlepi dashboard --runs DIR`)")
        if len(data) > MAX_ARCHIVE_BYTES:
            raise ValueError(f"{filename} is {len(data) / 2**20:.1f} MiB, over the {MAX_ARCHIVE_BYTES / 2**20:.0f} MiB "
                             f"an uploaded run archive may be; add a larger run by its folder's path")
        return cls._unpack(data, filename)

    @classmethod
    def _unpack(cls, data: bytes, filename: str) -> str:
        if cls.root is None:
            raise ValueError("the server has no runs directory (`mlepi dashboard --runs DIR`)")
        cls.root.mkdir(parents=True, exist_ok=True)
        stem = Path(filename).name.split(".")[0] or "run"
        try:
            return unpack(data, cls.root, stem, check=cls.check).name
        except ValueError as err:
            raise ValueError(f"{filename}: {err}") from None

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
            state = read_checkpoint(folder / record.get("checkpoint", CHECKPOINT))
        except CheckpointError as err:
            raise ValueError(f"run {name!r} cannot be opened: its samples cannot be read ({err})") from None
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


def record_problem(record) -> str:
    """What is wrong with a ``run.json`` record ("" when every field the listing and the plots
    read has its type): a foreign or hand-edited file must not break the page."""
    if not isinstance(record, dict):
        return "not an object"
    number = (int, float)
    for key, kind in (("label", str), ("written", str), ("where", str), ("machine", str), ("models", dict),
                      ("settings", dict), ("static", dict), ("query", dict), ("spectral_axes", dict),
                      ("temperatures", list), ("checkpoint", str)):
        if key in record and not isinstance(record[key], kind):
            return f"{key} is not a {kind.__name__}"
    if not isinstance(record.get("temperatures"), list):
        return "no temperatures"
    for row in record["temperatures"]:
        if not isinstance(row, dict) or not all(isinstance(row.get(k), number) for k in ("T", "vf", "vf_se", "samples")):
            return "a temperature row lacks T, vf, vf_se or samples"
    if not all(isinstance(m, dict) for m in record.get("models", {}).values()):
        return "a model entry is not an object"
    name = record.get("checkpoint", CHECKPOINT)
    if name.endswith(".pkl"):
        return "its samples are a pickle of an earlier mlepi, which this one does not read: run it again"
    if not (SAFE_NAME.match(name) and name.startswith("checkpoint_") and name.endswith(".npz")):
        return f"its checkpoint name {name!r} is not checkpoint_*.npz"
    return ""
