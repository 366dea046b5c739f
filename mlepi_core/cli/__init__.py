"""`mlepi ...`: the command line over the engine (the dashboard drives the same calls).

One module per family of commands (``explore``, ``monte_carlo``, ``training``); ``parser``
holds every flag. Every failure ends in one line on stderr and a non-zero exit: 2 for
input mlepi cannot use, 1 for a failed write or an internal error (``MLEPI_TRACEBACK=1``
shows the traceback of the latter), 130 for an interrupt.
"""

from __future__ import annotations

import os
import sys

from ..structures import StructureError
from .common import error_line
from .parser import make_parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if args.func.__name__ != "cmd_dashboard":  # a long-lived server gives freed memory back
        from ..allocator import keep_freed_memory

        keep_freed_memory()
    try:
        return args.func(args)
    except (StructureError, FileNotFoundError, ValueError) as err:
        print(f"mlepi: error: {error_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"mlepi: error: {error_line(err)}", file=sys.stderr)
        return 1
    except MemoryError:
        print("mlepi: error: out of memory (a smaller cell or fewer samples per batch needs less)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mlepi: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if os.environ.get("MLEPI_TRACEBACK"):
            raise
        print(f"mlepi: internal error: {type(err).__name__}: {error_line(err)} (MLEPI_TRACEBACK=1 shows where)",
              file=sys.stderr)
        return 1
