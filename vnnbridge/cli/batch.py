"""CLI commands: ``certify-batch`` (certify a whole collection, resumable) and ``show-batch``.

Exit codes of ``certify-batch``: 0 every input has its row and none failed, 1 some input
failed (its row says why), 2 bad command or input (including a folder started with a
different command), 130 interrupted (finished rows are kept; the same command resumes).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add"]


def _certify_batch(args: argparse.Namespace) -> int:
    from vnnbridge.batch.run import run_batch
    from vnnbridge.batch.table import format_summary
    from vnnbridge.batch.worker import BatchSpec

    spec = BatchSpec(onnx=args.onnx, input=args.input, out=args.out, index=args.index, method=args.method,
                     dual=None if args.dual == "none" else args.dual, oracle=args.oracle, confirm=args.confirm,
                     timeout=args.timeout, delta=args.delta, margin=args.margin, mean=args.mean,
                     std=args.std, max_calls=args.max_calls)
    report = run_batch(spec, jobs=args.jobs, scheduler=args.scheduler, progress=not args.quiet,
                       retry_failed=args.retry_failed)
    print(format_summary(report.summary))
    done = len(report.rows)
    print(f"{args.out}/results.csv: {done} of {report.total} inputs finished ({report.skipped} before this run, "
          f"{report.ran} now), {report.failed} failed")
    if report.interrupted:
        print(f"vnnbridge: interrupted; {done} finished inputs kept, run the same command to resume",
              file=sys.stderr)
    return report.exit_code


def _show_batch(args: argparse.Namespace) -> int:
    from vnnbridge.plot import draw_batch

    path = draw_batch(args.dir, args.output, smallest=args.smallest)
    print(f"wrote {path}")
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    """Register ``certify-batch`` and ``show-batch``."""
    from vnnbridge.cli.options import add_normalisation
    from vnnbridge.search.names import DEFAULT_DUAL, DEFAULT_MAX_CALLS, DEFAULT_METHOD, METHOD_NAMES

    p = sub.add_parser("certify-batch", help="certify every input of a collection into DIR (resumable)",
                       description="Certify each input of an idx file (.gz too), an .npy stack, a folder of "
                       "inputs or a list file: DIR/<id>/ holds its certificate, DIR/results.csv one row per "
                       "input. Run the same command again to resume after an interrupt or a kill.")
    p.add_argument("--onnx", required=True, help="the classifier (ONNX)")
    p.add_argument("--input", required=True, help="idx file (.gz), .npy stack, folder of inputs, or list file")
    p.add_argument("--index", help="the items to run: K, or A:B as a Python slice (default: all)")
    p.add_argument("--out", required=True, help="batch folder (results.csv and one folder per input)")
    p.add_argument("--method", default=DEFAULT_METHOD,
                   help=f"search: {', '.join(METHOD_NAMES)}, or A+B (default {DEFAULT_METHOD})")
    p.add_argument("--dual", default=DEFAULT_DUAL, help=f"dual search or none (default {DEFAULT_DUAL})")
    p.add_argument("--oracle", default="embedded", help="oracle: embedded, marabou, vnncomp:DIR, ...")
    p.add_argument("--confirm", help="second oracle to cross-examine unsat answers (where certify has --confirm)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per oracle call")
    p.add_argument("--delta", type=float, help="grid step (default 1/255 when inputs lie on that grid)")
    p.add_argument("--margin", type=float, default=0.0, help="require the label to win by this logit margin")
    add_normalisation(p, "inputs stay in pixel space")
    p.add_argument("--max-calls", type=int, default=DEFAULT_MAX_CALLS,
                   help=f"oracle call budget per search phase of each input (default {DEFAULT_MAX_CALLS})")
    p.add_argument("--jobs", type=int, default=1, help="worker processes on this machine (default 1: serial)")
    p.add_argument("--scheduler", help="address of a Dask distributed scheduler, e.g. tcp://host:8786")
    p.add_argument("--retry-failed", action="store_true", help="run inputs whose earlier row failed again")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_certify_batch)

    s = sub.add_parser("show-batch", help="draw a batch: apothem histogram per class, smallest-apothem inputs")
    s.add_argument("dir", help="batch folder (with results.csv)")
    s.add_argument("-o", "--output", default="batch.png", help="image file to write")
    s.add_argument("--smallest", type=int, default=8, help="how many smallest-apothem inputs to draw")
    s.set_defaults(func=_show_batch)
