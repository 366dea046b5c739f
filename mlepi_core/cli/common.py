"""What the commands share: a structure from a file name or a builder name."""

from __future__ import annotations

from pathlib import Path

from ..structures import StructureError


def structure_from_arg(arg: str, elements=None):
    """A structure file (any ASE format) or a builder name (AB, monolayer, tbg:m,n, ...)."""
    from ..structures import build, load

    if Path(arg).exists():
        return load(arg, elements=elements)
    try:
        return build(arg)
    except StructureError as err:
        raise StructureError(f"{arg!r} is neither a file nor a structure name ({err})") from None
