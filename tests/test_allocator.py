"""mlepi_core.allocator: large freed blocks stay in the heap and are reused without page faults."""

import os
import subprocess
import sys

CODE = """
import ctypes, resource
import sys
import mlepi_core
if sys.argv[1] == "tuned":
    from mlepi_core.allocator import keep_freed_memory
    keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
counts = []
for _ in range(4):  # 100 MB, above glibc's largest mmap threshold (32 MB)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    p = libc.malloc(100_000_000)
    libc.memset(p, 1, 100_000_000)
    libc.free(p)
    counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*counts)
"""


def page_faults(mode: str = "tuned", **env) -> list[int]:
    out = subprocess.run([sys.executable, "-c", CODE, mode], env={**os.environ, **env}, capture_output=True,
                         text=True, timeout=120, check=True)
    return [int(v) for v in out.stdout.split()]


def test_a_freed_large_block_is_reused_without_page_faults():
    first, *again = page_faults()
    assert max(again) < 0.05 * 100_000_000 / 4096
    # Dask's nanny starts workers with this; keep_freed_memory overrides it
    first, *again = page_faults(MALLOC_TRIM_THRESHOLD_="65536")
    assert max(again) < 0.05 * 100_000_000 / 4096
    first, *again = page_faults(MLEPI_DEFAULT_MALLOC="1")  # glibc's defaults: mmap, unmapped on free
    assert min(again) > 0.9 * 100_000_000 / 4096


def test_importing_mlepi_core_leaves_the_allocator_alone():
    first, *again = page_faults("import-only")  # glibc's defaults: 100 MB is mmap'ed, unmapped on free
    assert min(again) > 0.9 * 100_000_000 / 4096
