"""Monte Carlo on Dask distributed: sample batches as tasks, the same numbers as one process.

    client engine: pending batches -> client.submit(compute_task, spec, T, first, count)
    worker:        its own MonteCarloEngine for the spec (built once per worker process,
                   models loaded from their files there) -> engine.compute_batch(...)
    client engine: as each future completes -> engine.absorb(result) -> BatchResult
                   (a window of batches in flight: Pause stops handing out more)

Sample j's random numbers are keyed by (seed, j) (docs/physics.md#monte-carlo-sampling), so any number
of workers, batch size or completion order gives the same samples; the statistics are
computed from the per-sample values (sorted by j), so v_F and its error equal the
single-process run's. A dead worker's tasks are re-run by Dask; cancelling the engine
cancels the outstanding futures.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import asdict, dataclass
from typing import Iterator

from ase import Atoms

from .engine import BatchResult, MCSettings, MonteCarloEngine

# what a worker's engine depends on (not the temperatures or sample counts it is asked for)
SAMPLING_KEYS = ("seed", "antithetic", "supercell", "n_bands", "displacement_scale", "spectral_every",
                 "path_points", "sampling")


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs to rebuild the run's engine: small and picklable (the
    models travel as names of shipped files or references, never as objects)."""

    primitive: Atoms
    forces: str
    electrons: str
    settings: MCSettings

    def key(self) -> str:
        a = self.primitive
        h = hashlib.sha256(a.positions.tobytes() + a.cell.array.tobytes() + a.numbers.tobytes())
        sampling = {k: asdict(self.settings)[k] for k in SAMPLING_KEYS}
        h.update(repr((self.forces, self.electrons, sorted(sampling.items()))).encode())
        return h.hexdigest()


_ENGINES: dict[str, MonteCarloEngine] = {}  # per worker process
_ENGINES_LOCK = threading.Lock()


def worker_engine(spec: RunSpec) -> MonteCarloEngine:
    """The engine of ``spec`` in this process, built on first use (phonons, pristine bands)."""
    from .allocator import keep_freed_memory
    from .model_names import force_model_from_name, hamiltonian_model_from_name

    key = spec.key()
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536 (every freed
            # edge-sized tensor back to the OS); keep_freed_memory overrides that setting.
            keep_freed_memory()
            _ENGINES[key] = MonteCarloEngine(spec.primitive, force_model_from_name(spec.forces),
                                             hamiltonian_model_from_name(spec.electrons), spec.settings)
        return _ENGINES[key]


def compute_task(spec: RunSpec, temperature: float, first: int, count: int,
                 displacements: bool = False) -> dict:
    """One sample batch on a worker (a Dask task)."""
    return worker_engine(spec).compute_batch(temperature, first, count, displacements)


POLL_S = 0.2  # how often a waiting client looks at Pause / Stop


def run_distributed(engine: MonteCarloEngine, spec: RunSpec, client, temperature: float,
                    window: int | None = None) -> Iterator[BatchResult]:
    """Like ``engine.run(temperature)``, with the batches computed on ``client``'s workers.

    At most ``window`` batches (default: two per worker thread) are in flight, handed out
    in sample order; results are absorbed in completion order as they arrive, so the
    running estimate and progress move as in a local run. ``engine.pause()`` stops handing
    out batches (those in flight still arrive); ``engine.cancel()`` cancels the
    outstanding futures within ``POLL_S`` and returns, leaving every finished sample in
    the engine.
    """
    from distributed import TimeoutError as DaskTimeout
    from distributed import wait

    engine._cancel.clear()
    todo = engine.pending(temperature)[::-1]  # popped from the end: ascending sample order
    if window is None:
        threads = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values())
        window = 2 * max(1, threads)
    running: set = set()
    try:
        while todo or running:
            if engine.cancelled:
                return
            if engine._go.is_set():
                while todo and len(running) < window:
                    first, count = todo.pop()
                    running.add(client.submit(compute_task, spec, float(temperature), first, count,
                                              pure=False))
            if not running:  # paused with nothing in flight
                engine._hold(POLL_S)
                continue
            try:
                finished = wait(running, timeout=POLL_S, return_when="FIRST_COMPLETED").done
            except DaskTimeout:
                continue
            for future in finished:
                running.discard(future)
                if engine.cancelled:  # asked to stop: what the caller has not seen stays out
                    return
                yield engine.absorb(future.result())
    finally:
        if running:
            client.cancel(list(running))


def run_all_distributed(engine: MonteCarloEngine, spec: RunSpec, client) -> Iterator[BatchResult]:
    """All temperatures of the settings on ``client``, like ``engine.run_all()``; a cancel
    ends the whole sweep."""
    for temperature in engine.settings.temperatures:
        yield from run_distributed(engine, spec, client, temperature)
        if engine.cancelled:
            return


def make_client(workers: int = 2, threads_per_worker: int = 1, scheduler: str | None = None):
    """A Dask client: of an existing scheduler at ``scheduler`` (e.g. tcp://host:8786, or one
    started by dask-jobqueue), or of a LocalCluster of ``workers`` processes started for the run
    and owned by the client (``client.close()`` shuts it down; an existing cluster stays up)."""
    from distributed import Client

    if scheduler:
        return Client(scheduler)
    return Client(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                  dashboard_address=None)
