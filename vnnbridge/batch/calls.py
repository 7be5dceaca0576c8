"""A call cache in front of an oracle: a definitive answer is asked once, even across a kill -9.

The key is the oracle (its name as given, with arguments, and its version), the content of the
network (sha256), the query (sha256 of the VNN-LIB text) and the timeout. Only definitive
answers are kept: ``unsat``, and ``sat`` with a witness that onnxruntime confirmed. A timeout,
``unknown`` or error is asked again: a longer run might answer it, and it never certifies.
A ``sat`` served from the cache is re-run with onnxruntime again (the trust rule holds for
every witness, wherever it comes from).

Every answer the oracle itself gave is also appended to a log (one line: key and verdict), so
that a benchmark can count repeated answered calls after a resume.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from vnnbridge.cache import CallCache, file_digest
from vnnbridge.oracles.base import OracleResult, Query, Verdict
from vnnbridge.errors import BogusWitness
from vnnbridge.oracles.witness import confirm_witness

__all__ = ["CachedOracle", "DEFINITIVE"]

DEFINITIVE = (Verdict.SAT, Verdict.UNSAT)


class CachedOracle:
    """Wraps a (witness-validating) oracle with a `CallCache`; counts hits and asked calls."""

    def __init__(self, inner: Any, cache: CallCache, ident: str, log: str | os.PathLike[str] | None = None) -> None:
        self.inner, self.cache, self.ident = inner, cache, ident
        self.name = str(inner.name)
        self.log = Path(log) if log is not None else None
        self.hits = self.asked = 0
        self._version: str | None = None

    def version(self) -> str:
        """The wrapped oracle's version (asked once: some tools run a command for it)."""
        if self._version is None:
            self._version = str(self.inner.version())
        return self._version

    def key(self, query: Query, timeout: float) -> str:
        """The content key of one call."""
        return self.cache.key({"oracle": self.ident, "version": self.version(), "onnx": file_digest(query.onnx),
                               "query": query.sha256, "timeout": float(timeout)})

    def check(self, query: Query, timeout: float) -> OracleResult:
        """The cached definitive answer, or the oracle's (stored when definitive)."""
        key = self.key(query, timeout)
        record = self.cache.get(key)
        if record is not None:
            cached = _from_record(record)
            if cached.verdict is Verdict.SAT:
                cached = _rechecked(cached, query)
            if cached.verdict in DEFINITIVE:
                self.hits += 1
                return cached
        result = self.inner.check(query, timeout)
        self.asked += 1
        definitive = result.verdict is Verdict.UNSAT or (result.verdict is Verdict.SAT and result.witness is not None)
        if definitive:
            self.cache.put(key, _to_record(result))
        if self.log is not None:
            # One short line with O_APPEND: concurrent writers do not interleave within it.
            line = f"{key} {result.verdict.value}\n".encode()
            fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        return result


def _rechecked(result: OracleResult, query: Query) -> OracleResult:
    """The stored witness, re-run with onnxruntime as stored (no repair): a record that fails is not served."""
    if result.witness is None:
        return OracleResult(Verdict.ERROR, result.oracle, reason="cached sat without a witness")
    try:
        confirm_witness(query, result.witness, repair=False)
    except BogusWitness as exc:
        return OracleResult(Verdict.ERROR, result.oracle, reason=f"cached witness fails: {exc.message}")
    return result


def _to_record(result: OracleResult) -> dict[str, Any]:
    witness = None if result.witness is None else [float(v).hex() for v in np.ravel(result.witness)]
    return {"verdict": result.verdict.value, "oracle": result.oracle, "version": result.version,
            "seconds": result.seconds, "reason": result.reason, "witness_hex": witness}


def _from_record(record: dict[str, Any]) -> OracleResult:
    try:
        verdict = Verdict(record["verdict"])
        hexes = record.get("witness_hex")
        witness = None if hexes is None else np.array([float.fromhex(h) for h in hexes])
        reason = str(record.get("reason") or "")
        return OracleResult(verdict, str(record.get("oracle", "")), str(record.get("version", "")),
                            float(record.get("seconds", 0.0)), witness,
                            f"{reason}; " * bool(reason) + "answer from the batch call cache")
    except (KeyError, ValueError, TypeError):
        return OracleResult(Verdict.ERROR, "", reason="unreadable call-cache record")
