"""The oracle registry: explicit, lazy and open (entry-point group ``vnnbridge.oracles``).

An oracle is named by a string: ``embedded``, ``marabou``, or ``KIND:ARG`` such as
``vnncomp:/path/to/tool`` or ``abcrown:/path/to/alpha-beta-CROWN``; a folder kind named
bare (``abcrown``) takes its folder from ``$VNNBRIDGE_ABCROWN`` (likewise for the others).
External tools take their settings (their own Python above all) from ``?python=...`` after the
folder and from a ``vnnbridge-tool.toml`` (`vnnbridge.oracles.external`).
``portfolio:A,B,...`` races several oracles on each query (`vnnbridge.oracles.portfolio`).
``make_oracle`` returns the oracle wrapped so that every SAT witness is re-validated with
onnxruntime before anyone sees it, and a sat without a usable witness is searched for
(`vnnbridge.oracles.witness.validated`).
"""

from __future__ import annotations

import importlib
import logging
import os
import time
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
    "portfolio": "vnnbridge.oracles.portfolio:PortfolioOracle",
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
    """Wraps an oracle so that its SAT witnesses are confirmed (or searched for, or the verdict is dropped).

    ``recover`` allows the witness search when the tool's sat comes without a usable witness.
    """

    inner: Any
    recover: bool = True

    @property
    def name(self) -> str:
        """The wrapped oracle's name."""
        return str(self.inner.name)

    def version(self) -> str:
        """The wrapped oracle's version."""
        return str(self.inner.version())

    def check(self, query: Query, timeout: float) -> OracleResult:
        """Ask the inner oracle, then validate its witness (searching for one where it is missing)."""
        start = time.perf_counter()
        result = self.inner.check(query, timeout)
        # The search gets what is left of the budget, and at least a fifth of it: a tool that
        # says `violated` at its deadline still deserves a look.
        left = max(timeout - (time.perf_counter() - start), 0.2 * timeout) if self.recover else None
        return validated(result, query, recover_budget=left)


def _split_kind(spec: str) -> tuple[str, str]:
    """``KIND:ARG`` or ``KIND?OPTIONS`` (options without a folder) -> (kind, arg)."""
    kind, _, arg = spec.partition(":")
    if "?" in kind:
        kind, _, options = kind.partition("?")
        arg = f"?{options}{':' + arg if arg else ''}"
    return kind, arg


def make_oracle(spec: str, **options: Any) -> Oracle:
    """Build the oracle named by ``spec`` (``NAME``, ``NAME:ARG`` or ``NAME:DIR?python=...``), witness-validating."""
    from vnnbridge.oracles.external import ExternalOracle, split_spec, tool_options

    kind, arg = _split_kind(spec)
    cls = oracle_class(kind)
    if isinstance(cls, type) and issubclass(cls, ExternalOracle):
        arg, params = split_spec(arg)
        if kind in NEEDS_FOLDER and not arg:
            # A folder kind named bare takes its folder (and options) from $VNNBRIDGE_<KIND>.
            arg, env_params = split_spec(os.environ.get(f"VNNBRIDGE_{kind.upper()}", ""))
            if not arg:
                raise OracleUnavailable(f"oracle {kind!r} needs a folder: name it as {kind}:DIR "
                                        f"or set VNNBRIDGE_{kind.upper()}")
            params = {**env_params, **params}
        options = {**tool_options(kind, arg), **params, **options}
    if kind == "portfolio" and not arg:
        raise OracleUnavailable("a portfolio needs its members: portfolio:ORACLE,ORACLE,...")
    inner = cls(arg, **options) if arg else cls(**options)
    if kind == "portfolio":
        return cast(Oracle, inner)  # its members validate their own witnesses
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
        if kind == "portfolio" and kind not in folders:
            infos.append(OracleInfo(kind, target, False, "", "name it as portfolio:ORACLE,ORACLE,..."))
            continue
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
