"""The streaming Monte Carlo EPI run (Eq. 1-2 of the MLEPI paper) that the CLI and app drive.

    structure -> force model -> phonons (phonopy) -> thermal samples y_j = y_eq + du_j(T)
    -> Hamiltonian model -> H_ij(R), S_ij(R) -> bands near K -> v_F(y_j)
    <v_F(T)> = mean_j v_F(y_j) with its standard error, updated batch by batch.

Sample j draws its normals from SeedSequence([seed, j]) (keyed), so a run gives the
same samples whatever the batch size or order, a resumed run continues exactly, and
the same j is used at every temperature (common random numbers): the paired error of
v_F(T) - v_F(T') is reported beside the plain ones.
"""

from __future__ import annotations

import concurrent.futures.thread  # noqa: F401 (registers the pools' exit-time join before ours)
import os
import threading
from concurrent.futures import ThreadPoolExecutor
import time
from dataclasses import asdict, dataclass, field
from typing import Iterator

import numpy as np
import torch
from ase import Atoms

from .band_edges import GAPPED_EV, GapProbe
from .checkpoints import read_checkpoint, write_checkpoint
from .layers import orbital_layers
from .mode_curvature import ModeCurvature
from .observables import BandProbe
from .spectral import SpectralMap
from .statistics import RunningStats, control_variate_mean, estimator_units
from .phonons import harmonic_phonons, relax_positions
from .sampling import SAMPLINGS, ThermalSampler
from .seams import ForceModel, HamiltonianModel, refusal

# Set when the interpreter begins to exit, before thread pools join their threads (threading's
# exit callbacks run newest first): a run paused in a pool thread then ends instead of
# holding the process forever.
_EXITING = threading.Event()
if hasattr(threading, "_register_atexit"):
    threading._register_atexit(_EXITING.set)


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def sample_pool(workers: int) -> ThreadPoolExecutor:
    """The process's pool for the samples of a batch (``MonteCarloEngine._in_parallel``), at
    least ``workers`` threads (the cores; engines of several sessions share it)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers < workers:
            _POOL = ThreadPoolExecutor(max_workers=max(workers, os.cpu_count() or 1),
                                       thread_name_prefix="mlepi-sample")
        return _POOL


# below this many samples the curvature estimator reports the plain mean (its two regression
# coefficients come from the samples themselves)
CURVATURE_MIN_SAMPLES = 8
TARGET_MIN_SAMPLES = 32  # a standard error from fewer samples is itself too uncertain to stop on
SPECTRAL_FIRST = 4  # the averaged A(k, E) holds the first samples, a picture from the first batch


def draws_spectrum(j: int, spectral_every: int) -> bool:
    """Whether sample j adds to the averaged A(k, E): j < SPECTRAL_FIRST or every N-th (0: never)."""
    return bool(spectral_every) and (j < SPECTRAL_FIRST or j % spectral_every == 0)


@dataclass(frozen=True)
class MCSettings:
    """What a Monte Carlo run samples: temperatures (K), samples per temperature, seed,
    batch size, antithetic pairs, the n x n supercell, and ``displacement_scale``
    (1 = thermal; 0 reproduces the static lattice, a check). ``sampling="zg"`` replaces
    the Monte Carlo draws by ``n_samples`` special displacements (ZG pairs +u, -u,
    ``special_displacements.py``), ``"zg-gh"`` by ZG configurations with Gauss-Hermite
    amplitudes (blocks of six, exact to fourth order)."""

    temperatures: tuple[float, ...] = (0.0, 300.0)
    n_samples: int = 200
    seed: int = 0
    batch_size: int = 4
    antithetic: bool = False
    supercell: int = 6
    n_bands: int = 4
    displacement_scale: float = 1.0
    # A(k, E) along the path for samples j < SPECTRAL_FIRST and j % spectral_every == 0 (0: off),
    # at path_points points per segment, each its own eigen-solve (0: the coarse commensurate
    # points). A 6x6 map of 30 points per segment takes 50 solves (4.2 s here), the v_F probe 6
    # (0.44 s) per sample: every 32nd sample keeps the map at about a fifth of the loop
    # (benchmarks/spectral_path.py, docs/physics.md#band-unfolding).
    spectral_every: int = 32
    path_points: int = 30
    sampling: str = "mc"  # "mc": Monte Carlo; "zg", "zg-gh": special displacements (SAMPLINGS)
    # "plain": sample means; "curvature": the same samples regressed on the mode-curvature and
    # Gamma-point control variates (mode_curvature.py), the same answer with a smaller error
    estimator: str = "plain"
    # stop a temperature once its v_F (a gapped material's gap) has this standard error
    # (10^6 m/s or eV; 0: run all n_samples), after at least TARGET_MIN_SAMPLES samples
    target_se: float = 0.0

    def __post_init__(self):
        if not all(np.isfinite(t) and t >= 0 for t in self.temperatures):
            raise ValueError(f"temperatures must be finite and >= 0 K, got {self.temperatures}")
        if self.seed < 0:
            raise ValueError(f"the seed must be >= 0 (numpy's SeedSequence), got {self.seed}")
        if self.n_samples < 1 or self.batch_size < 1:
            raise ValueError("n_samples and batch_size must be positive")
        if self.supercell < 1 or self.supercell % 3:
            raise ValueError(f"the supercell must be n x n with n a multiple of 3 (K and K' fold "
                             f"onto the same k), got {self.supercell}")
        if self.spectral_every < 0:
            raise ValueError("spectral_every must be >= 0")
        if not 0 <= self.path_points <= 300:
            raise ValueError(f"path_points (per path segment) must be 0 (coarse) to 300, got {self.path_points}")
        if self.antithetic and self.n_samples % 2:
            raise ValueError("antithetic sampling needs an even number of samples")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if self.sampling != "mc" and self.antithetic:
            raise ValueError("ZG configurations come in +u, -u pairs already; drop antithetic")
        if not (np.isfinite(self.target_se) and self.target_se >= 0):
            raise ValueError(f"target_se must be >= 0 (0: off), got {self.target_se}")
        if self.estimator not in ("plain", "curvature"):
            raise ValueError(f"estimator must be 'plain' or 'curvature', got {self.estimator!r}")
        if self.estimator == "curvature" and (self.sampling != "mc" or self.antithetic):
            raise ValueError("the curvature estimator takes plain Monte Carlo samples (sampling 'mc', "
                             "no antithetic pairs)")
        if self.sampling == "zg" and self.n_samples > 1 and self.n_samples % 2:
            raise ValueError("ZG sampling takes 1 configuration or an even number (pairs +u, -u)")
        if self.sampling == "zg-gh" and self.n_samples % 6:
            raise ValueError("Gauss-Hermite ZG sampling takes whole blocks: a multiple of 6 configurations")


@dataclass
class BatchResult:
    """One finished batch: per-sample observables and the running estimate after it."""

    temperature: float
    first: int
    vf: np.ndarray  # (count,) 10^6 m/s
    gamma1: np.ndarray  # (count,) eV (four-band fit; NaN for a monolayer)
    vf_mean: float
    vf_se: float
    n_done: int
    seconds: dict = field(default_factory=dict)  # per stage, for this batch


class MonteCarloEngine:
    """A Monte Carlo EPI run on one structure with one force model and one Hamiltonian model.

    ``run(T)`` yields ``BatchResult`` batch by batch; ``pause()``, ``resume()`` and
    ``cancel()`` act between batches from any thread. Results accumulate in
    ``per_sample[T]`` (v_F and gamma_1 of every finished sample, by index), so a
    cancelled temperature continues where it stopped when run again. With more than one
    layer, each sample's A(k, E) comes with its layer-projected parts A_L(k, E) from the
    same solve (``SpectralMap.layer_spectral_function``; ``layer_spectral_mean``).
    """

    def __init__(self, primitive: Atoms, force_model: ForceModel,
                 hamiltonian_model: HamiltonianModel, settings: MCSettings = MCSettings(),
                 lattice: tuple | None = None, device: str | None = None, threads: int | None = None):
        why = refusal(hamiltonian_model, primitive)
        if why:
            raise ValueError(f"no Monte Carlo for this structure: {why}")
        self.settings = settings
        self.device = device  # of the Bloch sums, eigen-solves and unfolding (None: CPU)
        # the cores a batch's samples share on a CPU (default: torch's thread count)
        self.threads = int(threads or torch.get_num_threads())
        self.force_model, self.hamiltonian_model = force_model, hamiltonian_model
        t0 = time.perf_counter()
        self.primitive, self.phonon = lattice or prepare_lattice(primitive, force_model, settings.supercell)
        self.sampler = ThermalSampler(self.phonon, self.primitive)
        ideal = self.sampler.ideal
        (pristine,) = hamiltonian_model.blocks([ideal])
        self.probe = BandProbe(self.primitive, ideal, n_bands=settings.n_bands,
                               device=device).prepare(pristine)
        fit = self.probe.four_band_fit(self.probe.pristine_bands)
        self.static = {"vf": self.probe.static, "gamma1": fit.get("gamma1_ev", float("nan"))}
        # a gapped material's observable is its gap (band_edges.py), measured when the static lattice
        # has one; graphene and its stacks are gapless (v_F is theirs) and skip the full solve it takes
        self.gap_probe = None
        if set(ideal.get_chemical_symbols()) != {"C"}:
            electrons = pristine.meta.get("valence_electrons", BandProbe.valence_electrons(ideal))
            gap_probe = GapProbe(self.primitive, ideal, self.probe.unfolder, int(round(electrons / 2)),
                                 device=device).prepare(pristine)
            self.gap_probe = gap_probe if gap_probe.static["gap"] > GAPPED_EV else None
        if self.gap_probe is not None:
            edges = self.gap_probe.static
            self.static.update(gap=edges["gap"], gap_at=f"{edges['vbm_at']} -> {edges['cbm_at']}")
        # about 20 path points at any supercell: the (n x grid) grid with n x grid >= 18
        grid = max(1, -(-18 // settings.supercell))
        self.spectral = SpectralMap(self.primitive, ideal, self.probe.unfolder, self.probe.sigma, grid=grid,
                                    device=device, points_per_segment=settings.path_points)
        # the layer of each orbital (compact layout), for the layer-projected A_L(k, E)
        self.orbital_layer = orbital_layers(ideal, pristine)
        self.n_layers = int(self.orbital_layer.max()) + 1
        if self.n_layers > 1:
            self.static_spectrum, self.static_layer_spectrum = self.spectral.layer_spectral_function(
                self.probe.tensors(pristine), self.orbital_layer, self.n_layers, return_total=True)
        else:
            self.static_spectrum = self.spectral.spectral_function(self.probe.tensors(pristine))
            self.static_layer_spectrum = self.static_spectrum[None]
        self.static_near_k = self.near_k_bands(self.probe.pristine_bands)
        self.setup_seconds = time.perf_counter() - t0
        self.per_sample: dict[float, dict[int, tuple[float, float]]] = {}
        self.gaps: dict[float, dict[int, float]] = {}  # T -> j -> band gap (eV) of a gapped material
        self.near_k: dict[float, dict[int, np.ndarray]] = {}  # T -> j -> (n_q, n_bands) eV
        self.spectra: dict[float, dict] = {}  # T -> {"sum": (n_path, n_E), "samples": set}
        self.layer_spectra: dict[float, dict] = {}  # T -> {"sum": (n_layers, n_path, n_E), "samples": set}
        self._go = threading.Event()
        self._go.set()
        self._cancel = threading.Event()
        self._held = threading.Event()  # set while a paused run waits between batches
        self._curvature: ModeCurvature | None = None
        self._controls: dict[float, dict[int, dict]] = {}  # T -> j -> {observable: C_j(T)}

    # --- control, from any thread ----------------------------------------------------
    def reset(self) -> None:
        """Forget every finished sample (all temperatures)."""
        self.per_sample.clear()
        self.gaps.clear()
        self.near_k.clear()
        self.spectra.clear()
        self.layer_spectra.clear()
        self._controls.clear()

    # --- checkpoints --------------------------------------------------------------------
    def state(self) -> dict:
        """The finished samples (plain Python and numpy) for ``save_checkpoint``."""
        return {"settings": asdict(self.settings), "per_sample": self.per_sample, "gaps": self.gaps,
                "near_k": self.near_k,
                "spectra": {t: {"sum": a["sum"], "samples": sorted(a["samples"])} for t, a in self.spectra.items()},
                "layer_spectra": {t: {"sum": a["sum"], "samples": sorted(a["samples"])}
                                  for t, a in self.layer_spectra.items()},
                **({"mode_curvature": {"frequencies_thz": self._curvature.frequencies_thz,
                                       "curvature": self._curvature.curvature, "slope": self._curvature.slope}}
                   if self._curvature is not None else {})}

    def load_state(self, state: dict) -> None:
        """Continue from ``state()`` of a run with the same seed, sampling and cell."""
        mine, saved = asdict(self.settings), state["settings"]
        keys = ("seed", "antithetic", "supercell", "n_bands", "displacement_scale", "spectral_every", "path_points",
                "sampling")
        changed = [k for k in keys if mine[k] != saved.get(k, MCSettings.__dataclass_fields__[k].default)]
        if changed:
            raise ValueError(f"the saved run used other settings ({', '.join(changed)}): its samples "
                             f"are not this run's")
        self.per_sample = {float(t): dict(v) for t, v in state["per_sample"].items()}
        self.gaps = {float(t): dict(v) for t, v in state.get("gaps", {}).items()}
        self.near_k = {float(t): dict(v) for t, v in state["near_k"].items()}
        self.spectra = {float(t): {"sum": a["sum"], "samples": set(a["samples"])}
                        for t, a in state["spectra"].items()}
        # checkpoints written before the layer parts existed hold none
        self.layer_spectra = {float(t): {"sum": a["sum"], "samples": set(a["samples"])}
                              for t, a in state.get("layer_spectra", {}).items()}
        saved = state.get("mode_curvature")
        if saved and self._curvature is None:  # the same phonons: the curvatures are this run's
            curvature = ModeCurvature(self.sampler)
            if np.array_equal(np.asarray(saved["frequencies_thz"]), curvature.frequencies_thz):
                curvature.curvature = {k: np.asarray(v) for k, v in saved["curvature"].items()}
                curvature.slope = {k: np.asarray(v) for k, v in saved["slope"].items()}
                self._curvature = curvature

    def save_checkpoint(self, path, extra: dict | None = None) -> None:
        """Write the finished samples atomically (``checkpoints.py``: plain arrays, no pickle)."""
        write_checkpoint(path, self.state(), extra)

    def load_checkpoint(self, path) -> int:
        """Load a checkpoint written by ``save_checkpoint``; returns the samples it held."""
        self.load_state(read_checkpoint(path))
        return sum(len(v) for v in self.per_sample.values())

    def pause(self) -> None:
        self._go.clear()

    def resume(self) -> None:
        self._go.set()

    def cancel(self) -> None:
        self._cancel.set()
        self._go.set()

    @property
    def held(self) -> bool:
        """Whether a paused run is waiting between batches: every finished batch has been
        yielded, and no sample is computed until ``resume`` or ``cancel``."""
        return self._held.is_set()

    def _hold(self, timeout: float | None = None) -> None:
        """Wait while paused (at most ``timeout`` seconds). An interpreter that exits cancels
        the run, so a paused run in a worker thread cannot keep the process from ending."""
        if self._go.is_set():
            return
        self._held.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self._go.wait(0.25 if timeout is None else min(0.25, timeout)):
                if _EXITING.is_set():
                    self._cancel.set()
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    return
        finally:
            self._held.clear()

    @property
    def cancelled(self) -> bool:
        """Whether the current run was cancelled (cleared when a run starts)."""
        return self._cancel.is_set()

    # --- the run -----------------------------------------------------------------------
    def pending(self, temperature: float) -> list[tuple[int, int]]:
        """(first, count) of the batches still to sample at ``temperature``, in order."""
        s = self.settings
        done = self.per_sample.get(float(temperature), {})
        out = []
        for j in range(0, s.n_samples, s.batch_size):
            todo = [k for k in range(j, min(j + s.batch_size, s.n_samples)) if k not in done]
            if todo:
                out.append((todo[0], todo[-1] - todo[0] + 1))
        return out

    def compute_batch(self, temperature: float, first: int, count: int,
                      displacements: bool = False) -> dict:
        """Observables of samples first .. first+count-1 at ``temperature``, changing no state:
        the unit of work a worker does (``absorb`` merges it). With ``displacements`` the
        result also holds each sample's displacements from the ideal supercell (Angstrom)."""
        t = time.perf_counter()
        atoms = self._sample_batch(temperature, first, count)
        sampling = time.perf_counter() - t
        out = {"T": float(temperature), "first": first, **self.observe(atoms, first)}
        out["seconds"] = {"sampling": sampling, **out["seconds"]}
        if displacements:
            out["displacements_a"] = {first + k: a.positions - self.sampler.ideal.positions
                                      for k, a in enumerate(atoms)}
        return out

    def observe(self, atoms: list[Atoms], first: int = 0, spectra: bool = True) -> dict:
        """The observables of displaced supercells ``atoms`` (samples first, first + 1, ...):
        v_F, gamma_1, the gap of a gapped material, the near-K bands and, for the samples
        ``draws_spectrum`` picks (``spectra``), A(k, E); with the seconds of each stage
        (summed over the samples, which run side by side on a CPU: ``_in_parallel``)."""
        model = self.hamiltonian_model
        seconds = {key: 0.0 for key in ("hamiltonian", "bloch", "eig", "unfold", "fit", "spectral")}
        blocks = None
        if not getattr(model, "thread_safe", False):  # the model's own threads, in this thread
            t = time.perf_counter()
            blocks = model.blocks(atoms)
            seconds["hamiltonian"] = time.perf_counter() - t

        def one(k: int) -> dict:
            sec = {}
            if blocks is None:
                t = time.perf_counter()
                (b,) = model.blocks([atoms[k]])
                sec["hamiltonian"] = time.perf_counter() - t
            else:
                b = blocks[k]
            return self._observe_one(b, first + k, sec)

        out = {"vf": [], "gamma1": [], "gaps": [], "near_k": {}, "spectra": {}, "layer_spectra": {},
               "seconds": seconds}
        for k, part in enumerate(self._in_parallel(one, len(atoms))):
            for key in ("vf", "gamma1", "gaps"):
                out[key] += part[key]
            out["near_k"].update(part["near_k"])
            for key, value in part["seconds"].items():
                seconds[key] = seconds.get(key, 0.0) + value
            # a map is fifty solves: it takes every core here rather than hold up its batch-mates
            if spectra and draws_spectrum(first + k, self.settings.spectral_every):
                t = time.perf_counter()
                self._spectrum(part["tensors"], first + k, out)
                seconds["spectral"] += time.perf_counter() - t
        return out

    def _in_parallel(self, fn, n: int) -> list:
        """[fn(0), .., fn(n - 1)]: on a CPU, side by side in ``sample_pool`` threads, the cores
        (``threads``) shared among them, each torch op on its own share (one thread for one
        sample per core: no team of threads waits at a barrier for a core another process
        holds); in this thread when one worker would do."""
        workers = self.workers(n)
        if workers <= 1:
            return [fn(k) for k in range(n)]
        share = max(1, self.threads // workers)

        def task(k):
            torch.set_num_threads(share)  # per thread (OpenMP): the caller's count is untouched
            return fn(k)

        return list(sample_pool(self.threads).map(task, range(n)))

    def workers(self, n: int) -> int:
        """How many of a batch's ``n`` samples run side by side: on a CPU with a thread-safe
        model, up to the cores; else 1 (the model's own threads, one sample at a time)."""
        if self.device not in (None, "cpu") or not getattr(self.hamiltonian_model, "thread_safe", False):
            return 1
        return max(1, min(n, self.threads))

    def _observe_one(self, blocks, j: int, seconds: dict) -> dict:
        """``observe`` for one sample j with its Hamiltonian ``blocks``, A(k, E) aside (the
        device tensors of its blocks come back for it); stage seconds added to ``seconds``."""
        s = self.settings
        for key in ("bloch", "eig", "unfold", "fit"):
            seconds.setdefault(key, 0.0)
        out = {"vf": [], "gamma1": [], "gaps": [], "near_k": {}, "seconds": seconds}
        out["tensors"] = bt = self.probe.tensors(blocks)
        bands = self.probe.band_energies(bt, seconds)
        t = time.perf_counter()
        out["vf"].append(self.probe.fermi_velocity(bands))
        out["gamma1"].append(self.probe.four_band_fit(bands).get("gamma1_ev", float("nan"))
                             if s.n_bands == 4 else float("nan"))
        out["near_k"][j] = self.near_k_bands(bands)
        seconds["fit"] += time.perf_counter() - t
        if self.gap_probe is not None:
            t = time.perf_counter()
            out["gaps"].append(self.gap_probe.gaps(self.gap_probe.edges(bt))["gap"])
            seconds["gap"] = seconds.get("gap", 0.0) + time.perf_counter() - t
        return out

    def _spectrum(self, bt, j: int, out: dict) -> None:
        """Sample j's A(k, E) (and its layer parts, from the same solve) into ``out``."""
        if self.n_layers > 1:
            out["spectra"][j], out["layer_spectra"][j] = self.spectral.layer_spectral_function(
                bt, self.orbital_layer, self.n_layers, return_total=True)
        else:
            out["spectra"][j] = self.spectral.spectral_function(bt)

    def _sample_batch(self, temperature: float, first: int, count: int) -> list:
        """The displaced supercells of samples first .. first+count-1, as ``compute_batch`` uses them."""
        s = self.settings
        atoms = self.sampler.samples(temperature, first, count, s.seed, s.antithetic, s.sampling)
        for a in atoms:  # the scale is 1 for thermal runs; 0 gives the static lattice
            a.positions = self.sampler.ideal.positions + s.displacement_scale * (
                a.positions - self.sampler.ideal.positions)
        return atoms

    def sample_atoms(self, temperature: float, index: int) -> Atoms:
        """The displaced supercell of Monte Carlo sample ``index`` at ``temperature`` (K),
        the same atoms ``compute_batch`` gives the Hamiltonian model (keyed stream, any batch)."""
        (atoms,) = self._sample_batch(temperature, int(index), 1)
        return atoms

    def absorb(self, result: dict) -> BatchResult:
        """Merge a ``compute_batch`` result into the run (samples already held are kept)."""
        temperature, first = result["T"], result["first"]
        done = self.per_sample.setdefault(temperature, {})
        near = self.near_k.setdefault(temperature, {})
        spectra = self.spectra.setdefault(temperature, {"sum": 0.0, "samples": set()})
        for k, (v, g) in enumerate(zip(result["vf"], result["gamma1"])):
            done[first + k] = (v, g)
        if result.get("gaps"):
            gaps = self.gaps.setdefault(temperature, {})
            for k, gap in enumerate(result["gaps"]):
                gaps[first + k] = float(gap)
        near.update(result["near_k"])
        for j in sorted(result["spectra"]):
            if j not in spectra["samples"]:
                spectra["sum"] = spectra["sum"] + result["spectra"][j]
                spectra["samples"].add(j)
        if result.get("layer_spectra"):
            layers = self.layer_spectra.setdefault(temperature, {"sum": 0.0, "samples": set()})
            for j in sorted(result["layer_spectra"]):
                if j not in layers["samples"]:
                    layers["sum"] = layers["sum"] + result["layer_spectra"][j]
                    layers["samples"].add(j)
        stats = self.statistics(temperature)
        return BatchResult(temperature, first, np.array(result["vf"]), np.array(result["gamma1"]), stats["vf"],
                           stats["vf_se"], len(done), result["seconds"])

    def run(self, temperature: float) -> Iterator[BatchResult]:
        """Sample ``temperature`` until ``n_samples`` are done, yielding after each batch."""
        self._cancel.clear()
        if self.settings.estimator == "curvature" and self.mode_curvature() is None:
            return
        for first, count in self.pending(temperature):
            if self.reached_target(temperature):
                return
            self._hold()
            if self._cancel.is_set():
                return
            yield self.absorb(self.compute_batch(temperature, first, count))

    def reached_target(self, temperature: float) -> bool:
        """Whether ``temperature`` has at least TARGET_MIN_SAMPLES samples and its observable
        (v_F; a gapped material's gap) a standard error at or below ``settings.target_se``."""
        s = self.settings
        if s.target_se <= 0 or len(self.per_sample.get(float(temperature), {})) < TARGET_MIN_SAMPLES:
            return False
        name = "gap" if self.gap_probe is not None else "vf"
        return bool(self.statistics(temperature)[name + "_se"] <= s.target_se)

    def run_all(self) -> Iterator[BatchResult]:
        """All temperatures of the settings, one after the other."""
        for temperature in self.settings.temperatures:
            yield from self.run(temperature)
            if self._cancel.is_set():
                return

    def mode_curvature(self, progress=None) -> ModeCurvature | None:
        """The curvatures of v_F, gamma_1 (and a gap) along every moving mode of the supercell
        (``mode_curvature.py``), computed on first use: one solve per mode, in batches, each
        reported to ``progress(done, total)``. None if the run is cancelled meanwhile."""
        if self._curvature is not None:
            return self._curvature
        curvature = ModeCurvature(self.sampler)
        probes = curvature.probes()
        names = ["vf", "gamma1"] + (["gap"] if self.gap_probe is not None else [])
        values = {name: [] for name in names}
        step = max(self.settings.batch_size, 8)
        for first in range(0, len(probes), step):
            if self._cancel.is_set():
                return None
            atoms = []
            for u in curvature.displacements(probes[first:first + step]):
                a = self.sampler.ideal.copy()
                a.positions += u
                atoms.append(a)
            out = self.observe(atoms, spectra=False)
            for name in names:
                values[name] += out["gaps" if name == "gap" else name]
            if progress is not None:
                progress(min(first + step, len(probes)), len(probes))
        curvature.fit({name: self.static[name] for name in names}, values)
        self._curvature = curvature
        return curvature

    def controls(self, temperature: float, idx: np.ndarray) -> dict[str, np.ndarray]:
        """{observable: (n, 2)} the control variates C(T) and L(T) of samples ``idx`` at
        ``temperature`` for the curvature estimator (``ModeCurvature.controls``), cached."""
        t = float(temperature)
        cache = self._controls.setdefault(t, {})
        todo = np.array([j for j in idx if j not in cache], dtype=int)
        if len(todo):
            c = self._curvature.controls(t, todo, self.settings.seed)
            for k, j in enumerate(todo):
                cache[int(j)] = {name: v[k] for name, v in c.items()}
        return {name: np.array([cache[int(j)][name] for j in idx]) for name in self._curvature.curvature}

    # --- statistics ---------------------------------------------------------------------
    def near_k_bands(self, bands: np.ndarray) -> np.ndarray:
        """(n_q, n_bands) eV about E_F: a sample's bands at |k - K| = q, averaged over the
        directions and both valleys (the Dirac cone's radial profile)."""
        n_q = len(self.probe.q_values)
        return bands.reshape(n_q, -1, self.settings.n_bands).mean(axis=1) - self.probe.sigma

    def band_profile(self, temperature: float) -> dict:
        """Mean and standard error over samples of the near-K band energies (eV about E_F)."""
        rows = list(self.near_k.get(float(temperature), {}).values())
        out = {"q": np.asarray(self.probe.q_values), "static": self.static_near_k}
        if rows:
            x = np.array(rows)
            out["mean"] = x.mean(axis=0)
            out["se"] = x.std(axis=0, ddof=1) / np.sqrt(len(x)) if len(x) > 1 else np.full_like(x[0], np.nan)
        return out

    def spectral_mean(self, temperature: float) -> tuple[np.ndarray, int]:
        """The configuration-averaged A(k, E) at ``temperature`` and how many samples it holds."""
        acc = self.spectra.get(float(temperature))
        if not acc or not acc["samples"]:
            return self.static_spectrum, 0
        return acc["sum"] / len(acc["samples"]), len(acc["samples"])

    def layer_spectral_mean(self, temperature: float) -> tuple[np.ndarray, int]:
        """The configuration-averaged layer-projected A_L(k, E) (n_layers, n_path, n_E) at
        ``temperature`` and how many samples it holds (static lattice's if none); its sum
        over layers is ``spectral_mean`` over the same samples. One layer: A itself."""
        if self.n_layers == 1:
            mean, count = self.spectral_mean(temperature)
            return mean[None], count
        acc = self.layer_spectra.get(float(temperature))
        if not acc or not acc["samples"]:
            return self.static_layer_spectrum, 0
        return acc["sum"] / len(acc["samples"]), len(acc["samples"])

    def sample_values(self, temperature: float, which: int | str = 0) -> tuple[np.ndarray, np.ndarray]:
        """(sample indices, values) of the finished samples at ``temperature``, in index
        order; ``which`` 0 is v_F (10^6 m/s), 1 is gamma_1 (eV), "gap" the band gap (eV) of
        a gapped material."""
        if which == "gap":
            done = self.gaps.get(float(temperature), {})
            idx = np.array(sorted(done), dtype=int)
            return idx, np.array([done[i] for i in idx])
        done = self.per_sample.get(float(temperature), {})
        idx = np.array(sorted(done), dtype=int)
        return idx, np.array([done[i][which] for i in idx])

    def estimator_units(self, idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Independent units of the estimator: samples, or antithetic / ZG pair means (a lone
        ZG configuration while no pair is complete)."""
        return estimator_units(idx, values, self.settings.antithetic, self.settings.sampling)

    def statistics(self, temperature: float) -> dict:
        """Running mean and standard error of v_F and gamma_1 at ``temperature``."""
        out = {"T": float(temperature)}
        observables = [("vf", 0), ("gamma1", 1)] + ([("gap", "gap")] if self.gap_probe is not None else [])
        curvature = self.settings.estimator == "curvature" and self._curvature is not None
        for name, which in observables:
            idx, values = self.sample_values(temperature, which)
            if curvature and len(idx) >= CURVATURE_MIN_SAMPLES and np.isfinite(values).all():
                out[name], out[name + "_se"] = control_variate_mean(values, self.controls(temperature, idx)[name])
                continue
            stats = RunningStats()
            for v in self.estimator_units(idx, values):
                stats.add(v)
            out[name], out[name + "_se"] = stats.mean if stats.n else float("nan"), stats.std_error
        out["samples"] = len(self.sample_values(temperature)[0])
        out["vf_rel_change"] = out["vf"] / self.static["vf"] - 1.0
        if self.gap_probe is not None:  # the renormalisation (at 0 K: zero-point)
            out["gap_change"] = out["gap"] - self.static["gap"]
        return out

    def paired_difference(self, t1: float, t2: float) -> dict:
        """<v_F(t2) - v_F(t1)> (and, for a gapped material, <E_g(t2) - E_g(t1)>) over the
        samples both temperatures share, with its standard error: common random numbers
        make it far more precise than either value."""
        out = {"T1": t1, "T2": t2}
        for name, which in [("dvf", 0)] + ([("dgap", "gap")] if self.gap_probe is not None else []):
            i1, v1 = self.sample_values(t1, which)
            i2, v2 = self.sample_values(t2, which)
            common, a, b = np.intersect1d(i1, i2, return_indices=True)
            diff = v2[b] - v1[a]
            if (self.settings.estimator == "curvature" and self._curvature is not None
                    and len(common) >= CURVATURE_MIN_SAMPLES and np.isfinite(diff).all()):
                c1, c2 = self.controls(t1, common)[name[1:]], self.controls(t2, common)[name[1:]]
                mean, se = control_variate_mean(diff, c2 - c1)
                out.update({name: mean, name + "_se": se, "pairs": len(common)})
                continue
            stats = RunningStats()
            for unit in self.estimator_units(common, diff):
                stats.add(unit)
            out.update({name: stats.mean, name + "_se": stats.std_error, "pairs": stats.n})
        return out

    def summary(self) -> dict:
        """Static values, per-temperature statistics and paired differences to the first T."""
        temps = [t for t in self.settings.temperatures if self.per_sample.get(float(t))]
        return {"settings": asdict(self.settings), "static": self.static,
                "temperatures": [self.statistics(t) for t in temps],
                "paired_to_first": [self.paired_difference(temps[0], t) for t in temps[1:]],
                "setup_s": self.setup_seconds, "n_imaginary_modes": self.sampler.n_imaginary}


def prepare_lattice(primitive: Atoms, force_model: ForceModel, supercell: int):
    """The relaxed primitive cell and its phonons (n x n force constants): the expensive,
    sample-independent part of a run, shareable between runs on the same structure."""
    relaxed = relax_positions(primitive, force_model)
    return relaxed, harmonic_phonons(relaxed, force_model, supercell)
