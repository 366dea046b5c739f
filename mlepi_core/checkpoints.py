"""Monte Carlo checkpoints as plain arrays: one ``.npz`` of numbers and JSON text, read with
``allow_pickle=False``, so a checkpoint from anywhere (a run folder added to the runs
directory, an uploaded run archive) is data and never code.

Layout: ``header`` (JSON: format, the run's settings, the caller's extras, the temperatures
in order) and, for the i-th temperature, ``{part}_samples_{i}`` (sample indices) beside
``{part}_{i}`` (their values): ``values`` (v_F, gamma_1), ``gaps``, ``near_k``
(n, n_q, n_bands) and the spectral sums ``spectra`` and ``layer_spectra`` with the samples
they hold; with the curvature estimator, the mode curvatures and slopes per observable
(``curvature__vf``, ``slope__vf``, ...) and the frequencies they belong to. Floats keep every
bit, so a continued run equals one that never stopped.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .files import write_atomic

FORMAT = 2


class CheckpointError(ValueError):
    """A file that is not a Monte Carlo checkpoint of this mlepi (the reason in the text)."""


def write_checkpoint(path: str | Path, state: dict, extra: dict | None = None) -> Path:
    """``state`` (``MonteCarloEngine.state()``) and JSON-able ``extra`` to ``path``, atomically."""
    temperatures = sorted(set(state["per_sample"]) | set(state["spectra"]))
    header = {"format": FORMAT, "settings": state["settings"], "extra": extra or {}, "temperatures": temperatures}
    arrays = {"header": np.array(json.dumps(header, default=float))}
    for i, t in enumerate(temperatures):
        done = state["per_sample"].get(t, {})
        arrays[f"values_samples_{i}"] = np.array(sorted(done), dtype=np.int64)
        arrays[f"values_{i}"] = np.array([done[j] for j in sorted(done)], dtype=np.float64).reshape(-1, 2)
        for part in ("gaps", "near_k"):
            held = state[part].get(t, {})
            arrays[f"{part}_samples_{i}"] = np.array(sorted(held), dtype=np.int64)
            arrays[f"{part}_{i}"] = np.array([held[j] for j in sorted(held)])
        for part in ("spectra", "layer_spectra"):
            acc = state[part].get(t, {"sum": 0.0, "samples": []})
            arrays[f"{part}_samples_{i}"] = np.array(sorted(acc["samples"]), dtype=np.int64)
            arrays[f"{part}_{i}"] = np.asarray(acc["sum"])

    curvature = state.get("mode_curvature")
    if curvature:  # the curvature estimator's one solve per mode, kept for a continued run
        arrays["curvature_frequencies_thz"] = np.asarray(curvature["frequencies_thz"])
        for part in ("curvature", "slope"):
            for name, values in curvature[part].items():
                arrays[f"{part}__{name}"] = np.asarray(values)

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    return write_atomic(path, save)


def read_checkpoint(path: str | Path) -> dict:
    """The state and extras a ``write_checkpoint`` file holds: {"settings", "per_sample",
    "gaps", "near_k", "spectra", "layer_spectra", **extra}. Anything else (a pickle, a
    damaged or foreign file) raises CheckpointError with the reason."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        header = json.loads(str(arrays["header"]))
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not a Monte Carlo checkpoint of this mlepi (format "
                                  f"{header.get('format') if isinstance(header, dict) else None!r})")
        state = {"settings": dict(header["settings"]), "per_sample": {}, "gaps": {}, "near_k": {},
                 "spectra": {}, "layer_spectra": {}}
        for i, t in enumerate(float(x) for x in header["temperatures"]):
            index = arrays[f"values_samples_{i}"].tolist()
            state["per_sample"][t] = {j: (float(v), float(g)) for j, (v, g) in zip(index, arrays[f"values_{i}"])}
            if len(arrays[f"gaps_samples_{i}"]):
                state["gaps"][t] = {j: float(x) for j, x in zip(arrays[f"gaps_samples_{i}"].tolist(), arrays[f"gaps_{i}"])}
            state["near_k"][t] = dict(zip(arrays[f"near_k_samples_{i}"].tolist(), arrays[f"near_k_{i}"]))
            for part in ("spectra", "layer_spectra"):
                held = arrays[f"{part}_samples_{i}"].tolist()
                if held:
                    state[part][t] = {"sum": arrays[f"{part}_{i}"], "samples": held}
        if "curvature_frequencies_thz" in arrays:
            state["mode_curvature"] = {"frequencies_thz": arrays["curvature_frequencies_thz"],
                                       **{part: {k.split("__", 1)[1]: v for k, v in arrays.items()
                                                 if k.startswith(part + "__")} for part in ("curvature", "slope")}}
        return {**dict(header["extra"]), **state}
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError) as err:
        raise CheckpointError(f"{path}: not a readable Monte Carlo checkpoint ({type(err).__name__}: {err})") from None
