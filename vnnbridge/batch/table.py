"""``results.csv``: one row per finished input, appended as inputs finish, readable after a kill -9.

Rows are appended and flushed one at a time, so a kill leaves at most one torn last line;
`read_rows` drops it (that input is simply not finished). When a run ends, the file is
rewritten in the collection's order (atomically), so tables of a serial and a parallel run
compare line by line except for the seconds.
"""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from vnnbridge.cache import atomic_write

__all__ = ["FIELDS", "RESULTS", "append_row", "class_summary", "format_summary", "read_rows", "write_rows"]

RESULTS = "results.csv"
FIELDS = ["id", "source", "index", "label", "true_label", "status", "apothem", "exact", "min_edge", "avg_edge",
          "max_edge", "calls", "refuted", "seconds", "oracle", "error"]


def read_rows(path: str | os.PathLike[str], repair: bool = False) -> list[dict[str, str]]:
    """The complete rows of a results file; a torn last line (from a kill) is left out, and with
    ``repair`` (the driver, holding the batch lock) also cut off the file.
    """
    p = Path(path)
    if not p.is_file():
        return []
    data = p.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        if repair:
            with p.open("r+b") as stream:
                stream.truncate(cut)
        data = data[:cut]
    reader = csv.DictReader(io.StringIO(data.decode()))
    return [row for row in reader if None not in row and all(v is not None for v in row.values())
            and row.get("id")]


def _line(row: Mapping[str, object]) -> str:
    buf = io.StringIO()
    csv.DictWriter(buf, FIELDS, lineterminator="\n", extrasaction="ignore").writerow(
        {k: "" if row.get(k) is None else row.get(k) for k in FIELDS})
    return buf.getvalue()


def append_row(path: str | os.PathLike[str], row: dict[str, object]) -> None:
    """Append one row (writing the header first when the file is new), flushed to the OS at once."""
    p = Path(path)
    text = ("" if p.is_file() and p.stat().st_size else ",".join(FIELDS) + "\n") + _line(row)
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def write_rows(path: str | os.PathLike[str], rows: Iterable[Mapping[str, object]]) -> None:
    """Rewrite the whole results file (atomically)."""
    atomic_write(path, ",".join(FIELDS) + "\n" + "".join(_line(r) for r in rows))


def _num(text: object) -> float | None:
    try:
        v = float(str(text))
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def class_summary(rows: Sequence[dict[str, str]]) -> list[dict[str, object]]:
    """Per class (the true label when known, else the predicted one): count, certified %, apothem, calls, seconds.

    Mean and median apothem are over the certified inputs of the class.
    """
    groups: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        cls = r.get("true_label") or r.get("label") or "?"
        groups.setdefault(cls, []).append(r)

    def order(c: str) -> tuple[int, object]:
        return (0, int(c)) if c.lstrip("-").isdigit() else (1, c)

    out = []
    for cls in sorted(groups, key=order) + ["all"]:
        group = list(rows) if cls == "all" else groups[cls]
        certified = [r for r in group if r.get("status") == "certified"]
        apothems = [v for v in (_num(r.get("apothem")) for r in certified) if v is not None]
        calls = [v for v in (_num(r.get("calls")) for r in group) if v is not None]
        seconds = [v for v in (_num(r.get("seconds")) for r in group) if v is not None]
        out.append({"class": cls, "count": len(group),
                    "certified_pct": 100.0 * len(certified) / len(group) if group else 0.0,
                    "failed": sum(r.get("status") == "failed" for r in group),
                    "mean_apothem": statistics.fmean(apothems) if apothems else None,
                    "median_apothem": statistics.median(apothems) if apothems else None,
                    "mean_calls": statistics.fmean(calls) if calls else None,
                    "mean_seconds": statistics.fmean(seconds) if seconds else None})
    return out


def format_summary(summary: Sequence[dict[str, object]]) -> str:
    """The per-class table as aligned text."""
    head = ["class", "count", "certified %", "failed", "mean apothem", "median apothem", "mean calls", "mean s"]

    def cell(v: object, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    lines = [[str(s["class"]), str(s["count"]), cell(s["certified_pct"], ".1f"), str(s["failed"]),
              cell(s["mean_apothem"], ".4f"), cell(s["median_apothem"], ".4f"), cell(s["mean_calls"], ".1f"),
              cell(s["mean_seconds"], ".2f")] for s in summary]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    text = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    text += ["  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(text)
