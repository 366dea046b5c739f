"""A run folder as one file, to carry a run between machines: ``pack`` zips a run folder,
``unpack`` reads a zip or tar archive into a new folder after checking every entry.

An archive is untrusted input. It may hold plain files only (no links, devices or paths
that leave the folder), of the kinds a run folder has (JSON records, ``.npz`` arrays, CSV,
PNG, text), at most ``MAX_FILES`` of them and ``MAX_FOLDER_BYTES`` unpacked, counted while
reading (a compressed bomb stops at the limit); its checkpoints are plain arrays
(``checkpoints.py``), so nothing in it is ever run. The folder appears whole or not at all.
"""

from __future__ import annotations

import io
import re
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Callable

MAX_FOLDER_BYTES = 200 * 2 ** 20  # a run folder (checkpoints and spectra) brought into a runs directory
MAX_FILES = 64
KINDS = (".json", ".npz", ".csv", ".png", ".txt", ".log")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")


class ArchiveError(ValueError):
    """An archive that is not a run folder (the reason in the text)."""


def pack(folder: str | Path) -> bytes:
    """The files of a run folder as a zip (``unpack``'s input), under the folder's name."""
    folder = Path(folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.startswith(".") and path.suffix in KINDS:
                zf.write(path, f"{folder.name}/{path.name}")
    return buffer.getvalue()


def _entries(data: bytes):
    """(name, is_file, size, read) of each entry of a zip or tar archive in ``data``."""
    if zipfile.is_zipfile(io.BytesIO(data)):
        zf = zipfile.ZipFile(io.BytesIO(data))
        for info in zf.infolist():
            is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
            yield info.filename, not (info.is_dir() or is_link), info.is_dir(), info.file_size, \
                lambda n, info=info: zf.open(info).read(n)
        return
    try:
        tf = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except tarfile.TarError:
        raise ArchiveError("not a zip or tar archive") from None
    with tf:
        for member in tf.getmembers():
            yield member.name, member.isfile(), member.isdir(), member.size, \
                lambda n, m=member: tf.extractfile(m).read(n)


def unpack(data: bytes, into: Path, stem: str = "run", check: Callable[[Path], None] | None = None) -> Path:
    """Unpack a run archive into a new folder under ``into``, named after the archive's one
    top-level folder (else ``stem``); returns it. ``check(folder)`` sees the files before the
    folder appears and may raise. Raises ArchiveError, leaving nothing, when an entry is not
    a plain file of a run folder or the limits are passed."""
    files: dict[str, bytes] = {}
    total, top = 0, set()
    try:
        for name, is_file, is_dir, size, read in _entries(data):
            parts = PurePosixPath(name).parts
            if is_dir:
                continue
            if not is_file:
                raise ArchiveError(f"{name!r} is not a plain file (links and devices are refused)")
            if PurePosixPath(name).is_absolute() or len(parts) > 2 or any(p in ("", ".", "..") for p in parts):
                raise ArchiveError(f"{name!r}: a run archive holds files, at most in one folder")
            base = parts[-1]
            if not SAFE_NAME.match(base) or PurePosixPath(base).suffix not in KINDS:
                raise ArchiveError(f"{name!r} is not a file of a run folder ({', '.join(KINDS)})")
            if len(files) >= MAX_FILES:
                raise ArchiveError(f"more than {MAX_FILES} files: not a run folder")
            blob = read(MAX_FOLDER_BYTES - total + 1)
            total += len(blob)
            if total > MAX_FOLDER_BYTES or len(blob) != size:
                raise ArchiveError(f"unpacks to over {MAX_FOLDER_BYTES / 2**20:.0f} MiB, the limit of a run folder"
                                   if total > MAX_FOLDER_BYTES else f"{name!r} is damaged (its size disagrees)")
            if base in files:
                raise ArchiveError(f"{base!r} appears twice")
            files[base] = blob
            top.add(parts[0] if len(parts) == 2 else "")
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, RuntimeError) as err:
        raise ArchiveError(f"the archive cannot be read ({type(err).__name__}: {err})") from None
    if not files:
        raise ArchiveError("the archive is empty")
    if len(top) != 1:
        raise ArchiveError("the files must sit in one folder (or all at the top)")
    name = next(iter(top)) or stem
    name = name if SAFE_NAME.match(name) else "run"
    target, n = into / name, 1
    while target.exists():
        n += 1
        target = into / f"{name}-{n}"
    staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=into))
    try:
        for base, blob in files.items():
            (staging / base).write_bytes(blob)
        if check is not None:
            check(staging)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target
