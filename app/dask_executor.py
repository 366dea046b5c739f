"""The dashboard server's Dask cluster (docs/physics.md#beyond-one-machine)."""

from __future__ import annotations

import threading


class DaskExecutor:
    """The dashboard server's Dask cluster, shared by every tab that picks it
    (docs/physics.md#beyond-one-machine): a LocalCluster of ``workers`` one-thread processes started on first use,
    or the existing scheduler at ``scheduler``. Set by ``mlepi dashboard --workers N |
    --scheduler ADDRESS``; each tab's runs stay its own (its own engine and futures)."""

    workers: int = 2
    scheduler: str | None = None
    _client = None
    _lock = threading.Lock()

    @classmethod
    def configure(cls, workers: int = 2, scheduler: str | None = None) -> None:
        cls.workers, cls.scheduler = int(workers), scheduler

    @classmethod
    def client(cls):
        from mlepi_core.distributed import make_client

        with cls._lock:
            if cls._client is None:
                cls._client = make_client(cls.workers, 1, cls.scheduler)
            return cls._client

    @classmethod
    def describe(cls) -> str:
        return f"Dask scheduler {cls.scheduler}" if cls.scheduler else f"Dask, {cls.workers} local workers"

    @classmethod
    def shutdown(cls) -> None:
        with cls._lock:
            if cls._client is not None:
                cls._client.close()
                cls._client = None


EXECUTORS = ("local", "dask")
