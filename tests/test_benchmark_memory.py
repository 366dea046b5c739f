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


def test_child_peak_memory_is_the_childs_own(memory, tmp_path):
    """run_child returns the kernel's peak resident memory of the child itself: the VmHWM the
    child reads from /proc at its end (the same counter), not the parent's. (A fixed
    allocation is not asserted: this VM's proactive reclaim pages memory out behind RSS.)"""
    code = ("import numpy as np; a = np.random.default_rng(0).random({}); "
            "open({!r}, 'w').write([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0])")
    for n, name in ((1_000_000, "small"), (60_000_000, "big")):
        out = tmp_path / name
        peak, _ = memory.run_child([sys.executable, "-c", code.format(n, str(out))])
        own = int(out.read_text().split()[1]) * 1024  # kB
        assert peak == pytest.approx(own, rel=0.02), (name, peak, own)
    assert own > 100e6  # 480 MB of random numbers leave a mark whatever is paged out
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
