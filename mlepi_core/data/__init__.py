"""Data sets on disk: the phonon set as extxyz, the electron set in DeepH's layout."""

from .deeph import (DataFormatError, orbital_names, read_deeph, read_deeph_set, read_split,
                    write_deeph, write_split)
from .extxyz import read_extxyz, write_extxyz

__all__ = ["DataFormatError", "orbital_names", "read_deeph", "read_deeph_set", "read_split",
           "write_deeph", "write_split", "read_extxyz", "write_extxyz"]
