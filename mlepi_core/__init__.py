"""mlepi: electron-phonon interactions in layered materials, accelerated by ML (MLEPI)."""

from .allocator import keep_freed_memory

__version__ = "0.1.0"

keep_freed_memory()  # large tensors reuse the heap instead of page-faulting in anew (see allocator)
