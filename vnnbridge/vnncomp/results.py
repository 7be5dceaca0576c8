"""VNN-COMP result files, as the harness side sees them (the code lives in `vnnbridge.oracles.resultfile`).

The oracles read result files too, so the format belongs to the oracle layer; this module
keeps the harness-side import path.
"""

from __future__ import annotations

from vnnbridge.oracles.resultfile import (
    NO_RESULT,
    RESULT_WORDS,
    ResultFile,
    format_counterexample,
    format_result,
    parse_counterexample,
    parse_result,
    read_result,
    write_result,
)

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
