"""Write vnnbridge's queries as a competition benchmark folder, so any team can run them in the harness.

The folder holds ``instances.csv`` (rows ``onnx,vnnlib,timeout``, paths relative to the folder,
no header, as in the VNN-COMP benchmark repositories), ``onnx/`` (the model, copied), ``vnnlib/``
(one robustness property per query) and a ``README.md`` that says how the queries were made.
Two sources of queries: a radius sweep (the l-inf cube of each radius around each input,
clipped to the domain) or the queries a certification method actually asked.
"""

from __future__ import annotations

import csv
import io
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from vnnbridge import __version__
from vnnbridge.box import Box
from vnnbridge.cache import atomic_write, sha256_file
from vnnbridge.errors import InputError
from vnnbridge.vnnlib.model import robustness_spec

__all__ = ["Export", "ExportedQuery", "export_queries", "method_queries", "radius_sweep", "read_instances"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportedQuery:
    """One query to export: a name stem, its VNN-LIB text, and what vnnbridge's oracle answered (if asked)."""

    name: str
    text: str
    note: str = ""
    verdict: str = ""


@dataclass
class Export:
    """What was written: the folder, the instances and a description for the README."""

    out: Path
    rows: list[tuple[str, str, float]] = field(default_factory=list)


def radius_sweep(x: np.ndarray, label: int, outputs: int, radii: Sequence[float], domain: Box,
                 stem: str) -> list[ExportedQuery]:
    """The robustness query of the cube of each radius around ``x`` (clipped to ``domain``)."""
    from vnnbridge.vnnlib.writer import write

    queries = []
    for r in radii:
        if not (r >= 0 and np.isfinite(r)):
            raise InputError(f"radii must be finite and >= 0, got {r!r}")
        box = Box.cube(x, float(r), domain)
        queries.append(ExportedQuery(f"{stem}_label{label}_eps{float(r)!r}", write(robustness_spec(box, label, outputs)),
                                     note=f"cube radius {float(r)!r}"))
    return queries


def method_queries(onnx: str | Path, x: np.ndarray, stem: str, method: str, oracle: str,
                   call_timeout: float, delta: float | None = None, domain: Box | None = None
                   ) -> list[ExportedQuery]:
    """Every query that certification method ``method`` asked ``oracle``, with its answer."""
    from vnnbridge.oracles.registry import make_oracle
    from vnnbridge.search.base import Instance, SearchOptions
    from vnnbridge.search.compose import certify

    instance = Instance.make(onnx, x, None, domain, delta)
    result, _, prober = certify(instance, make_oracle(oracle), method, options=SearchOptions(timeout=call_timeout))
    log.info("%s: %s after %d calls", stem, "certified" if result.certified else "not certified",
             len(prober.calls))
    return [ExportedQuery(f"{stem}_label{instance.label}_q{call.index:03d}", call.vnnlib.read_text(),
                          note=f"{call.purpose} {call.note}".strip(),
                          # a refuted unsat is known to be wrong: the validated counterexample makes it sat
                          verdict="sat" if call.refuted_by else call.verdict.value)
            for call in prober.calls]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def export_queries(onnx: str | Path, queries: Sequence[ExportedQuery], out: str | Path, timeout: float,
                   description: str, command: str = "", onnx_name: str | None = None) -> Export:
    """Write the benchmark folder ``out`` (created; existing instance files are replaced)."""
    if not queries:
        raise InputError("nothing to export: no queries")
    if not (timeout > 0):
        raise InputError(f"--timeout must be positive, got {timeout!r}")
    src = Path(onnx)
    if not src.is_file():
        raise InputError("no such ONNX file", path=str(src))
    root = Path(out)
    (root / "onnx").mkdir(parents=True, exist_ok=True)
    (root / "vnnlib").mkdir(parents=True, exist_ok=True)
    onnx_rel = f"onnx/{_safe(onnx_name or src.name)}"
    shutil.copyfile(src, root / onnx_rel)
    result = Export(root)
    seen: set[str] = set()
    for q in queries:
        name = _safe(q.name)
        if name in seen:
            raise InputError(f"two queries share the name {name!r}")
        seen.add(name)
        rel = f"vnnlib/{name}.vnnlib"
        atomic_write(root / rel, q.text)
        result.rows.append((onnx_rel, rel, float(timeout)))
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows((o, v, f"{t:g}") for o, v, t in result.rows)
    atomic_write(root / "instances.csv", text.getvalue())
    answered = [q for q in queries if q.verdict]
    if answered:
        lines = io.StringIO()
        writer = csv.writer(lines, lineterminator="\n")
        writer.writerow(["vnnlib", "note", "vnnbridge_verdict"])
        writer.writerows((f"vnnlib/{_safe(q.name)}.vnnlib", q.note, q.verdict) for q in queries)
        atomic_write(root / "expected.csv", lines.getvalue())
    atomic_write(root / "README.md", _readme(src, root / onnx_rel, queries, timeout, description, command))
    log.info("wrote %d instances to %s", len(result.rows), root)
    return result


def _readme(src: Path, copied: Path, queries: Sequence[ExportedQuery], timeout: float, description: str,
            command: str) -> str:
    lines = [
        f"# vnnbridge benchmark: {len(queries)} robustness queries",
        "",
        f"Made by vnnbridge {__version__} on {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}.",
        "",
        description.strip(),
        "",
        f"- network: `{copied.parent.name}/{copied.name}` (copied from `{src}`, sha256 `{sha256_file(copied)}`)",
        f"- instances: {len(queries)}, timeout {timeout:g} s each (`instances.csv`: `onnx,vnnlib,timeout`)",
        "- every property is the VNN-COMP counterexample form: an input box and the disjunction",
        "  \"some other logit >= the predicted label's logit\" (ties count against robustness);",
        "  `unsat` certifies the box, `sat` comes with a witness.",
    ]
    if command:
        lines += ["", "Command:", "", "```", command, "```"]
    if any(q.verdict for q in queries):
        lines += ["", "`expected.csv` lists what vnnbridge's oracle answered for each query."]
    lines += ["", "Run it in the VNN-COMP harness like any benchmark folder, or compare oracles on it with",
              "`vnnbridge compare THIS_FOLDER --oracle embedded --oracle marabou`.", ""]
    return "\n".join(lines)


def read_instances(folder: str | Path) -> list[tuple[Path, Path, float]]:
    """The rows of a benchmark folder's ``instances.csv`` as (onnx, vnnlib, timeout), paths resolved."""
    root = Path(folder)
    path = root / "instances.csv"
    if not path.is_file():
        raise InputError("no instances.csv in the benchmark folder", path=str(path))
    rows = []
    with path.open(newline="") as stream:
        for number, row in enumerate(csv.reader(stream), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 3:
                raise InputError(f"expected 3 columns onnx,vnnlib,timeout, found {len(row)}", path=str(path),
                                 line=number, column=1)
            try:
                timeout = float(row[2])
            except ValueError:
                raise InputError(f"timeout {row[2]!r} is not a number", path=str(path), line=number,
                                 column=len(row[0]) + len(row[1]) + 3) from None
            if not timeout > 0:
                raise InputError(f"timeout {row[2]!r} must be positive", path=str(path), line=number,
                                 column=len(row[0]) + len(row[1]) + 3)
            rows.append((root / row[0].strip(), root / row[1].strip(), timeout))
    if not rows:
        raise InputError("instances.csv lists no instance", path=str(path))
    return rows
