"""The peak-memory measurement of benchmarks/memory.py: a child's own ru_maxrss, and the
power-law fit that turns measured peaks into the largest structure under a budget."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def memory():
    spec = importlib.util.spec_from_file_location("bench_memory", ROOT / "benchmarks" / "memory.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_child_peak_memory_sees_what_the_child_allocated(memory):
    code = "import numpy as np; a = np.ones({}); a += 1"
    small, _ = memory.run_child([sys.executable, "-c", code.format(25_000_000)])
    big, _ = memory.run_child([sys.executable, "-c", code.format(125_000_000)])
    # 100 M more float64, touched: 800 MB (+- the ~0.1 GB of shared libraries that a loaded
    # machine may page out of one child and not the other)
    assert big - small == pytest.approx(800e6, rel=0.15)
    assert small < 200e6 + 200e6  # the child's interpreter, numpy and 200 MB, not the parent's memory
    with pytest.raises(RuntimeError, match="failed"):
        memory.run_child([sys.executable, "-c", "raise SystemExit(3)"])


def test_power_law_fit_and_largest_size(memory):
    n = np.array([100, 400, 1600])
    base, c, p = 1e9, 2e5, 1.5
    c_fit, p_fit = memory.fit_power(list(n), list(base + c * n ** p), base)
    assert p_fit == pytest.approx(p, rel=1e-9) and c_fit == pytest.approx(c, rel=1e-9)
    top = memory.largest(base, c_fit, p_fit, 5e9)
    assert base + c * top ** p == pytest.approx(5e9, rel=1e-9)
    assert memory.largest(base, c, p, 0.5e9) == 0.0  # the budget is below the bare process
