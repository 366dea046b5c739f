"""What the commands share: a structure from a file name or a builder name, checks of the
output paths before any work, and the one-line form of an error."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..limits import LIMITS, InputLimits
from ..structures import StructureError


class OutputError(OSError):
    """An output path mlepi cannot write, found before any work (or a write that failed)."""


def structure_from_arg(arg: str, elements=None, limits: InputLimits = LIMITS):
    """A structure file (any ASE format, read in a child process: ``load_isolated``) or a
    builder name (AB, monolayer, tbg:m,n, ...)."""
    from ..isolated_load import load_isolated
    from ..structures import build

    if os.path.lexists(arg):
        return load_isolated(arg, elements=elements, limits=limits)
    try:
        return build(arg)
    except StructureError as err:
        raise StructureError(f"{arg!r} is neither a file nor a structure name ({err})") from None


def check_output_dir(path: str | Path) -> Path:
    """``path`` as a folder that can be created or written, checked without creating
    anything: OutputError naming the obstacle (a file in the way, a read-only place)."""
    path = Path(path)
    probe = path
    while not probe.exists():
        if probe.is_symlink():
            raise OutputError(errno.ENOENT, "a broken link is in the way", str(probe))
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(errno.ENOTDIR, f"{probe} is a file, not a folder: the output folder {path} cannot be "
                          f"made there", str(path))
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(errno.EACCES, f"{probe} is not writable (read-only or not yours)", str(path))
    return path


def check_output_file(path: str | Path | None) -> Path | None:
    """``path`` as a file that can be written (its folder checked as ``check_output_dir``)."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        raise OutputError(errno.EISDIR, f"{path} is a folder, not a file name", str(path))
    check_output_dir(path.parent)
    return path


def error_line(err: BaseException) -> str:
    """The one line ``mlepi`` prints for an error (no traceback)."""
    if isinstance(err, OutputError):
        return err.strerror
    if isinstance(err, OSError) and err.strerror:
        where = f" ({err.filename})" if err.filename else ""
        hint = {errno.ENOSPC: ": the disk is full", errno.EDQUOT: ": the disk quota is used up",
                errno.EROFS: ": the file system is read-only", errno.ENOTDIR: ": a file stands where a folder must be",
                errno.EACCES: ": permission denied"}.get(err.errno, "")
        return f"cannot write or read{where}{hint} [{err.strerror}]"
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
