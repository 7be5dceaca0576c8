"""CLI commands of the VNN-COMP side: the harness entry points, benchmark export, oracle comparison,
and the VNN-LIB 2.0 solver interface (``verify``, ``supports``).

Exit codes follow the dispatcher: 0 a verdict or result was produced, 1 a failure, 2 bad input.
``vnncomp-run`` exits 0 whenever it wrote the result file (also when it wrote ``error``);
``vnncomp-prepare`` exits 0 even for an instance it finds broken (the harness would skip the
whole category otherwise) and logs the problem.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vnnbridge.cli.options import add_normalisation, seconds
from vnnbridge.errors import InputError

__all__ = ["add"]


def _instance_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--category", required=True, help="benchmark category (selects the oracle)")
    parser.add_argument("--onnx", required=True, help="the ONNX model (or a list of (name, path) pairs)")
    parser.add_argument("--vnnlib", required=True, type=Path, help="the VNN-LIB property (.gz too)")
    parser.add_argument("--config", type=Path, help="oracle choice per category (TOML; see docs/vnncomp.md)")


def _prepare(args: argparse.Namespace) -> int:
    from vnnbridge.vnncomp.config import load_choice
    from vnnbridge.vnncomp.prepare import prepare_instance

    choice = load_choice(args.config)
    prepare_instance(args.category, args.onnx, args.vnnlib, choice, cleanup=not args.no_cleanup)
    return 0


def _timeout(text: str) -> float:
    """TIMEOUT as the harness passes it; a bad one is bad input (after the result file says error)."""
    try:
        return seconds(text)
    except argparse.ArgumentTypeError as exc:
        raise InputError(f"TIMEOUT: {exc}") from None


def _run(args: argparse.Namespace) -> int:
    from vnnbridge.errors import VnnbridgeError
    from vnnbridge.oracles.base import Verdict
    from vnnbridge.vnncomp.config import load_choice
    from vnnbridge.vnncomp.run import HarnessAnswer, HarnessInstance, answer_instance, write_answer

    try:
        try:
            instance = HarnessInstance(args.category, args.onnx, args.vnnlib, args.results,
                                       _timeout(args.timeout))
        except InputError as exc:
            # A bad TIMEOUT still owes the harness a result file (the docs promise one, always).
            write_answer(args.results, HarnessAnswer(Verdict.ERROR, reason=exc.located()))
            print(f"vnnbridge: {exc.located()}", file=sys.stderr)
            return 0
        try:
            choice = load_choice(args.config)
        except VnnbridgeError as exc:
            # A broken config still owes the harness a result file.
            write_answer(args.results, HarnessAnswer(Verdict.ERROR, reason=exc.located()))
            raise
        answer_instance(instance, choice, started=args.started)
    except OSError as exc:
        raise InputError(f"cannot write the result file: {exc.strerror or exc}", path=str(args.results)) from None
    return 0


def _export(args: argparse.Namespace) -> int:
    import shlex

    from vnnbridge.box import Box
    from vnnbridge.cache import check_writable_folder
    from vnnbridge.derived import prepare_model
    from vnnbridge.inputs import check_input, load_input
    from vnnbridge.network import load_network
    from vnnbridge.vnncomp.export import export_queries, method_queries, radius_sweep

    if (args.method is None) == (not args.radii):
        raise InputError("give either --radii R... (a radius sweep) or --method M (a certification run)")
    check_writable_folder(args.out, "--out")
    onnx = Path(args.onnx)
    if args.mean is not None or args.std is not None:
        if args.mean is None or args.std is None:
            raise InputError("--mean and --std go together")
        # Softmax stays: the exported model is exactly net((x - mean) / std).
        onnx = prepare_model(onnx, args.mean, args.std, strip_softmax=False)
    net = load_network(onnx)
    queries = []
    for index, source in enumerate(args.input):
        loaded = load_input(source, args.index)
        domain = loaded.domain or Box.from_arrays([args.domain[0]] * net.inputs, [args.domain[1]] * net.inputs)
        check_input(loaded, net.inputs, domain)
        stem = (Path(source).name.split(".")[0] + ("" if args.index is None else f"_item{args.index}")
                + (f"_{index}" if len(args.input) > 1 else ""))
        if args.radii:
            queries += radius_sweep(loaded.x, net.predict(loaded.x), net.outputs, args.radii, domain, stem)
        else:
            queries += method_queries(onnx, loaded.x, stem, args.method, args.oracle, args.call_timeout,
                                      args.delta, domain)
    how = (f"Radius sweep: radii {', '.join(repr(r) for r in args.radii)} around each input"
           if args.radii else f"The queries that method `{args.method}` asked oracle `{args.oracle}`")
    description = (f"{how}; inputs: {', '.join(f'`{i}`' for i in args.input)}; the label of each input is the "
                   "network's prediction there." + (f" Inputs are normalised inside the exported model "
                                                    f"(mean {args.mean}, std {args.std})." if args.mean else ""))
    parts = ["vnnbridge", "export-benchmark", "--onnx", args.onnx, "--input", *args.input]
    if args.index is not None:
        parts += ["--index", str(args.index)]
    parts += ["--radii", *map(repr, args.radii)] if args.radii else [
        "--method", args.method, "--oracle", args.oracle, "--call-timeout", repr(args.call_timeout)]
    if args.mean is not None:
        parts += ["--mean", *map(repr, args.mean), "--std", *map(repr, args.std or [])]
    parts += ["--timeout", repr(args.timeout), "--out", str(args.out)]
    name = f"{Path(args.onnx).stem}_normalized.onnx" if args.mean is not None else None
    export = export_queries(onnx, queries, args.out, args.timeout, description, command=shlex.join(parts),
                            onnx_name=name)
    print(f"wrote {len(export.rows)} instances to {export.out}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from vnnbridge.vnncomp.compare import compare_oracles, draw_cactus, format_table

    out = args.out or Path(args.benchmark) / "compare"
    comparison = compare_oracles(args.benchmark, args.oracle, out, args.timeout, args.jobs, args.threads,
                                 args.category)
    print(format_table(comparison))
    print(f"results: {out}/<oracle>/results.csv")
    if args.plot:
        print(f"cactus plot: {draw_cactus(comparison, args.plot)}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from vnnbridge.vnncomp.solver import run_with_deadline, verify_query

    if args.serialise_assignments or args.unsat_proofs:
        raise InputError("vnnbridge supports neither --serialise-assignments nor --unsat-proofs "
                         "(see `vnnbridge supports --serialise-assignments`)")

    def _timed_out() -> None:
        sys.stdout.write("timed-out\n")
        sys.stdout.flush()

    answer = run_with_deadline(lambda: verify_query(args.query, args.network, args.timeout, args.oracle),
                               args.timeout, _timed_out)
    sys.stdout.write(answer.text())
    sys.stdout.flush()
    if answer.reason:
        print(f"vnnbridge: {answer.reason}", file=sys.stderr)
    return 0


def _supports(args: argparse.Namespace) -> int:
    from vnnbridge.vnncomp.solver import capability

    for line in capability(args.capability):
        print(line)
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    """Register this group's subcommands."""
    p = sub.add_parser("vnncomp-prepare", help="harness: check an instance and warm caches (no analysis)")
    _instance_args(p)
    p.add_argument("--no-cleanup", action="store_true",
                   help="do not end processes left over from earlier runs (for parallel callers)")
    p.set_defaults(func=_prepare)

    p = sub.add_parser("vnncomp-run", help="harness: answer one instance and write the result file")
    _instance_args(p)
    p.add_argument("--results", required=True, type=Path, help="the result file to write")
    # Checked in _run, not by argparse: a bad TIMEOUT must still leave `error` in the result file.
    p.add_argument("--timeout", required=True, help="seconds the harness allows")
    p.add_argument("--started", type=float, default=None,
                   help="wall-clock time (seconds since the epoch) at which the harness started the script")
    p.set_defaults(func=_run)

    p = sub.add_parser("export-benchmark", help="write certification queries as a VNN-COMP benchmark folder")
    p.add_argument("--onnx", required=True, help="the classifier")
    p.add_argument("--input", required=True, nargs="+", help="input point(s): .csv .npy .png idx .vnnlib")
    p.add_argument("--index", type=int, default=None, help="item of an idx/npy collection")
    p.add_argument("--radii", type=float, nargs="+", help="a radius sweep: one cube query per radius and input")
    p.add_argument("--method", help="export the queries this certification method asks (e.g. apothem)")
    p.add_argument("--oracle", default="embedded", help="the oracle the method asks (with --method)")
    p.add_argument("--call-timeout", type=seconds, default=60.0, help="seconds per oracle call (with --method)")
    p.add_argument("--delta", type=float, default=None, help="grid step of the method (default 1/255)")
    p.add_argument("--domain", type=float, nargs=2, default=(0.0, 1.0), metavar=("LO", "HI"),
                   help="input domain per coordinate (default 0 1)")
    add_normalisation(p, "folded into the exported model")
    p.add_argument("--timeout", type=seconds, default=60.0, help="the timeout column of instances.csv")
    p.add_argument("--out", required=True, type=Path, help="the benchmark folder to write")
    p.set_defaults(func=_export)

    p = sub.add_parser("compare", help="run oracles on a benchmark folder on equal footing and score them")
    p.add_argument("benchmark", type=Path, help="folder with instances.csv")
    p.add_argument("--oracle", action="append", required=True, help="an oracle (repeat for each)")
    p.add_argument("--timeout", type=seconds, default=None, help="override every instance's timeout")
    p.add_argument("--jobs", type=int, default=1, help="instances run in parallel")
    p.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads per run (same for all)")
    p.add_argument("--category", default=None, help="category passed to the tools (default: folder name)")
    p.add_argument("--out", type=Path, default=None, help="where results go (default BENCHMARK/compare)")
    p.add_argument("--plot", type=Path, default=None, metavar="PNG", help="draw a cactus plot")
    p.set_defaults(func=_compare)

    p = sub.add_parser("verify", help="VNN-LIB 2.0 solver interface: decide a query")
    p.add_argument("query", type=Path, help="the VNN-LIB query (2.0 or 1.0)")
    p.add_argument("--network", action="append", default=[], metavar="NAME=PATH", help="a declared network's model")
    p.add_argument("--timeout", type=seconds, default=None, help="seconds (fractions allowed)")
    p.add_argument("--oracle", default="embedded", help="the oracle that decides (default embedded)")
    p.add_argument("--serialise-assignments", metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--unsat-proofs", metavar="FILE", help=argparse.SUPPRESS)
    p.set_defaults(func=_verify)

    from vnnbridge.vnncomp.solver import CAPABILITIES

    p = sub.add_parser("supports", help="VNN-LIB 2.0 solver interface: report a capability")
    group = p.add_mutually_exclusive_group(required=True)
    for flag in CAPABILITIES:
        group.add_argument(flag, dest="capability", action="store_const", const=flag)
    p.set_defaults(func=_supports)
