"""The oracle registry: explicit, lazy and open (entry-point group ``vnnbridge.oracles``).

An oracle is named by a string: ``embedded``, ``marabou``, or ``KIND:ARG`` such as
``vnncomp:/path/to/tool`` or ``abcrown:/path/to/alpha-beta-CROWN``; a folder kind named
bare (``abcrown``) takes its folder from ``$VNNBRIDGE_ABCROWN`` (likewise for the others). ``make_oracle`` returns it
wrapped so that every SAT witness is re-validated with onnxruntime before anyone sees it.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, cast

from vnnbridge.errors import OracleUnavailable, UnknownOracle, VnnbridgeError
from vnnbridge.oracles.base import Oracle, OracleResult, Query
from vnnbridge.oracles.witness import validated

__all__ = [
    "BUILTIN",
    "NEEDS_FOLDER",
    "OracleInfo",
    "Validating",
    "available",
    "describe_oracles",
    "is_available",
    "make_oracle",
    "oracle_class",
    "oracle_kinds",
]

log = logging.getLogger(__name__)

BUILTIN: dict[str, str] = {
    "embedded": "vnnbridge.oracles.embedded:EmbeddedOracle",
    "marabou": "vnnbridge.oracles.marabou:MarabouOracle",
    "vnncomp": "vnnbridge.oracles.script:ScriptOracle",
    "abcrown": "vnnbridge.oracles.abcrown:AbcrownOracle",
    "neuralsat": "vnnbridge.oracles.neuralsat:NeuralsatOracle",
    "nnenum": "vnnbridge.oracles.nnenum:NnenumOracle",
    "fake": "vnnbridge.oracles.fake:FakeOracle",
}

# Kinds that are named with a tool folder (``KIND:DIR``); without one they cannot run.
NEEDS_FOLDER = frozenset({"vnncomp", "abcrown", "nnenum"})


def oracle_class(kind: str) -> type:
    """The class registered for ``kind`` (built in first, then entry points)."""
    target = BUILTIN.get(kind)
    if target is None:
        eps = entry_points(group="vnnbridge.oracles", name=kind)
        target = next((ep.value for ep in eps), None)
    if target is None:
        raise UnknownOracle(f"no oracle {kind!r}; known: {', '.join(oracle_kinds())} (see `vnnbridge oracles`)")
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as exc:
        if exc.name != module:  # a missing dependency inside the adapter is a real bug: raise it
            raise
        raise OracleUnavailable(f"oracle {kind!r}: module {module} is not installed") from None


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
    if kind in NEEDS_FOLDER and not arg:
        # A folder kind named bare takes its folder from $VNNBRIDGE_<KIND> (e.g. VNNBRIDGE_ABCROWN).
        arg = os.environ.get(f"VNNBRIDGE_{kind.upper()}", "")
        if not arg:
            raise OracleUnavailable(f"oracle {kind!r} needs a folder: name it as {kind}:DIR "
                                    f"or set VNNBRIDGE_{kind.upper()}")
    cls = oracle_class(kind)
    inner = cls(arg, **options) if arg else cls(**options)
    return cast(Oracle, Validating(inner))  # Oracle's name is a plain attribute, Validating's a property


def oracle_kinds() -> list[str]:
    """Every oracle kind: the built-in ones, then those of the entry-point group ``vnnbridge.oracles``."""
    extra = sorted({ep.name for ep in entry_points(group="vnnbridge.oracles")} - set(BUILTIN))
    return [*BUILTIN, *extra]


def is_available(spec: str, **options: Any) -> bool:
    """Whether the oracle named by ``spec`` can run on this machine (it builds without error)."""
    try:
        make_oracle(spec, **options)
    except VnnbridgeError as exc:
        log.debug("oracle %s is not available: %s", spec, exc)
        return False
    return True


available = is_available


@dataclass(frozen=True)
class OracleInfo:
    """One line of ``vnnbridge oracles``: a kind, where it comes from, whether it runs here."""

    kind: str
    target: str
    usable: bool
    version: str
    note: str

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {"kind": self.kind, "target": self.target, "usable": self.usable,
                "version": self.version, "note": self.note}


def describe_oracles(folders: dict[str, str] | None = None) -> list[OracleInfo]:
    """Every known oracle with its availability and version; ``folders`` gives DIRs for folder kinds."""
    folders = folders or {}
    infos = []
    for kind in oracle_kinds():
        target = BUILTIN.get(kind) or next(
            (ep.value for ep in entry_points(group="vnnbridge.oracles", name=kind)), "")
        if kind in NEEDS_FOLDER and kind not in folders and not os.environ.get(f"VNNBRIDGE_{kind.upper()}"):
            infos.append(OracleInfo(kind, target, False, "", f"name it as {kind}:DIR"))
            continue
        spec = f"{kind}:{folders[kind]}" if kind in folders else kind
        try:
            oracle = make_oracle(spec)
            version = oracle.version()
        except VnnbridgeError as exc:
            infos.append(OracleInfo(kind, target, False, "", exc.message))
            continue
        except (ImportError, OSError) as exc:  # a third-party plug-in that is broken here
            infos.append(OracleInfo(kind, target, False, "", f"{type(exc).__name__}: {exc}"))
            continue
        infos.append(OracleInfo(kind, target, True, version, ""))
    return infos
