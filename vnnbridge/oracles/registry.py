"""The oracle registry: explicit, lazy and open (entry-point group ``vnnbridge.oracles``).

An oracle is named by a string: ``embedded``, ``marabou``, or ``KIND:ARG`` such as
``vnncomp:/path/to/tool`` or ``abcrown:/path/to/alpha-beta-CROWN``. ``make_oracle`` returns it
wrapped so that every SAT witness is re-validated with onnxruntime before anyone sees it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from vnnbridge.errors import OracleUnavailable
from vnnbridge.oracles.base import Oracle, OracleResult, Query
from vnnbridge.oracles.witness import validated

__all__ = ["BUILTIN", "Validating", "make_oracle", "oracle_class"]

BUILTIN: dict[str, str] = {
    "embedded": "vnnbridge.oracles.embedded:EmbeddedOracle",
    "marabou": "vnnbridge.oracles.marabou:MarabouOracle",
    "vnncomp": "vnnbridge.oracles.script:ScriptOracle",
    "abcrown": "vnnbridge.oracles.abcrown:AbcrownOracle",
    "neuralsat": "vnnbridge.oracles.neuralsat:NeuralsatOracle",
    "nnenum": "vnnbridge.oracles.nnenum:NnenumOracle",
    "fake": "vnnbridge.oracles.fake:FakeOracle",
}


def oracle_class(kind: str) -> type:
    """The class registered for ``kind`` (built in first, then entry points)."""
    target = BUILTIN.get(kind)
    if target is None:
        eps = entry_points(group="vnnbridge.oracles", name=kind)
        target = next((ep.value for ep in eps), None)
    if target is None:
        raise OracleUnavailable(f"no oracle {kind!r}; built in: {', '.join(sorted(BUILTIN))}")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass
class Validating:
    """Wraps an oracle so that its SAT witnesses are confirmed (or the verdict becomes ERROR)."""

    inner: Any

    @property
    def name(self) -> str:
        """The wrapped oracle's name."""
        return str(self.inner.name)

    def version(self) -> str:
        """The wrapped oracle's version."""
        return str(self.inner.version())

    def check(self, query: Query, timeout: float) -> OracleResult:
        """Ask the inner oracle, then validate its witness."""
        return validated(self.inner.check(query, timeout), query)


def make_oracle(spec: str, **options: Any) -> Oracle:
    """Build the oracle named by ``spec`` (``NAME`` or ``NAME:ARG``), witness-validating."""
    kind, _, arg = spec.partition(":")
    cls = oracle_class(kind)
    inner = cls(arg, **options) if arg else cls(**options)
    return Validating(inner)
