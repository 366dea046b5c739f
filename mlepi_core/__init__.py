"""mlepi: electron-phonon interactions in layered materials, accelerated by ML (MLEPI)."""

__version__ = "0.1.0"
