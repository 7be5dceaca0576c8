"""VNN-COMP result files: the result words and the counterexample format, read and written.

They live with the oracles (every external adapter reads one); `vnnbridge.vnncomp.results`
re-exports them for the harness side.

A result file holds one word on its first line, ``sat``, ``unsat``, ``timeout``,
``unknown`` or ``error`` (VNN-COMP 2021 wrote ``violated`` and ``holds`` for sat and
unsat). After ``sat`` comes the counterexample, every input then every output::

    sat
    ((X_0 0.1)
     (X_1 0.25)
     (Y_0 -1.5)
     (Y_1 2.0))

Inputs are the flat C-order view of the ONNX input; values are written with ``repr`` so
they read back as the same doubles. The harness pre-fills the file with
``no_result_in_file``; a file that still says so means the tool wrote nothing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from vnnbridge.cache import atomic_write
from vnnbridge.errors import OracleProtocolError
from vnnbridge.oracles.base import Verdict

__all__ = [
    "NO_RESULT",
    "RESULT_WORDS",
    "ResultFile",
    "format_counterexample",
    "format_result",
    "parse_counterexample",
    "parse_result",
    "read_result",
    "write_result",
]

# The words a tool may write on the first line, and what each means. Nothing else is accepted.
RESULT_WORDS: dict[str, Verdict] = {
    "sat": Verdict.SAT,
    "unsat": Verdict.UNSAT,
    "timeout": Verdict.TIMEOUT,
    "unknown": Verdict.UNKNOWN,
    "error": Verdict.ERROR,
    "violated": Verdict.SAT,  # VNN-COMP 2021
    "holds": Verdict.UNSAT,  # VNN-COMP 2021
}
# What the harness writes before the tool runs.
NO_RESULT = "no_result_in_file"

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan)"
_ENTRY = re.compile(rf"\(\s*([XY])_(\d+)\s+({_NUMBER})\s*\)")


@dataclass(frozen=True)
class ResultFile:
    """A parsed result file: the verdict, the word that said it, and a sat counterexample."""

    verdict: Verdict
    word: str
    x: np.ndarray | None = field(default=None, compare=False)
    y: np.ndarray | None = field(default=None, compare=False)


def _vector(values: dict[int, float], letter: str) -> np.ndarray | None:
    if not values:
        return None
    if sorted(values) != list(range(len(values))):
        missing = sorted(set(range(max(values) + 1)) - set(values))
        raise OracleProtocolError(f"counterexample lacks {letter}_{missing[0]}")
    return np.array([values[i] for i in range(len(values))], dtype=np.float64)


def parse_counterexample(text: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The ``X`` and ``Y`` vectors of a counterexample text (either may be absent)."""
    found: dict[str, dict[int, float]] = {"X": {}, "Y": {}}
    for letter, index, value in _ENTRY.findall(text):
        slot = found[letter]
        if int(index) in slot:
            raise OracleProtocolError(f"counterexample gives {letter}_{index} twice")
        slot[int(index)] = float(value)
    leftover = _ENTRY.sub("", text).replace("(", "").replace(")", "").strip()
    if leftover:
        raise OracleProtocolError(f"counterexample has text it cannot read: {leftover[:60]!r}")
    return _vector(found["X"], "X"), _vector(found["Y"], "Y")


def parse_result(text: str, words: Mapping[str, Verdict] = RESULT_WORDS) -> ResultFile:
    """Read a result file's text; raises OracleProtocolError for a word the table ``words`` does not know."""
    stripped = text.strip()
    if not stripped:
        raise OracleProtocolError("the result file is empty")
    first, _, rest = stripped.partition("\n")
    word = first.strip()
    if word == NO_RESULT:
        raise OracleProtocolError("the tool wrote no result (the file still says no_result_in_file)")
    if word not in words:
        raise OracleProtocolError(f"unknown result word {word[:80]!r}")
    verdict = words[word]
    if verdict is not Verdict.SAT:
        return ResultFile(verdict, word)
    x, y = parse_counterexample(rest)
    return ResultFile(verdict, word, x, y)


def read_result(path: str | Path, words: Mapping[str, Verdict] = RESULT_WORDS) -> ResultFile:
    """Read a result file; a missing or unreadable one is an OracleProtocolError."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise OracleProtocolError(f"cannot read the result file: {exc.strerror or exc}") from None
    return parse_result(text, words)


def _num(value: float) -> str:
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"counterexample values must be finite, got {v!r}")
    return repr(v)


def format_counterexample(x: Iterable[float], y: Iterable[float]) -> str:
    """``((X_0 v) ... (Y_0 v))``, one entry per line, values that round-trip exactly."""
    entries = [f"(X_{i} {_num(v)})" for i, v in enumerate(np.asarray(x, dtype=np.float64).ravel())]
    entries += [f"(Y_{j} {_num(v)})" for j, v in enumerate(np.asarray(y, dtype=np.float64).ravel())]
    if not entries:
        raise ValueError("a counterexample needs at least one value")
    return "(" + "\n ".join(entries) + ")\n"


def format_result(verdict: Verdict, x: Iterable[float] | None = None, y: Iterable[float] | None = None) -> str:
    """The text of a result file: the word, and for sat the counterexample (x and y required)."""
    if verdict is not Verdict.SAT:
        return f"{verdict.value}\n"
    if x is None or y is None:
        raise ValueError("a sat result needs the counterexample's x and y")
    return "sat\n" + format_counterexample(x, y)


def write_result(path: str | Path, verdict: Verdict, x: Iterable[float] | None = None,
                 y: Iterable[float] | None = None) -> Path:
    """Write a result file atomically (readers never see half of it)."""
    return atomic_write(path, format_result(verdict, x, y))
