"""Running statistics of Monte Carlo estimates: means, standard errors, their convergence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def estimator_units(idx, values, antithetic: bool = False, sampling: str = "mc") -> np.ndarray:
    """Independent units of the estimator from samples ``idx`` with ``values``: the samples
    themselves, or the means of complete antithetic / ZG pairs (2k, 2k + 1) or Gauss-Hermite
    ZG blocks (6k .. 6k + 5); ZG configurations count one by one while no unit is complete."""
    values = np.asarray(values)
    zg = sampling in ("zg", "zg-gh")
    if not (antithetic or zg):
        return values
    size = 6 if sampling == "zg-gh" else 2
    units = {}
    for i, v in zip(idx, values):
        units.setdefault(int(i) // size, []).append(v)
    means = np.array([np.mean(u) for u in units.values() if len(u) == size])
    return values if zg and not len(means) else means


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


def control_variate_mean(values: np.ndarray, controls: np.ndarray) -> tuple[float, float]:
    """Regression-adjusted mean of ``values`` (n,) with control variates ``controls`` (n, p) whose
    expectation is exactly zero, and its standard error (Glasserman, Monte Carlo Methods in
    Financial Engineering, Sec. 4.1.2; Lavenberg and Welch, Manage. Sci. 27, 322 (1981)).

    The estimate is the intercept of the least-squares fit y = a + X b evaluated at X = E[X] = 0,
    a = mean(y) - mean(X) b; its standard error is s sqrt(1/n + xbar^T S_xx^-1 xbar) with
    s^2 = RSS / (n - p - 1) and S_xx the centred cross-product matrix of X (exact under a
    linear-Gaussian model, asymptotically correct otherwise)."""
    y = np.asarray(values, dtype=float)
    x = np.asarray(controls, dtype=float).reshape(len(y), -1)
    n, p = x.shape
    if n <= p + 1:
        raise ValueError(f"{n} samples cannot fit {p} control variates and a mean")
    xbar = x.mean(axis=0)
    xc, yc = x - xbar, y - y.mean()
    beta, *_ = np.linalg.lstsq(xc, yc, rcond=None)
    a = float(y.mean() - xbar @ beta)
    resid = yc - xc @ beta
    s2 = float(resid @ resid) / (n - p - 1)
    sxx = xc.T @ xc
    h = float(xbar @ np.linalg.lstsq(sxx, xbar, rcond=None)[0])
    return a, float(np.sqrt(s2 * (1.0 / n + h)))
