"""Keep large freed blocks in the process heap (glibc), so big tensors are not page-faulted in anew.

glibc hands allocations above a (dynamic, <= 32 MB) threshold to mmap and returns them to
the OS on free; the edge tensors of a few-thousand-atom cell are hundreds of MB, so every
operation of the networks page-faulted its output in afresh. benchmarks/scaling.py (one
thread), HedgeNet-Electron on the 24x24 AB bilayer (2,304 atoms): 5.15 s with glibc's
defaults, 2.39 s with mmap off and trimming only beyond 2 GB; the fitted exponent of its
inference time over 64-2,304 atoms fell from 1.20 to 1.07.
Results do not change: this is where memory comes from, not what is computed. Set
MLEPI_DEFAULT_MALLOC=1 to leave glibc's defaults alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Tell glibc's malloc not to mmap large blocks and to trim the heap only beyond 2 GB.
    Returns whether it applied (False on other C libraries or when opted out)."""
    if os.environ.get("MLEPI_DEFAULT_MALLOC") == "1":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1))
