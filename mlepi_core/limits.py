"""Input limits, stated once: how large a file, a structure and each job's cell may be.

The numbers are sized for this project's reference machine (2 cores, 23.5 GiB) from the
measurements in docs/benchmarks.md#memory-and-the-largest-structures (``benchmarks/memory.py``).
Every limit is checked before the work it protects: the file size before parsing, the atom
count right after parsing (before any neighbour search), a job's cell before its models
load. A refusal names the limit and the command-line route for a bigger job: the same
command with ``--max-atoms N`` on a machine with the memory for it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from .structures import StructureError


@dataclass(frozen=True)
class InputLimits:
    """Largest inputs mlepi accepts (atoms; bytes)."""

    # The largest cell any mlepi job can use (the flat-band limit below); validation itself
    # (a k-d tree) would take millions.
    max_atoms: int = 55_000
    # Text formats take 50-130 bytes per atom (extxyz of graphene 53, with forces and
    # layers ~120); 256 bytes per atom of the atom limit leaves twice that (14 MB at 55,000).
    bytes_per_atom: int = 256
    # Monte Carlo sampling cell (primitive atoms x n^2): 576 atoms (12x12 AB) peaked at
    # 4.67 GiB; the N^2 dense per-k matrices put the 23.5 GiB ceiling near 1,300 atoms (18x18)
    # (a 24x24 AB run, 2,304 atoms, held 5.3 GB after 300 s without finishing a sample).
    mc_atoms: int = 1_296
    # Phonon force-constant supercell: phonopy's full force constants take 72 N^2 bytes
    # (1.8 GB at 5,000 atoms), the relaxation and displaced-cell forces grow as N.
    phonon_atoms: int = 5_000
    # Flat bands of a twisted bilayer (sparse shift-invert): 11,164 atoms took 4.32 GiB,
    # growing as N^1.03, so about 55,000 atoms (0.5 degrees) fit in 23.5 GiB.
    flat_band_atoms: int = 55_000

    @property
    def max_file_bytes(self) -> int:
        """Largest structure file read (bytes): ``bytes_per_atom`` x ``max_atoms``."""
        return self.bytes_per_atom * self.max_atoms

    def raised(self, max_atoms: int | None) -> "InputLimits":
        """These limits with every atom limit raised to at least ``max_atoms`` (the CLI's
        ``--max-atoms``, for a machine with more memory); None keeps them."""
        if max_atoms is None:
            return self
        return replace(self, max_atoms=max(self.max_atoms, max_atoms), mc_atoms=max(self.mc_atoms, max_atoms),
                       phonon_atoms=max(self.phonon_atoms, max_atoms),
                       flat_band_atoms=max(self.flat_band_atoms, max_atoms))


LIMITS = InputLimits()

# job -> (limit field, what it sizes, the command line for a bigger one)
JOBS = {
    "load": ("max_atoms", "a loaded structure", "mlepi info FILE --max-atoms N"),
    "mc": ("mc_atoms", "a Monte Carlo sampling cell", "mlepi mc STRUCTURE --supercell n --max-atoms N"),
    "bands": ("mc_atoms", "a dense band-structure cell", "mlepi bands STRUCTURE --supercell n --max-atoms N"),
    "phonons": ("phonon_atoms", "a phonon supercell", "mlepi phonons STRUCTURE --supercell n --max-atoms N"),
    "flat_bands": ("flat_band_atoms", "a flat-band cell", "mlepi tbg --mn m,n --max-atoms N"),
}


def check_structure_file(path: str | Path, limits: InputLimits = LIMITS) -> Path:
    """The path of a readable structure file no larger than ``limits.max_file_bytes``;
    StructureError naming the problem otherwise (checked before any parsing)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise StructureError(f"no such file: {path}") from None
    except OSError as err:
        raise StructureError(f"cannot open {path}: {err.strerror}") from None
    if path.is_dir():
        raise StructureError(f"{path} is a directory, not a structure file")
    if not path.is_file():
        raise StructureError(f"{path} is not a regular file (a device, pipe or socket), not a structure file")
    if st.st_size > limits.max_file_bytes:
        raise StructureError(
            f"{path} is {st.st_size / 2**20:.1f} MiB, over the {limits.max_file_bytes / 2**20:.1f} MiB limit "
            f"for a structure file ({limits.bytes_per_atom} bytes per atom of the {limits.max_atoms:,}-atom "
            f"limit, mlepi_core/limits.py); a bigger one: {JOBS['load'][2]}")
    if st.st_size == 0:
        raise StructureError(f"cannot read {path} as a structure: the file is empty")
    return path


def check_atoms(n_atoms: int, job: str = "load", limits: InputLimits = LIMITS, what: str | None = None) -> None:
    """StructureError if ``n_atoms`` exceeds the limit of ``job`` (a key of ``JOBS``: "load",
    "mc", "bands", "phonons", "flat_bands"); ``what`` names the cell in the message."""
    field, sized, route = JOBS[job]
    limit = getattr(limits, field)
    if n_atoms > limit:
        raise StructureError(f"{what or sized} has {n_atoms:,} atoms, over the {limit:,}-atom limit for "
                             f"{sized} (limits.{field}, sized for 24 GB of memory); on a bigger machine: {route}")


def check_supercell(primitive_atoms: int, n: int, job: str, limits: InputLimits = LIMITS,
                    name: str = "the structure") -> None:
    """StructureError unless an n x n x 1 supercell of a ``primitive_atoms`` cell is within
    ``job``'s atom limit (n >= 1); checked in integers, so n = 10^9 is refused at once."""
    if n < 1:
        raise StructureError(f"the supercell must be n x n with n >= 1, got {n}")
    check_atoms(primitive_atoms * n * n, job, limits, what=f"{name} as {n}x{n}x1")
