"""The command line: ``main(argv) -> int``; errors become one located line and an exit code.

Exit codes: 0 success (a verdict was obtained), 1 a failure of vnnbridge or a tool,
2 bad input (file, line and column where known), 3 an oracle that cannot run here,
130 interrupted. Each subcommand group lives in its own module below and registers itself
through ``add(subparsers)``; heavy imports (torch, onnx) happen inside the commands.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from vnnbridge import __version__
from vnnbridge.errors import VnnbridgeError

__all__ = ["build_parser", "main", "run"]

# One module per group of subcommands; each has ``add(subparsers) -> None``.
_GROUPS = (
    "vnnbridge.cli.vnnlib",
    "vnnbridge.cli.oracles",
    "vnnbridge.cli.certify",
    "vnnbridge.cli.batch",
    "vnnbridge.cli.vnncomp",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = argparse.ArgumentParser(prog="vnnbridge", description="Trustworthy robustness certifications "
                                     "with any VNN-COMP verifier as the oracle.")
    parser.add_argument("--version", action="version", version=f"vnnbridge {__version__}")
    # VNN-LIB 2.0 solver interface (chapter 5): `--name` prints the solver's full name.
    parser.add_argument("--name", action="version", version="vnnbridge", help="print the solver's name and exit")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _GROUPS:
        importlib.import_module(module).add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except VnnbridgeError as exc:
        print(f"vnnbridge: {exc.located()}" if not exc.path else exc.located(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vnnbridge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
