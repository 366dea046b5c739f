"""Files appear whole or not at all: every result, checkpoint and figure is written to a
temporary name beside its destination and renamed into place (atomic on one file system)."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Callable

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # errors after which another try or another disk may work


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def write_torch_atomic(path: str | Path, obj) -> Path:
    """``torch.save(obj)`` to ``path``, flushed to disk before the rename (checkpoints)."""
    import torch

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())

    return write_atomic(path, save)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB chunks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def rescue_dirs() -> list[Path]:
    """Where finished work goes when its own folder's disk is full: $TMPDIR (else /tmp),
    /dev/shm (memory-backed on Linux), the home folder; in that order, each once."""
    found = []
    for d in (os.environ.get("TMPDIR") or "/tmp", "/dev/shm", str(Path.home())):
        p = Path(d)
        if p.is_dir() and p.resolve() not in [f.resolve() for f in found]:
            found.append(p)
    return found


def write_retrying_or_rescue(path: str | Path, save: Callable[[Path], object], *, retries: int = 3,
                             wait_s: float = 1.0, fallback: list[Path] | None = None) -> tuple[Path | None, bool]:
    """After a full-disk error on ``path``: ``save(path)`` again up to ``retries`` times,
    ``wait_s`` seconds apart (space may come back); then ``save`` into a fresh
    ``mlepi-rescue-<pid>`` folder under each of ``fallback`` (default ``rescue_dirs()``)
    until one takes it. ``save`` must write atomically (``write_atomic``), so a failed try
    leaves the previous file whole. Returns (where it was written or None, whether that is
    ``path`` itself)."""
    path = Path(path)
    for _ in range(retries):
        time.sleep(wait_s)
        try:
            save(path)
            return path, True
        except OSError as err:
            if err.errno not in DISK_FULL:
                break
    for d in rescue_dirs() if fallback is None else fallback:
        target = Path(d) / f"mlepi-rescue-{os.getpid()}" / path.name
        try:
            save(target)
            return target, False
        except OSError:
            continue
    return None, False
