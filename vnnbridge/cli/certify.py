"""CLI commands: ``certify`` (search a box and write its certificate), ``check`` and ``show``.

Exit codes beyond the dispatcher's: ``certify`` returns 0 when the box is certified and 1
when the search ends without a certified box (the certificate folder is written either way),
130 when interrupted (Ctrl-C or SIGTERM) after a certified box was found (the certificate keeps
that box);
``check`` returns 0 only when every check holds and 1 with the first failing check otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

__all__ = ["add"]


class _Progress:
    """Progress on stderr: phase, calls, open faces and time.

    On a terminal one line refreshed at most 10 times a second; elsewhere (a log file) one
    line every HEARTBEAT seconds, so that a long search is never silent.
    """

    HEARTBEAT = 30.0

    def __init__(self, enabled: bool, tty: bool) -> None:
        self.enabled, self.tty, self.count, self.start = enabled, tty, 0, time.perf_counter()
        self.last = 0.0 if tty else self.start

    def __call__(self, call: Any) -> None:
        self.count += 1
        now = time.perf_counter()
        if not self.enabled or now - self.last < (0.1 if self.tty else self.HEARTBEAT):
            return
        self.last = now
        phase = getattr(call, "phase", "") or "search"
        faces = getattr(call, "faces_left", None)
        text = f"{phase}: {self.count} calls, {now - self.start:.1f} s" + (
            f", {faces} faces open" if faces is not None else "")
        if self.tty:
            sys.stderr.write(f"\r  {text[:76]:<76}")
        else:
            sys.stderr.write(f"vnnbridge: {text}\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty and self.count:
            sys.stderr.write("\r" + " " * 80 + "\r")
            sys.stderr.flush()


def _certify(args: argparse.Namespace) -> int:
    from vnnbridge.job import CertifyJob, run_job, terminate_as_interrupt

    job = CertifyJob(onnx=args.onnx, input=args.input, index=args.index, label=args.label, method=args.method,
                     dual=None if args.dual == "none" else args.dual, oracle=args.oracle, delta=args.delta,
                     timeout=args.timeout, out=args.out, jobs=args.jobs, margin=args.margin,
                     mean=args.mean, std=args.std, order=args.order, step=args.step,
                     max_calls=args.max_calls)
    progress = _Progress(not args.quiet, sys.stderr.isatty())
    try:
        with terminate_as_interrupt():
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


def _certificate_folder(path: str) -> str:
    """``path`` when it can be a certificate folder (or its certificate.json); else a clear `CertificateError`."""
    from pathlib import Path

    from vnnbridge.certificate import CERTIFICATE
    from vnnbridge.errors import CertificateError

    p = Path(path)
    if p.is_file() and p.name != CERTIFICATE:
        raise CertificateError(f"this is a file, not a certificate folder (a folder with {CERTIFICATE})", path=path)
    if not p.exists():
        raise CertificateError("no such certificate folder", path=path)
    return path


def _check(args: argparse.Namespace) -> int:
    from vnnbridge.certificate import check_certificate
    from vnnbridge.oracles.registry import make_oracle

    _certificate_folder(args.cert)
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

    path = draw_certificate(_certificate_folder(args.cert), args.output)
    print(f"wrote {path}")
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    """Register ``certify``, ``check`` and ``show``."""
    from vnnbridge.cli.options import add_normalisation
    from vnnbridge.search.names import DEFAULT_DUAL, DEFAULT_MAX_CALLS, DEFAULT_METHOD, DUAL_NAMES, METHOD_NAMES

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
    add_normalisation(p, "boxes stay in the input's own scale")
    p.add_argument("--order", default="dfs", choices=("dfs", "bfs"), help="greedy: face order")
    p.add_argument("--step", default="bisect", choices=("linear", "bisect"), help="greedy: face step")
    p.add_argument("--max-calls", type=int, default=DEFAULT_MAX_CALLS,
                   help=f"oracle call budget per search phase (default {DEFAULT_MAX_CALLS}); a box grown to "
                   "the budget is certified but not maximal")
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
