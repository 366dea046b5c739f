"""Running statistics of Monte Carlo estimates: means, standard errors, their convergence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RunningStats:
    """Mean and standard error of a stream of values, mergeable (Chan et al.'s parallel formula)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: float) -> "RunningStats":
        return self.merge(RunningStats(1, float(x), 0.0))

    def merge(self, other: "RunningStats") -> "RunningStats":
        n = self.n + other.n
        if n == 0:
            return self
        delta = other.mean - self.mean
        self.mean += delta * other.n / n
        self.m2 += other.m2 + delta ** 2 * self.n * other.n / n
        self.n = n
        return self

    @property
    def std_error(self) -> float:
        return float(np.sqrt(self.m2 / (self.n - 1) / self.n)) if self.n > 1 else float("nan")


def running_error(values: np.ndarray) -> np.ndarray:
    """Standard error of the mean of the first m values, m = 1 .. len (NaN for m = 1): Fig. 4e."""
    v = np.asarray(values, dtype=float)
    m = np.arange(1, len(v) + 1)
    mean = np.cumsum(v) / m
    var = (np.cumsum(v ** 2) - m * mean ** 2) / np.maximum(m - 1, 1)
    return np.where(m > 1, np.sqrt(np.maximum(var, 0.0) / m), np.nan)
