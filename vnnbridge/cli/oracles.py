"""CLI commands: ``vnnbridge oracles`` (what can answer here) and ``vnnbridge query`` (ask one).

``oracles --check NAME`` starts oracle NAME (e.g. ``abcrown:DIR?python=/venv/bin/python``) on
a tiny bundled instance and prints ``ready`` or ``not ready`` with the reason and the last lines
of the tool's log; exit 0 when every checked oracle is ready, 1 otherwise.

``query --onnx NET --vnnlib PROP [--oracle NAME] [--timeout S] [--json] [--witness OUT]
[--mean M.. --std S..]`` prints the verdict. Exit codes: 0 whenever a verdict was obtained
(``timeout``, ``unknown`` and ``error`` from the tool included), 2 bad input, 3 an oracle
that cannot run here.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from vnnbridge.cli.options import add_normalisation, seconds

__all__ = ["add", "check_oracles", "list_oracles", "query"]

log = logging.getLogger(__name__)

_DEFAULT_ORACLE = "embedded"
_DEFAULT_TIMEOUT = 60.0



def _folder(text: str) -> tuple[str, str]:
    kind, sep, folder = text.partition("=")
    if not sep or not kind or not folder:
        raise argparse.ArgumentTypeError(f"expected KIND=DIR, got {text!r}")
    return kind, folder


def add(sub: argparse._SubParsersAction) -> None:
    """Register ``oracles`` and ``query``."""
    o = sub.add_parser("oracles", help="list every oracle, whether it runs here, and its version",
                       description="List the built-in oracles and those of the entry-point group "
                       "vnnbridge.oracles, whether each is usable on this machine, and its version.")
    o.add_argument("--json", action="store_true", help="print one JSON list of objects")
    o.add_argument("--folder", action="append", type=_folder, default=[], metavar="KIND=DIR",
                   help="check a folder-based oracle too, e.g. vnncomp=/opt/nnenum (repeatable)")
    o.add_argument("--check", action="append", default=[], metavar="NAME",
                   help="start oracle NAME on a tiny bundled instance and report ready / not ready "
                   "with the tool's last log lines (repeatable; exit 1 when one is not ready)")
    o.add_argument("--timeout", type=seconds, default=None,
                   help="seconds the tool gets on the tiny instance with --check (default 60)")
    o.set_defaults(func=list_oracles)

    q = sub.add_parser("query", help="ask one oracle one VNN-LIB query and print its verdict",
                       description="Ask one oracle one query. Exit 0 whenever a verdict was obtained "
                       "(timeout/unknown/error included), 2 bad input, 3 an oracle that cannot run here.")
    q.add_argument("--onnx", required=True, help="the network (ONNX)")
    q.add_argument("--vnnlib", required=True, help="the property (VNN-LIB 1.0 or 2.x, .gz too)")
    q.add_argument("--oracle", default=_DEFAULT_ORACLE,
                   help=f"NAME or KIND:DIR, see `vnnbridge oracles` (default {_DEFAULT_ORACLE})")
    q.add_argument("--timeout", type=seconds, default=_DEFAULT_TIMEOUT,
                   help=f"seconds for the oracle (default {_DEFAULT_TIMEOUT:g})")
    q.add_argument("--json", action="store_true",
                   help="print one JSON object: verdict, seconds, oracle, version, reason, log, witness")
    q.add_argument("--witness", metavar="OUT",
                   help="write a sat witness here as ((X_0 v) ... (Y_0 v)), X flat C-order, Y from onnxruntime")
    add_normalisation(q, "composed into the model the oracle sees")
    q.set_defaults(func=query)


def list_oracles(args: argparse.Namespace) -> int:
    """Print every oracle with its availability and version (or, with --check, start the named ones)."""
    from vnnbridge.oracles.registry import describe_oracles

    if args.check:
        return check_oracles(args)
    infos = describe_oracles(dict(args.folder))
    if args.json:
        print(json.dumps([info.to_json() for info in infos]))
        return 0
    width = max(len(info.kind) for info in infos)
    for info in infos:
        state = "usable" if info.usable else "not usable"
        detail = info.version if info.usable else info.note
        print(f"{info.kind:<{width}}  {state:<10}  {detail}")
    return 0


def check_oracles(args: argparse.Namespace) -> int:
    """Run each ``--check`` oracle on the tiny instance; print ready / not ready and why."""
    from vnnbridge.oracles.readiness import CHECK_TIMEOUT, check_oracle

    checks = [check_oracle(spec, args.timeout or CHECK_TIMEOUT) for spec in args.check]
    if args.json:
        print(json.dumps([c.to_json() for c in checks]))
    else:
        for c in checks:
            if c.ready:
                print(f"{c.spec}: ready ({c.verdict} on the tiny instance in {c.seconds:.1f} s)")
                continue
            print(f"{c.spec}: not ready ({c.verdict} after {c.seconds:.1f} s): {c.reason}")
            if c.log:
                print(f"  log: {c.log}")
            for line in c.tail:
                print(f"  | {line}")
    return 0 if all(c.ready for c in checks) else 1


def query(args: argparse.Namespace) -> int:
    """Build the query, ask the oracle, print the verdict (and write the witness)."""
    from vnnbridge.derived import compares_outputs_only
    from vnnbridge.errors import InputError, require_file
    from vnnbridge.network import load_network, prepare_model
    from vnnbridge.oracles.base import Query, Verdict
    from vnnbridge.oracles.registry import make_oracle
    from vnnbridge.vnnlib.parser import parse_file

    require_file(args.onnx, "ONNX file")
    require_file(args.vnnlib, "VNN-LIB file")
    spec = parse_file(args.vnnlib)
    # A final softmax only preserves comparisons between outputs; keep it for anything else.
    onnx = prepare_model(args.onnx, args.mean, args.std, strip_softmax=compares_outputs_only(spec))
    net = load_network(onnx)
    if (spec.inputs, spec.outputs) != (net.inputs, net.outputs):
        raise InputError(f"the property has {spec.inputs} inputs and {spec.outputs} outputs, the model "
                         f"{net.inputs} and {net.outputs}", path=args.vnnlib)
    oracle = make_oracle(args.oracle)
    result = oracle.check(Query.build(onnx, spec), args.timeout)
    # The verdict first: a witness file that cannot be written must not hide the answer.
    if args.json:
        print(json.dumps({**result.to_json(), "onnx": str(onnx), "vnnlib": str(args.vnnlib)}), flush=True)
    else:
        reason = f" ({result.reason})" if result.reason and result.verdict is not Verdict.SAT else ""
        print(f"{result.verdict.value}{reason}", flush=True)
    if args.witness and result.verdict is Verdict.SAT and result.witness is not None:
        from vnnbridge.cache import atomic_write
        from vnnbridge.vnncomp.results import format_counterexample

        target = Path(args.witness)
        try:
            if target.is_dir():
                raise IsADirectoryError(21, "this is a folder; give the witness file to write")
            atomic_write(target, format_counterexample(result.witness, net.run(result.witness)))
        except OSError as exc:
            raise InputError(f"--witness: cannot write the witness: {exc.strerror or exc}",
                             path=str(target)) from None
    return 0
