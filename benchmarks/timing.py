"""Shared timing helper of the benchmark scripts (run as `python benchmarks/NAME.py`)."""

import time

import numpy as np


def median_time(fn, repeats: int) -> float:
    """Median wall time (s) of ``fn()`` over ``repeats`` calls after one warm-up call."""
    fn()  # warm-up (allocations, LAMMPS set-up, first torch kernels)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))
