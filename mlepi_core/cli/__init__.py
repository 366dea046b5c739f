"""`mlepi ...`: the command line over the engine (the dashboard drives the same calls).

One module per family of commands (``explore``, ``monte_carlo``, ``training``); ``parser``
holds every flag."""

from __future__ import annotations

import sys

from ..structures import StructureError
from .parser import make_parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if args.func.__name__ != "cmd_dashboard":  # a long-lived server gives freed memory back
        from ..allocator import keep_freed_memory

        keep_freed_memory()
    try:
        return args.func(args)
    except (StructureError, FileNotFoundError, ValueError) as err:
        print(f"mlepi: error: {err}", file=sys.stderr)
        return 2
