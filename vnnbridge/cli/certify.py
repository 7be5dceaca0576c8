"""CLI commands: ``certify`` (search a box and write its certificate), ``check`` and ``show``.

Exit codes beyond the dispatcher's: ``certify`` returns 0 when the box is certified and 1
when the search ends without a certified box (the certificate folder is written either way),
130 when interrupted after a certified box was found (the certificate keeps that box);
``check`` returns 0 only when every check holds and 1 with the first failing check otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

__all__ = ["add"]


class _Progress:
    """A one-line progress display on stderr (only on a terminal), refreshed at most 10 times a second."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.count, self.last, self.start = enabled, 0, 0.0, time.perf_counter()

    def __call__(self, call: Any) -> None:
        self.count += 1
        now = time.perf_counter()
        if self.enabled and now - self.last > 0.1:
            self.last = now
            note = call.note[:48]
            sys.stderr.write(f"\r  {self.count:5d} calls  {now - self.start:7.1f} s  {note:<48}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.count:
            sys.stderr.write("\r" + " " * 80 + "\r")
            sys.stderr.flush()


def _floats(text: str | None) -> list[float] | None:
    if text is None:
        return None
    from vnnbridge.errors import InputError

    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise InputError(f"expected numbers separated by commas, got {text!r}") from None


def _certify(args: argparse.Namespace) -> int:
    from vnnbridge.job import CertifyJob, run_job

    job = CertifyJob(onnx=args.onnx, input=args.input, index=args.index, label=args.label, method=args.method,
                     dual=None if args.dual == "none" else args.dual, oracle=args.oracle, delta=args.delta,
                     timeout=args.timeout, out=args.out, jobs=args.jobs, margin=args.margin,
                     mean=_floats(args.mean), std=_floats(args.std), order=args.order, step=args.step,
                     max_calls=args.max_calls)
    progress = _Progress(sys.stderr.isatty() and not args.quiet)
    try:
        outcome = run_job(job, progress)
    finally:
        progress.close()
    print(outcome.summary())
    if not args.quiet:
        print(f"check it with: vnnbridge check {outcome.out}", file=sys.stderr)
    if outcome.result.interrupted:
        print(f"vnnbridge: interrupted; the certificate keeps the box certified before ({outcome.out}/)",
              file=sys.stderr)
    return outcome.exit_code


def _check(args: argparse.Namespace) -> int:
    from vnnbridge.certificate import check_certificate
    from vnnbridge.oracles.registry import make_oracle

    oracle = None if args.oracle == "none" else make_oracle(args.oracle)
    report = check_certificate(args.cert, oracle, args.timeout)
    if args.verbose_checks:
        for c in report.checks:
            print(f"{'ok  ' if c.ok else 'FAIL'} {c.name}" + ("" if c.ok else f": {c.detail}"))
    failure = report.first_failure()
    if failure is not None:
        print(f"vnnbridge: {args.cert}: not valid: {failure.name}: {failure.detail}", file=sys.stderr)
        return 1
    print(f"{args.cert}: valid ({len(report.checks)} checks hold)")
    return 0


def _show(args: argparse.Namespace) -> int:
    from vnnbridge.plot import draw_certificate

    path = draw_certificate(args.cert, args.output)
    print(f"wrote {path}")
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    """Register ``certify``, ``check`` and ``show``."""
    from vnnbridge.search.names import DEFAULT_DUAL, DEFAULT_METHOD, DUAL_NAMES, METHOD_NAMES

    p = sub.add_parser("certify", help="search a robustness box around an input and write its certificate",
                       description="Search a box around the input in which the network's prediction cannot "
                       "change, certified by an `unsat` oracle answer. Exit 0: certified; 1: not certified.")
    p.add_argument("--onnx", required=True, help="the classifier (ONNX)")
    p.add_argument("--input", required=True, help="x: .csv (any layout), .npy, .png, idx (.gz) or .vnnlib")
    p.add_argument("--index", type=int, help="item K of an idx/npy collection")
    p.add_argument("--label", type=int, help="expected label (default: the prediction at x)")
    p.add_argument("--method", default=DEFAULT_METHOD,
                   help=f"search: {', '.join(METHOD_NAMES)}, or A+B (default {DEFAULT_METHOD})")
    p.add_argument("--dual", default=DEFAULT_DUAL, help=f"dual: {', '.join(DUAL_NAMES)} or none "
                   f"(default {DEFAULT_DUAL})")
    p.add_argument("--oracle", default="embedded", help="oracle: embedded, marabou, vnncomp:DIR, ...")
    p.add_argument("--delta", type=float, help="grid step (default 1/255 when x lies on that grid)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per oracle call")
    p.add_argument("--out", help="certificate folder (default cert-<input name>)")
    p.add_argument("--jobs", type=int, default=1, help="parallel oracle calls for dual-faces")
    p.add_argument("--margin", type=float, default=0.0, help="require the label to win by this logit margin")
    p.add_argument("--mean", help="per-channel mean the network expects (input stays in pixel space)")
    p.add_argument("--std", help="per-channel std the network expects")
    p.add_argument("--order", default="dfs", choices=("dfs", "bfs"), help="greedy: face order")
    p.add_argument("--step", default="bisect", choices=("linear", "bisect"), help="greedy: face step")
    p.add_argument("--max-calls", type=int, default=100_000, help="oracle call budget")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=_certify)

    c = sub.add_parser("check", help="re-check a certificate folder",
                       description="Re-check a certificate: the box file parses back to exactly the box, "
                       "every witness is re-run with onnxruntime, and the oracle answers unsat again. "
                       "Exit 0 only when everything holds.")
    c.add_argument("cert", help="certificate folder")
    c.add_argument("--oracle", default="embedded", help="oracle to re-verify the box with, or none")
    c.add_argument("--timeout", type=float, default=300.0, help="seconds for the oracle")
    c.add_argument("--list", dest="verbose_checks", action="store_true", help="print every check")
    c.set_defaults(func=_check)

    s = sub.add_parser("show", help="draw a certificate: input, bounds and slack per input")
    s.add_argument("cert", help="certificate folder")
    s.add_argument("-o", "--output", default="certificate.png", help="image file to write")
    s.set_defaults(func=_show)
