"""The oracle protocol: one box query in, one verdict out."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from vnnbridge.cache import cache_dir, sha256_bytes
from vnnbridge.vnnlib.model import Spec

__all__ = ["Oracle", "OracleResult", "Query", "Verdict"]


class Verdict(enum.Enum):
    """What an oracle concluded. Only UNSAT certifies; only a validated SAT refutes."""

    SAT = "sat"
    UNSAT = "unsat"
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"
    ERROR = "error"


@dataclass(frozen=True)
class Query:
    """An ONNX model plus a spec plus the VNN-LIB file written from it; every oracle gets the same file."""

    onnx: Path
    spec: Spec
    vnnlib: Path
    sha256: str  # of the VNN-LIB text

    @classmethod
    def build(cls, onnx: str | Path, spec: Spec, directory: str | Path | None = None) -> Query:
        """Write ``spec`` as VNN-LIB into ``directory`` (default: the cache), named by its hash."""
        from vnnbridge.vnnlib.writer import write

        text = write(spec)
        digest = sha256_bytes(text.encode())
        folder = Path(directory) if directory is not None else cache_dir("queries")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{digest[:16]}.vnnlib"
        if not path.exists():
            from vnnbridge.cache import atomic_write

            atomic_write(path, text)
        return cls(Path(onnx), spec, path, digest)


@dataclass(frozen=True)
class OracleResult:
    """One oracle answer: the verdict, a validated witness for SAT, timing and provenance."""

    verdict: Verdict
    oracle: str
    version: str = ""
    seconds: float = 0.0
    witness: np.ndarray | None = field(default=None, compare=False)
    reason: str = ""
    log: Path | None = None

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict (the witness as a list of floats)."""
        return {
            "verdict": self.verdict.value,
            "oracle": self.oracle,
            "version": self.version,
            "seconds": self.seconds,
            "reason": self.reason,
            "log": str(self.log) if self.log else None,
            "witness": None if self.witness is None else [float(v) for v in np.ravel(self.witness)],
        }


@runtime_checkable
class Oracle(Protocol):
    """Anything that answers box queries. Adapters only build a command and read a result."""

    name: str

    def version(self) -> str:
        """The tool's version string (empty when unknown)."""
        ...

    def check(self, query: Query, timeout: float) -> OracleResult:
        """Decide ``query`` within ``timeout`` seconds; never raise for a tool failure (say ERROR)."""
        ...
