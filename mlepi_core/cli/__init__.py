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


def parse_arguments(argv: list[str]):
    """The parsed command line; ``mc --config FILE`` expands the file into flags that the
    command line's own flags override."""
    parser = make_parser()
    args = parser.parse_args(argv)
    if getattr(args, "config", None) and args.func.__name__ == "cmd_mc":
        from .config_files import config_tokens, read_mapping, without_option

        settings = read_mapping(args.config)
        if "structure" in settings and args.structure is not None:
            raise ValueError(f"the structure is given twice: {args.structure!r} here and "
                             f"{settings['structure']!r} in {args.config}")
        sub = parser._subparsers._group_actions[0].choices["mc"]
        user = without_option(argv[argv.index("mc") + 1:], "--config")
        args = parser.parse_args(["mc", *config_tokens(sub, settings, args.config), *user])
    if getattr(args, "func", None) is not None and args.func.__name__ == "cmd_mc" and args.structure is None:
        parser.exit(2, "mlepi mc: error: no structure: give a file or name (AB, monolayer, ...) or "
                       "'structure:' in --config\n")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_arguments(argv)
    except ValueError as err:
        print(f"mlepi: error: {error_line(err)}", file=sys.stderr)
        return 2
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
