"""CLI commands: ``vnnbridge vnnlib check`` and ``vnnbridge vnnlib format``.

``check FILE [--json]`` parses a property (1.0 or 2.x, plain or ``.gz``) and prints the counts
the VNN-COMP scorer reports; ``format FILE [-o OUT] [--version 1.0|2.0] [--onnx NET]``
rewrites it canonically or converts it. Exit codes: 0 done, 2 bad input (one located line
on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add", "check", "format_file"]

_LIST_LIMIT = 12  # longest list shown in the plain-text summary


def add(sub: argparse._SubParsersAction) -> None:
    """Register ``vnnlib check`` and ``vnnlib format``."""
    group = sub.add_parser("vnnlib", help="check, rewrite and convert VNN-LIB properties",
                           description="Check, rewrite and convert VNN-LIB properties (1.0 and 2.x, .gz too).")
    cmds = group.add_subparsers(dest="vnnlib_command", metavar="COMMAND")
    group.set_defaults(func=lambda args: _usage(group))

    c = cmds.add_parser("check", help="parse a property and summarise it as the VNN-COMP scorer counts it")
    c.add_argument("file", help="a .vnnlib or .vnnlib.gz file")
    c.add_argument("--json", action="store_true",
                   help='print one JSON object {"inputs", "outputs", "boxes", "disjuncts_per_box", "rows"}')
    c.set_defaults(func=check)

    f = cmds.add_parser("format", help="rewrite a property canonically, or convert it between 1.0 and 2.0")
    f.add_argument("file", help="a .vnnlib or .vnnlib.gz file")
    f.add_argument("-o", "--output", help="where to write (.gz compresses); standard output when left out")
    f.add_argument("--version", choices=("1.0", "2.0"), default="1.0", dest="to_version",
                   help="VNN-LIB version to write (default 1.0)")
    f.add_argument("--onnx", help="the network: its tensor types and shapes go into 2.0 output, and its "
                   "input and output sizes are checked against the property")
    f.set_defaults(func=format_file)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _short(values: list) -> str:
    if len(values) <= _LIST_LIMIT:
        return json.dumps(values)
    return json.dumps(values[:_LIST_LIMIT])[:-1] + f", ... ({len(values)} in all)]"


def check(args: argparse.Namespace) -> int:
    """Print the summary of one property."""
    from vnnbridge.errors import SpecError
    from vnnbridge.vnnlib.parser import is_vnnlib2, parse, read_text

    text = read_text(args.file)
    summary: Any
    if is_vnnlib2(text):
        from vnnbridge.vnnlib.vnnlib2 import parse_document

        doc = parse_document(text, args.file)
        try:
            summary = doc.to_spec().summary()
        except SpecError as exc:
            # A valid 2.x query that is not a single box spec (several networks, hidden nodes).
            summary = {**doc.summary(), "spec": None, "reason": exc.located()}
    else:
        summary = parse(text, args.file).summary()
    if args.json:
        print(json.dumps(summary))
        return 0
    if "spec" in summary:
        nets = ", ".join(f"{n['name']} ({len(n['tensors'])} tensors)" for n in summary["networks"])
        print(f"{args.file}: VNN-LIB {summary['version']}, networks {nets}, {summary['assertions']} assertions")
        print(f"  not a box spec: {summary['reason']}")
        return 0
    print(f"{args.file}: {summary['inputs']} inputs, {summary['outputs']} outputs, {summary['boxes']} "
          f"box{'es' if summary['boxes'] != 1 else ''}")
    print(f"  disjuncts per box: {_short(summary['disjuncts_per_box'])}")
    print(f"  rows per disjunct: {_short(summary['rows'])}")
    return 0


def _check_sizes(spec: Any, onnx: str) -> None:
    from vnnbridge.vnnlib.vnnlib2 import document_from_spec

    document_from_spec(spec, onnx)  # raises ModelError when the sizes differ


def format_file(args: argparse.Namespace) -> int:
    """Rewrite or convert one property."""
    from vnnbridge.vnnlib.parser import is_vnnlib2, parse, read_text
    from vnnbridge.vnnlib.vnnlib2 import parse_document, write2, write_document
    from vnnbridge.vnnlib.writer import write

    text = read_text(args.file)
    if is_vnnlib2(text) and args.to_version == "2.0" and args.onnx is None:
        doc = parse_document(text, args.file)
        out = write_document(doc)  # canonical, and keeps what a Spec cannot hold
    else:
        spec = parse(text, args.file)
        if args.to_version == "2.0":
            out = write2(spec, args.onnx)
        else:
            if args.onnx is not None:
                _check_sizes(spec, args.onnx)
            out = write(spec)
    if args.output is None:
        sys.stdout.write(out)
        return 0
    path = Path(args.output)
    try:
        if path.name.endswith(".gz"):
            import gzip

            path.write_bytes(gzip.compress(out.encode("utf-8"), mtime=0))
        else:
            path.write_text(out, encoding="utf-8", newline="\n")
    except OSError as exc:
        from vnnbridge.errors import InputError

        raise InputError(f"cannot write the output: {exc.strerror or exc}", path=str(path)) from None
    return 0
