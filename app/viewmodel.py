"""The dashboard's state: one ``Session`` (a ``param.Parameterized``) per browser tab.

The view (``app/main.py``) holds widgets and plots only; everything it shows comes
from a Session: the loaded structure, its phonons, and a Monte Carlo run of the
engine (``mlepi_core.engine``) in a background thread. The run publishes a snapshot
after every batch and bumps ``version``; the view polls that and redraws, so the page
never waits on physics. Runs of different tabs share nothing but read-only caches
(loaded models, relaxed lattices and their phonons).

    session = Session()                      # AB bilayer, shipped models
    session.temperature, session.samples = 300, 40
    session.run(); session.wait()            # or pause() / resume() / stop()
    session.snapshot()["vf"], session.results_csv()
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import math
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import param

from app.catalogue import (CACHE, GALLERY, UPLOADED, default_electrons, electron_choices, electron_model,
                           force_choices, force_model, model_elements)
from app.dask_executor import EXECUTORS, DaskExecutor
from mlepi_core.isolated_load import load_isolated
from mlepi_core.limits import check_supercell
from mlepi_core.structures import StructureError, build, stacking_name

MC_MAX_ATOMS = 4  # Monte Carlo (v_F near K) runs on primitive graphene cells: 1x1 monolayer or bilayer
STACKING_MAX_ATOMS = 2000  # stacking_name compares every atom pair of two layers
BATCH = 2  # samples per engine batch: frequent updates; results do not depend on it (keyed samples)


def release_memory() -> None:
    """Hand freed heap pages back to the system (glibc keeps them otherwise, so a closed
    tab's arrays would still count in the server's RSS)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def structure_summary(atoms) -> dict:
    """Formula, atom count, layers and stacking of a structure (for the page)."""
    layers = np.asarray(atoms.arrays["layer"])
    n_layers = int(layers.max()) + 1
    a, b = atoms.cell.lengths()[:2]
    stacking = (stacking_name(atoms) if n_layers != 2 or len(atoms) <= STACKING_MAX_ATOMS
                or "twist_deg" in atoms.info else f"not classified (over {STACKING_MAX_ATOMS:,} atoms)")
    return {"formula": atoms.get_chemical_formula(), "atoms": len(atoms), "layers": n_layers,
            "stacking": stacking, "cell": f"{a:.3f} x {b:.3f} Å, {atoms.cell.angles()[2]:.0f}°"}


class Session(param.Parameterized):
    """The state of one dashboard tab. Parameters are what the user sets; ``status``,
    ``message`` and ``version`` are what the page shows back."""

    structure = param.Selector(objects=list(GALLERY) + [UPLOADED], default="AB bilayer")
    supercell = param.Selector(objects=[3, 6, 9, 12], default=6,
                               doc="n x n sampling supercell (n a multiple of 3: K and K' fold together)")
    forces = param.Selector(objects=list(force_choices()), doc="force model for phonons and sampling")
    electrons = param.Selector(objects=list(electron_choices()), doc="Hamiltonian model for the bands")
    temperature = param.Number(default=300.0, bounds=(0.0, 3000.0), doc="K")
    samples = param.Integer(default=40, bounds=(2, 5000), doc="samples per temperature")
    seed = param.Integer(default=0, bounds=(0, 2 ** 31 - 1))
    antithetic = param.Boolean(default=False, doc="antithetic pairs (+u, -u)")
    executor = param.Selector(objects=list(EXECUTORS), default="local",
                              doc="local: in this server process; dask: sample batches on the server's Dask cluster")
    unit = param.Selector(objects=["cm1", "thz", "mev"], default="cm1", doc="phonon frequency unit")
    show_reference = param.Boolean(default=False, doc="overlay the reference phonon dispersion")
    presentation = param.Boolean(default=False, doc="large fonts, high contrast, colour-blind-safe palette")
    mode = param.Tuple(default=None, length=2, allow_None=True,
                       doc="the selected phonon mode: (index of the q-point on the path, band)")
    show_layers = param.Boolean(default=False, doc="layer-resolved views: branches, A(k, E) and DOS per layer")
    mode_amplitude = param.Number(default=0.3, bounds=(0.01, 2.0), doc="largest displacement shown (A)")
    mode_speed = param.Number(default=1.0, bounds=(0.1, 5.0), doc="animation periods per second")

    status = param.Selector(objects=["idle", "preparing", "running", "paused", "stopping", "stopped",
                                     "done", "error"], default="idle", constant=True)
    message = param.String(default="")
    phonon_status = param.String(default="")
    phonon_failed = param.Boolean(default=False, doc="the structure has no phonons under the chosen force model")
    version = param.Integer(default=0, doc="bumped whenever the shown results change")

    def __init__(self, **params):
        super().__init__(**params)
        self._lock = threading.RLock()
        self._cache_owner = object()  # this tab's share of the uploaded structures' cache entries
        self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="mlepi-session")
        self._uploaded = None
        self._atoms = build(GALLERY[self.structure])
        self._engine = None
        self._engine_key = None
        self._run_future = None
        self._phonons = {}
        self._phonon_future = None
        self._snapshot: dict = {}
        self._history: dict[float, dict] = {}  # T -> v_F point of this structure/settings
        self._pins: list[dict] = []  # finished runs kept for comparison overlays
        self._answers: dict[int, str] = {}  # the lesson's exercises, worked out on request
        self._mode_view = None
        self._mode_future = None
        self._layer_dos = None
        self._check, self._check_future, self._check_cancel = None, None, threading.Event()
        self._exercise_futures: dict = {}
        self._t_start = None
        if self.show_layers:
            self._layers_changed()

    # --- structure ----------------------------------------------------------------------
    @property
    def atoms(self):
        return self._atoms

    def summary(self) -> dict:
        return structure_summary(self._atoms)

    @param.depends("structure", watch=True)
    def _structure_changed(self):
        if self.structure == UPLOADED:
            if self._uploaded is None:
                self.message = "Drop a structure file (any ASE format: CIF, POSCAR, extxyz, ...) to load it."
                return
            self._atoms = self._uploaded
        else:
            self._atoms = build(GALLERY[self.structure])
            self.electrons = default_electrons(GALLERY[self.structure], self.electrons)
        self._new_structure()

    @staticmethod
    def read_upload(filename: str, data: bytes):
        """An uploaded file's structure (with its layers), read and validated in a child
        process with a time and a memory bound (``mlepi_core.isolated_load``), so that a
        reader that crashes or hangs costs one message; StructureError with that message
        otherwise. Safe to call off the server's event loop."""
        suffix = Path(filename or "upload").suffix or ".xyz"
        with tempfile.TemporaryDirectory(prefix="mlepi-upload-") as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(data or b"")
            try:
                return load_isolated(path)
            except StructureError as err:
                text = str(err).replace(str(path), str(filename)).replace(path.name, str(filename))
                raise StructureError(f"Could not use {filename!r}: {text}") from None

    def use_upload(self, filename: str, atoms) -> None:
        """Show ``atoms`` (from ``read_upload``) as the uploaded structure."""
        self._uploaded = atoms
        self.message = f"Loaded {filename}: {atoms.get_chemical_formula()}, {len(atoms)} atoms."
        if self.structure == UPLOADED:
            self._atoms = atoms
            self._new_structure()
        else:
            self.structure = UPLOADED

    def load_upload(self, filename: str, data: bytes) -> bool:
        """Load an uploaded file; on bad input set ``message`` and keep the current structure."""
        try:
            atoms = self.read_upload(filename, data)
        except StructureError as err:
            self.message = str(err)
            return False
        self.use_upload(filename, atoms)
        return True

    def _new_structure(self):
        self.stop()
        with self._lock:
            self._engine, self._engine_key, self._snapshot = None, None, {}
            self._history.clear()
            self._phonons = {}
            self._layer_dos = None
        CACHE.release(self._cache_owner)  # the previous upload's lattices and phonons, unless another tab uses them
        release_memory()
        self.mode = None
        self.version += 1
        self.compute_phonons()

    def unknown_elements(self, label: str) -> list[str]:
        """Elements of the current structure that the force or Hamiltonian model ``label`` does not know."""
        name = {**force_choices(), **electron_choices()}[label]
        return sorted(set(self._atoms.get_chemical_symbols()) - model_elements(name))

    def _knows_not(self, label: str) -> str:
        """"<model> knows C, not Mo, S" when model ``label`` lacks an element of this structure, else ""."""
        missing = self.unknown_elements(label)
        if not missing:
            return ""
        name = {**force_choices(), **electron_choices()}[label]
        return f"{label} knows {', '.join(sorted(model_elements(name)))}, not {', '.join(missing)}"

    def _no_forces(self) -> str:
        """Why this structure has no phonons here ("" when it has): an element the chosen force
        model does not know, or a force-constant cell over the phonon limit (``mlepi_core.limits``)."""
        why = self._knows_not(self.forces)
        if why:
            return (f"No phonons: {why}. The structure is drawn; `mlepi phonons FILE --forces "
                    f"module:Class` computes them with any ASE calculator.")
        try:
            check_supercell(len(self._atoms), self.phonon_supercell(), "phonons")
        except StructureError as err:
            return f"No phonons here: {err}. The structure is drawn."
        return ""

    @property
    def mc_allowed(self) -> tuple[bool, str]:
        why = self._knows_not(self.forces) or self._knows_not(self.electrons)
        if why:
            return False, f"No Monte Carlo for this structure: {why}."
        if len(self._atoms) > MC_MAX_ATOMS:
            return False, (f"Monte Carlo measures v_F near K of a primitive graphene cell (at most "
                           f"{MC_MAX_ATOMS} atoms); this cell has {len(self._atoms)}. Phonons are shown.")
        return True, ""

    # --- phonons ------------------------------------------------------------------------
    def phonon_supercell(self) -> int:
        """The force-constant supercell: the sampling one for primitive cells, else >= 12 A."""
        if len(self._atoms) <= MC_MAX_ATOMS:
            return int(self.supercell)
        return max(1, math.ceil(12.0 / min(self._atoms.cell.lengths()[:2])))

    def lattice(self, force_label: str, size: int):
        from mlepi_core.engine import prepare_lattice

        atoms, name = self._atoms, force_choices()[force_label]
        key = ("lattice", self._structure_key(), size, name)
        return self._cached(key, lambda: prepare_lattice(atoms, force_model(name), size))

    def _cached(self, key: tuple, make):
        """``CACHE.get``: results for an uploaded structure are charged to this tab and
        dropped when no tab uses them (``Cache.release``), the gallery's are kept."""
        upload = any(isinstance(part, tuple) and part[:1] == ("upload",) for part in key)
        return CACHE.get(key, make, owner=self._cache_owner if upload else None)

    def _structure_key(self):
        if self.structure == UPLOADED:
            a = self._atoms
            return ("upload", a.get_chemical_formula(), np.round(a.positions, 6).tobytes(),
                    np.round(np.asarray(a.cell), 6).tobytes())
        return GALLERY[self.structure]

    @param.depends("forces", "supercell", "show_reference", watch=True)
    def compute_phonons(self):
        """Dispersion and DOS of the current structure in the background."""
        no_forces = self._no_forces()
        if no_forces:
            self.phonon_status, self.phonon_failed = no_forces, True
            self.version += 1
            return
        ask = [self.forces] + ([lab for lab in force_choices() if "reference" in lab and lab != self.forces]
                               if self.show_reference else [])
        todo = [lab for lab in ask if (lab, self.phonon_supercell()) not in self._phonons]
        if not todo:
            self.version += 1
            return
        self.phonon_status, self.phonon_failed = "computing phonons ...", False
        self._phonon_future = self._pool.submit(self._phonon_job, todo, self.phonon_supercell(),
                                                self._structure_key())

    def _phonons_of(self, label: str, size: int, key) -> tuple:
        """(Dispersion, (freq_thz, dos)) of the current structure under force model ``label``
        on a ``size`` x ``size`` force-constant cell (shared by every tab through the cache)."""
        from mlepi_core.phonons import density_of_states, dispersion

        def make():
            _, phonon = self.lattice(label, size)
            return dispersion(phonon), density_of_states(phonon)

        return self._cached(("phonons", key, size, force_choices()[label]), make)

    def _phonon_job(self, labels, size, key):
        try:
            t0 = time.perf_counter()
            for label in labels:
                disp, dos = self._phonons_of(label, size, key)
                if key != self._structure_key():
                    return  # the structure changed meanwhile
                self._phonons[(label, size)] = (disp, dos)
            self.phonon_status = f"phonons: {size}x{size} force constants, {time.perf_counter() - t0:.1f} s"
        except Exception as err:
            if key == self._structure_key():
                self.phonon_status, self.phonon_failed = f"phonons failed: {type(err).__name__}: {err}", True
        self.version += 1

    def phonon_curves(self) -> dict:
        """{label: (Dispersion, (freq_thz, dos))} of what has been computed for this view."""
        size = self.phonon_supercell()
        return {lab: v for (lab, s), v in self._phonons.items() if s == size
                and (lab == self.forces or self.show_reference)}

    # --- one phonon mode, or one Monte Carlo sample, to watch ------------------------------
    @param.depends("mode", watch=True)
    def _mode_changed(self):
        self._mode_view = None
        if self.mode is not None:
            self._mode_future = self._pool.submit(self._mode_job, tuple(self.mode), self._structure_key())
        self.version += 1

    def _mode_job(self, mode: tuple[int, int], key) -> None:
        from mlepi_core.modes import mode_at, mode_frames

        try:
            no_forces = self._no_forces()
            if no_forces:
                raise ValueError(no_forces)
            # this view's phonons, computed here if no phonon job has (a link may name a mode first)
            disp = self._phonons_of(self.forces, self.phonon_supercell(), key)[0]
            iq, band = mode
            if not (0 <= iq < len(disp.q_frac) and 0 <= band < disp.freq_thz.shape[1]):
                raise ValueError(f"no mode {iq},{band}: the path has {len(disp.q_frac)} q-points and "
                                 f"{disp.freq_thz.shape[1]} bands")
            relaxed, phonon = self.lattice(self.forces, self.phonon_supercell())
            m = mode_at(phonon, relaxed, disp.q_frac[iq], band)
            atoms, frames = mode_frames(relaxed, m, amplitude_a=1.0, n_frames=24)
            view = {"kind": "mode", "text": m.describe(), "atoms": atoms, "frames": frames,
                    "frequency_thz": m.frequency_thz, "distance": float(disp.distances[iq]),
                    "character": m.character}
        except Exception as err:
            view = {"kind": "error", "text": f"mode {mode}: {type(err).__name__}: {err}"}
        if key == self._structure_key() and tuple(self.mode or ()) == tuple(mode):
            self._mode_view = view
            self.version += 1

    def select_mode_at(self, distance: float, frequency: float) -> tuple[int, int] | None:
        """The mode nearest a click on the dispersion (distance 1/A, frequency in ``unit``)."""
        from mlepi_core.phonons import convert_frequencies

        curves = self.phonon_curves()
        if self.forces not in curves:
            return None
        disp = curves[self.forces][0]
        iq = int(np.abs(disp.distances - distance).argmin())
        band = int(np.abs(convert_frequencies(disp.freq_thz[iq], self.unit) - frequency).argmin())
        self.mode = (iq, band)
        return self.mode

    def show_sample(self, exaggeration: float = 10.0) -> None:
        """Animate the newest Monte Carlo sample's displacement, ``exaggeration`` times enlarged."""
        from mlepi_core.modes import displacement_frames

        engine, snap = self._engine, self.snapshot()
        if engine is None or not snap.get("n_done"):
            raise ValueError("no Monte Carlo sample yet: press Run first")
        t = snap["T"]
        index = int(max(engine.per_sample[t]))
        atoms = engine.sample_atoms(t, index)
        ideal = engine.sampler.ideal
        u = atoms.positions - ideal.positions
        frames = displacement_frames(ideal.positions, u, exaggeration=1.0, n_frames=24)
        rms = float(np.sqrt(np.mean(np.sum(u ** 2, axis=1))))
        self._mode_view = {"kind": "sample", "atoms": ideal, "frames": frames, "exaggeration": exaggeration,
                           "text": f"Monte Carlo sample {index} at {t:g} K: RMS displacement {rms:.4f} Å, "
                                   f"shown × {exaggeration:g}"}
        self.version += 1

    def branch_layer_weight(self) -> np.ndarray | None:
        """(n_q, n_bands) weight of each phonon branch on layer 1 along the shown path, when
        the layer view is on and the structure has two layers or more."""
        from mlepi_core.modes import branch_layer_character

        curves = self.phonon_curves()
        if not self.show_layers or self.forces not in curves or len(set(self._atoms.arrays["layer"])) < 2:
            return None
        disp = curves[self.forces][0]

        def make():
            relaxed, phonon = self.lattice(self.forces, self.phonon_supercell())
            return branch_layer_character(phonon, relaxed, disp.q_frac)[..., 0]
        return self._cached(("branch layers", self._structure_key(), self.phonon_supercell(),
                          force_choices()[self.forces]), make)

    def layer_spectra(self) -> dict | None:
        """The current run's layer-projected <A_L(k, E)> (Mulliken weights in the overlap
        metric, summing to <A(k, E)>) and the static lattice's; None for one layer."""
        engine, snap = self._engine, self.snapshot()
        if engine is None or not snap or engine.n_layers < 2:
            return None
        mean, count = engine.layer_spectral_mean(snap["T"])
        return {"layers": mean, "count": count, "static": engine.static_layer_spectrum,
                "energies": snap["energies"], "k_distances": snap["k_distances"],
                "k_labels": snap["k_labels"], "label_distances": snap["label_distances"],
                "static_spectral": snap["static_spectral"]}

    @param.depends("show_layers", "electrons", "structure", watch=True)
    def _layers_changed(self):
        self._layer_dos = None
        if self.show_layers:
            def job():
                try:
                    self._layer_dos = self.layer_dos()
                except Exception as err:
                    self.message = f"layer DOS failed: {type(err).__name__}: {err}"
                self.version += 1
            self._pool.submit(job)

    def layer_dos_result(self) -> dict | None:
        return self._layer_dos

    def layer_dos(self) -> dict:
        """The static lattice's electronic DOS per layer (primitive-cell k mesh)."""
        from mlepi_core.layers import layer_dos

        name = electron_choices()[self.electrons]
        return self._cached(("layer dos", self._structure_key(), name),
                         lambda: layer_dos(electron_model(name), self._atoms))

    # --- the paper's Fig. 4d, live: one sample against the reference solver ----------------
    def check_reference(self, sample: int | None = None) -> None:
        """Run the electron reference (GFN1-xTB; Slater-Koster if that is the tab's model, the
        reference being itself then) on sample ``sample`` (default the newest) of the current
        run in the background; ``reference_result()`` holds the outcome."""
        from mlepi_core.reference_check import Cancelled, check_sample

        engine, snap = self._engine, self.snapshot()
        if engine is None or not snap.get("n_done"):
            raise ValueError("no Monte Carlo sample yet: press Run first")
        if self._check_future is not None and not self._check_future.done():
            raise RuntimeError("a reference check is already running")
        t = snap["T"]
        index = int(max(engine.per_sample[t]) if sample is None else sample)
        reference = electron_model("reference")
        self._check_cancel.clear()
        self._check = {"status": "running", "T": t, "sample": index,
                       "text": f"running GFN1-xTB on sample {index} at {t:g} K ..."}
        self.version += 1

        def job():
            try:
                out = check_sample(engine, t, index, reference, window_ev=1.0,
                                   cancelled=self._check_cancel.is_set)
                text = (f"sample {index} at {t:g} K: largest |E_ML − E_ref| within 1 eV of E_F = "
                        f"{out['max_abs_diff_mev']:.1f} meV ({out['n_compared']} states; "
                        f"{out['seconds']['total']:.1f} s)")
                self._check = {"status": "done", "T": t, "sample": index, "text": text, "result": out}
            except Cancelled:
                self._check = {"status": "cancelled", "T": t, "sample": index, "text": "reference check cancelled"}
            except Exception as err:
                hint = (" GFN1-xTB needs a cell of 13 Å or more: choose a supercell of 6 x 6 or larger."
                        if "cell too small" in str(err) else "")
                self._check = {"status": "error", "T": t, "sample": index,
                               "text": f"reference check failed: {type(err).__name__}: {err}.{hint}"}
            self.version += 1

        self._check_future = self._pool.submit(job)

    def cancel_reference_check(self) -> None:
        self._check_cancel.set()

    def reference_result(self) -> dict | None:
        return self._check

    def mode_view(self) -> dict | None:
        """What the animation shows: supercell, frames (n_frames, N, 3) at unit amplitude for a
        mode (scale by ``mode_amplitude``) or the true displacement for a sample, and a caption."""
        return self._mode_view

    def animation_frame(self, frame: int) -> np.ndarray | None:
        """Positions (N, 3) of animation frame ``frame`` at the chosen amplitude."""
        view = self._mode_view
        if not view or "frames" not in view:
            return None
        frames = view["frames"]
        ideal = view["atoms"].positions
        scale = self.mode_amplitude if view["kind"] == "mode" else view["exaggeration"]
        return ideal + scale * (frames[frame % len(frames)] - ideal)

    # --- Monte Carlo --------------------------------------------------------------------
    def settings(self):
        from mlepi_core.engine import MCSettings

        n_bands = 2 if len(set(self._atoms.arrays["layer"])) == 1 else 4
        return MCSettings(temperatures=(float(self.temperature),), n_samples=int(self.samples),
                          seed=int(self.seed), batch_size=BATCH, antithetic=bool(self.antithetic),
                          supercell=int(self.supercell), n_bands=n_bands)

    def _set_status(self, status: str, message: str | None = None):
        with param.edit_constant(self):
            self.status = status
        if message is not None:
            self.message = message

    @property
    def busy(self) -> bool:
        return self.status in ("preparing", "running", "paused", "stopping")

    def run(self) -> None:
        """Start (or continue) sampling at the current temperature in the background."""
        if self.busy:
            raise RuntimeError(f"a run is already {self.status}")
        ok, why = self.mc_allowed
        if not ok:
            self._set_status("error", why)
            return
        settings = self.settings()  # validates (even sample count for antithetic, ...)
        self._set_status("preparing", "preparing the lattice, phonons and pristine bands ...")
        self._run_future = self._pool.submit(self._run_job, settings)

    def _engine_for(self, settings):
        from mlepi_core.engine import MonteCarloEngine

        key = (self._structure_key(), settings.supercell, self.forces, self.electrons)
        if self._engine is None or self._engine_key != key:
            lattice = self.lattice(self.forces, settings.supercell)
            electrons = electron_model(electron_choices()[self.electrons])
            engine = MonteCarloEngine(self._atoms, force_model(force_choices()[self.forces]),
                                      electrons, settings, lattice=lattice)
            with self._lock:
                self._engine, self._engine_key = engine, key
                self._history.clear()
        engine = self._engine
        old = engine.settings
        if (old.seed, old.antithetic) != (settings.seed, settings.antithetic):
            engine.reset()  # other random numbers: earlier samples no longer belong
            with self._lock:
                self._history.clear()
        engine.settings = settings
        engine.resume()
        return engine

    def _run_job(self, settings):
        try:
            engine = self._engine_for(settings)
            if self.status == "stopping":
                self._set_status("stopped", "stopped")
                return
            t = settings.temperatures[0]
            self._set_status("running", f"sampling {t:g} K ...")
            self._t_start = time.perf_counter()
            start_count = len(engine.per_sample.get(t, {}))
            self._publish(engine, t, start_count)
            for _ in self._batches(engine, settings, t):
                self._publish(engine, t, start_count)
            stats = engine.statistics(t)
            done = stats["samples"] >= settings.n_samples
            self._publish(engine, t, start_count, final=done)
            if done:
                self._set_status("done", f"{stats['samples']} samples at {t:g} K: v_F = "
                                 f"{stats['vf']:.4f} ± {stats['vf_se']:.4f} × 10⁶ m/s "
                                 f"({100 * stats['vf_rel_change']:+.2f} % vs static)")
            else:
                self._set_status("stopped", f"stopped after {stats['samples']} samples; Run continues")
        except Exception as err:
            self._set_status("error", f"the run failed: {type(err).__name__}: {err}")
        finally:
            self.version += 1

    def _batches(self, engine, settings, t: float):
        """The run at ``t``, in this process or as tasks on the server's Dask cluster (the same
        samples and numbers: keyed random streams)."""
        if self.executor == "local":
            return engine.run(t)
        from mlepi_core.distributed import RunSpec, run_distributed

        self._set_status("running", f"sampling {t:g} K on {DaskExecutor.describe()} ...")
        spec = RunSpec(self._atoms, force_choices()[self.forces], electron_choices()[self.electrons], settings)
        return run_distributed(engine, spec, DaskExecutor.client(), t)

    def _publish(self, engine, t: float, start_count: int, final: bool = False):
        """Copy what the page shows out of the engine (under the lock) and bump ``version``."""
        from mlepi_core.statistics import running_error

        idx, vf = engine.sample_values(t)
        units = engine.estimator_units(idx, vf)
        m = np.arange(1, len(units) + 1)
        mean = np.cumsum(units) / m if len(units) else np.array([])
        spectrum, n_spectral = engine.spectral_mean(t)
        stats = engine.statistics(t)
        elapsed = time.perf_counter() - self._t_start
        new = len(idx) - start_count
        rate = new / elapsed if new > 0 and elapsed > 0 else float("nan")
        left = (engine.settings.n_samples - len(idx)) / rate if rate == rate and rate > 0 else float("nan")
        snap = {"T": t, "n_done": len(idx), "n_total": engine.settings.n_samples,
                "count": m, "running_mean": mean, "running_se": running_error(units),
                "vf": stats["vf"], "vf_se": stats["vf_se"], "gamma1": stats["gamma1"],
                "gamma1_se": stats["gamma1_se"], "static": dict(engine.static),
                "rel_change": stats["vf_rel_change"], "rate": rate, "eta_s": left,
                "spectral": spectrum, "n_spectral": n_spectral,
                "static_spectral": engine.static_spectrum,
                "k_distances": engine.spectral.distances, "energies": engine.spectral.energies,
                "k_labels": list(engine.spectral.labels), "label_distances": engine.spectral.label_distances,
                "near_k": engine.band_profile(t), "setup_s": engine.setup_seconds,
                "n_imaginary": engine.sampler.n_imaginary}
        with self._lock:
            self._snapshot = snap
            if len(idx):
                self._history[t] = {"T": t, "vf": stats["vf"], "vf_se": stats["vf_se"],
                                    "samples": len(idx), "static": engine.static["vf"]}
        self.version += 1

    def pause(self) -> None:
        if self.status == "running" and self._engine is not None:
            self._engine.pause()
            self._set_status("paused", "paused")

    @property
    def held(self) -> bool:
        """Paused, with every finished batch shown and no sample being computed."""
        return self.status == "paused" and self._engine is not None and self._engine.held

    def resume(self) -> None:
        if self.status == "paused" and self._engine is not None:
            self._engine.resume()
            self._set_status("running", "running")

    def stop(self) -> None:
        if self.busy:
            self._set_status("stopping")
            if self._engine is not None:
                self._engine.cancel()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the current run (and phonon job) ends (tests, scripts)."""
        for fut in (self._run_future, self._phonon_future):
            if fut is not None:
                fut.result(timeout=timeout)

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self._snapshot)

    def history(self) -> list[dict]:
        """v_F(T) points of this session's runs on the current structure and models (Fig. 4f)."""
        with self._lock:
            return [self._history[t] for t in sorted(self._history)]

    # --- the lesson's exercises --------------------------------------------------------
    def quick_engine(self, temperatures: tuple[float, ...], n_samples: int, supercell: int = 3):
        """A small Monte Carlo engine of its own on this tab's structure and models (the
        lesson's exercises), leaving the tab's run alone."""
        from mlepi_core.engine import MonteCarloEngine

        ok, why = self.mc_allowed
        if not ok:
            raise ValueError(why)
        settings = dataclasses.replace(self.settings(), temperatures=tuple(temperatures),
                                       n_samples=int(n_samples), supercell=int(supercell), antithetic=False)
        return MonteCarloEngine(self._atoms, force_model(force_choices()[self.forces]),
                                electron_model(electron_choices()[self.electrons]), settings,
                                lattice=self.lattice(self.forces, supercell))

    def solve_exercise(self, number: int) -> None:
        """Work out exercise ``number`` (app.lesson.EXERCISES) in the background; its answer
        appears in ``exercise_answers()``."""
        from app.lesson import EXERCISES

        exercise = EXERCISES[number]
        self._answers[number] = "computing ..."
        self.version += 1

        def job():
            try:
                self._answers[number] = exercise.solve(self)
            except Exception as err:
                self._answers[number] = f"Could not compute this here: {type(err).__name__}: {err}"
            self.version += 1

        self._exercise_futures[number] = self._pool.submit(job)

    def exercise_answers(self) -> dict[int, str]:
        return dict(self._answers)

    # --- the view state in the page URL (app.links) ----------------------------------------
    def to_query(self) -> dict[str, str]:
        """The whole view state as URL query parameters (``app.links.view_query``)."""
        from app.links import view_query

        return view_query(self)

    @classmethod
    def parse_query(cls, query: dict) -> tuple[dict, list[str]]:
        """URL query parameters -> ({parameter: valid value}, [problems]) (``app.links``)."""
        from app.links import parse_query

        return parse_query(query, cls.param)

    def apply_query(self, query: dict) -> list[str]:
        """Set the view from URL query parameters; returns the problems (``app.links``)."""
        from app.links import apply_query

        return apply_query(self, query)

    # --- pinned runs, overlaid on later ones ----------------------------------------------
    def pin(self, label: str | None = None) -> dict:
        """Keep the current run (running v_F with its error band, the spectral peaks, the
        v_F(T) points) to overlay on later runs. Returns the pinned record."""
        from mlepi_core.spectral import spectral_peaks

        snap = self.snapshot()
        if not snap or not snap.get("n_done"):
            raise ValueError("nothing to pin yet: run some samples first")
        label = label or (f"{self.summary()['stacking']} · {snap['T']:g} K · "
                          f"{self.electrons.split(' (')[0]} · {snap['n_done']} samples")
        k, e, hwhm = spectral_peaks(snap["spectral"], snap["energies"], snap["k_distances"])
        record = {"label": label, "T": snap["T"], "vf": snap["vf"], "vf_se": snap["vf_se"],
                  "n": snap["n_done"], "count": np.asarray(snap["count"]).copy(),
                  "running_mean": np.asarray(snap["running_mean"]).copy(),
                  "running_se": np.asarray(snap["running_se"]).copy(),
                  "peaks": {"k": k, "e": e, "hwhm": hwhm}, "history": self.history(),
                  "settings": self.to_query()}
        with self._lock:
            self._pins.append(record)
        self.version += 1
        return record

    def pins(self) -> list[dict]:
        with self._lock:
            return list(self._pins)

    def clear_pins(self) -> None:
        with self._lock:
            self._pins.clear()
        self.version += 1

    # --- results out (app.exports) --------------------------------------------------------
    @property
    def engine(self):
        """The Monte Carlo engine of the current run (None before the first Run)."""
        return self._engine

    def results_dict(self) -> dict:
        """Settings, static and thermal values, v_F(T), pins and the reference check (``app.exports``)."""
        from app.exports import results_dict

        return results_dict(self)

    def results_json(self) -> str:
        return json.dumps(self.results_dict(), indent=1, default=float)

    def results_csv(self) -> str:
        """One row per finished sample: T, sample index, v_F, gamma_1 (``app.exports``)."""
        from app.exports import results_csv

        return results_csv(self)

    def export_html(self) -> str:
        """The current figures and numbers as one self-contained HTML page (``app.exports``)."""
        from app.exports import export_html

        return export_html(self)

    def figure_png(self) -> bytes:
        """The current results as one PNG (``app.exports``)."""
        from app.exports import figure_png

        return figure_png(self)

    def close(self) -> None:
        """End this tab's work (called when the browser session ends)."""
        self.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            self._engine, self._snapshot, self._phonons, self._mode_view = None, {}, {}, None
            self._uploaded, self._pins, self._layer_dos, self._check = None, [], None, None
        CACHE.release(self._cache_owner, retire=True)
        release_memory()
