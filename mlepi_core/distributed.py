"""Monte Carlo on Dask distributed: sample batches as tasks, the same numbers as one process.

    client engine: pending batches -> client.submit(compute_task, spec, T, first, count)
    worker:        its own MonteCarloEngine for the spec (built once per worker process,
                   models loaded from their files there) -> engine.compute_batch(...)
    client engine: as each future completes -> engine.absorb(result) -> BatchResult

Sample j's random numbers are keyed by (seed, j) (DESIGN.md section 9), so any number
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
SAMPLING_KEYS = ("seed", "antithetic", "supercell", "n_bands", "displacement_scale", "spectral_every")


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
    from .cli import force_model_from_name, hamiltonian_model_from_name

    key = spec.key()
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            _ENGINES[key] = MonteCarloEngine(spec.primitive, force_model_from_name(spec.forces),
                                             hamiltonian_model_from_name(spec.electrons), spec.settings)
        return _ENGINES[key]


def compute_task(spec: RunSpec, temperature: float, first: int, count: int) -> dict:
    """One sample batch on a worker (a Dask task)."""
    return worker_engine(spec).compute_batch(temperature, first, count)


def run_distributed(engine: MonteCarloEngine, spec: RunSpec, client, temperature: float
                    ) -> Iterator[BatchResult]:
    """Like ``engine.run(temperature)``, with the batches computed on ``client``'s workers;
    results are absorbed in completion order. ``engine.cancel()`` cancels what is left."""
    from distributed import as_completed

    engine._cancel.clear()
    futures = [client.submit(compute_task, spec, float(temperature), first, count, pure=False)
               for first, count in engine.pending(temperature)]
    done = as_completed(futures)
    for future in done:
        engine._go.wait()
        if engine._cancel.is_set():
            client.cancel(futures)
            return
        yield engine.absorb(future.result())


def make_client(workers: int = 2, threads_per_worker: int = 1, scheduler: str | None = None):
    """A Dask client: of an existing scheduler at ``scheduler`` (e.g. tcp://host:8786, or one
    started by dask-jobqueue), or of a LocalCluster of ``workers`` processes started for the run."""
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler)
    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                           dashboard_address=None)
    return Client(cluster)
