"""The one run loop of the external tools, and where a tool's own environment is described.

Every external adapter (``vnncomp:DIR``, ``abcrown:DIR``, ``nnenum:DIR``, ``neuralsat``,
``marabou``) answers the same way: a fresh call folder, a result file pre-filled with
``no_result_in_file`` (silence is not a verdict), one run through the shared process runner,
then the result read through one table of words. `ExternalOracle.check` is that loop; an
adapter only says which command to run (`ExternalOracle.invocation`) and, where its tool does
not answer in a result file, how to read its answer (`ExternalOracle.read`).

Verifiers live in their own virtual environments, so a tool is started with *its* Python, not
vnnbridge's. The settings of a tool come from three places, later ones winning:

1. a ``vnnbridge-tool.toml`` inside the tool folder, or beside it (in its parent folder, where
   a ``[KIND]`` table holds the settings of that kind, so one file serves several tools)::

       [abcrown]
       python = "/opt/peers/abc/bin/python"   # the interpreter the tool runs with
       args = ["--conv_mode", "matrix"]       # appended to its command line
       threads = 1                            # BLAS/OpenMP threads
       slack = 5.0                            # seconds past the timeout before the kill
       env = { OMP_PROC_BIND = "false" }      # extra environment entries
       config = { solver = { batch_size = 64 } }   # abcrown only: merged into its config

2. the oracle name: ``abcrown:/opt/abcrown?python=/opt/peers/abc/bin/python&arg=--foo``
   (``python``, ``arg`` (repeatable), ``threads``, ``slack``, ``env`` as ``NAME=VALUE``);
3. keyword options given in code (``make_oracle(spec, python=...)``).
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import parse_qsl

from vnnbridge.errors import InputError, OracleUnavailable
from vnnbridge.oracles.base import OracleResult, Query, Verdict
from vnnbridge.oracles.process import DEFAULT_GRACE, CompletedRun, call_dir, run_command
from vnnbridge.oracles.resultfile import NO_RESULT, RESULT_WORDS, read_result

__all__ = ["TOOL_FILE", "CannotRun", "ExternalOracle", "Invocation", "result_from_file", "split_spec", "tool_options"]

# The settings file looked for in a tool folder and beside it.
TOOL_FILE = "vnnbridge-tool.toml"
_KEYS = {"python", "args", "threads", "slack", "env", "config"}


@dataclass(frozen=True)
class Invocation:
    """One tool command: argv, working folder (default: the call folder) and extra environment."""

    argv: Sequence[str]
    cwd: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)


class CannotRun(Exception):
    """Raised by `ExternalOracle.invocation` when the query cannot be handed to the tool (ERROR verdict)."""


def split_spec(arg: str) -> tuple[str, dict[str, Any]]:
    """``DIR?python=P&arg=A&arg=B`` -> (``DIR``, options); a bare ``DIR`` has no options."""
    where, sep, params = arg.partition("?")
    if not sep:
        return arg, {}
    options: dict[str, Any] = {}
    for key, value in parse_qsl(params, keep_blank_values=True, strict_parsing=False):
        if key == "python":
            options["python"] = value
        elif key == "arg":
            options.setdefault("args", []).append(value)
        elif key in ("threads", "slack"):
            try:
                options[key] = int(value) if key == "threads" else float(value)
            except ValueError:
                raise InputError(f"oracle option {key}={value!r} is not a number") from None
        elif key == "env":
            name, eq, val = value.partition("=")
            if not eq or not name:
                raise InputError(f"oracle option env={value!r} needs the form NAME=VALUE")
            options.setdefault("env", {})[name] = val
        else:
            raise InputError(f"unknown oracle option {key!r}; expected python, arg, threads, slack or env")
    return where, options


def _read_tool_file(path: Path, kind: str, scoped: bool) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"cannot read the tool settings: {exc.strerror}", path=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML: {exc}", path=str(path)) from None
    if scoped:  # a file beside several tools: only the [KIND] table
        table = data.get(kind, {})
    else:  # the tool's own file: top-level keys, or a [KIND] table
        table = data[kind] if isinstance(data.get(kind), dict) else data
    if not isinstance(table, dict):
        raise InputError(f"[{kind}] must be a table", path=str(path))
    unknown = set(table) - _KEYS
    if unknown:
        raise InputError(f"unknown key {sorted(unknown)[0]!r} in the tool settings; expected one of "
                         f"{', '.join(sorted(_KEYS))}", path=str(path))
    options = dict(table)
    if "args" in options and not (isinstance(options["args"], list)
                                  and all(isinstance(a, str) for a in options["args"])):
        raise InputError("'args' must be a list of strings", path=str(path))
    if "env" in options:
        if not isinstance(options["env"], dict):
            raise InputError("'env' must be a table of NAME = \"VALUE\"", path=str(path))
        options["env"] = {str(k): str(v) for k, v in options["env"].items()}
    if "python" in options:
        python = Path(str(options["python"])).expanduser()
        options["python"] = str(python if python.is_absolute() else (path.parent / python))
    options["settings_file"] = str(path)
    return options


def tool_options(kind: str, where: str) -> dict[str, Any]:
    """The settings of tool ``kind`` from ``vnnbridge-tool.toml`` in the folder ``where``, else beside it."""
    if not where:
        return {}
    folder = Path(where).expanduser()
    inside = folder / TOOL_FILE
    if folder.is_dir() and inside.is_file():
        return _read_tool_file(inside, kind, scoped=False)
    beside = folder.parent / TOOL_FILE
    if beside.is_file():
        return _read_tool_file(beside, kind, scoped=True)
    return {}


def result_from_file(run: CompletedRun, results: Path, *, oracle: str, version: str,
                     words: Mapping[str, Verdict] | None = None, tool: str = "the tool",
                     slack: float = 0.0) -> OracleResult:
    """The verdict of one tool run that answers in a VNN-COMP result file (shared by the adapters).

    A run killed at its deadline is TIMEOUT; a run stopped by its caller (a portfolio) is
    UNKNOWN; a non-zero exit, an unreadable file or a word outside ``words`` (default: the
    competition's) is ERROR with the reason and the last lines of the tool's log; a sat carries
    the file's X values as its (still unvalidated) witness.
    """
    base: dict = dict(oracle=oracle, version=version, seconds=run.seconds, log=run.log)
    if run.cancelled:
        return OracleResult(Verdict.UNKNOWN, reason=f"stopped after {run.seconds:.1f} s "
                            "(another oracle answered first)", **base)
    if run.timed_out:
        return OracleResult(Verdict.TIMEOUT, reason=f"killed {run.seconds:.1f} s after start "
                            f"({slack:g} s past its timeout); log: {run.tail(200)}", **base)
    if run.returncode != 0:
        return OracleResult(Verdict.ERROR, reason=f"{tool} exited with code {run.returncode}: {run.tail()}",
                            **base)
    try:
        parsed = read_result(results, words or RESULT_WORDS)
    except Exception as exc:  # OracleProtocolError and friends: the tool's fault, an ERROR verdict
        message = getattr(exc, "message", str(exc))
        return OracleResult(Verdict.ERROR, reason=f"{message}; log: {run.tail(200)}", **base)
    reason = "" if parsed.verdict in (Verdict.SAT, Verdict.UNSAT) else run.tail(200)
    return OracleResult(parsed.verdict, witness=parsed.x, reason=reason, **base)


class ExternalOracle:
    """The shared run loop of the adapters that start a tool process per query.

    Subclasses set ``kind`` (the folder prefix of its call folders), ``tool`` (its name in
    messages), ``words`` (its result words) and ``default_slack``, and implement `invocation`.
    """

    name = "tool"
    kind = "tool"
    tool = "the tool"
    words: Mapping[str, Verdict] = RESULT_WORDS
    default_slack = 5.0

    def __init__(self, *, python: str | os.PathLike[str] | None = None, args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None, slack: float | None = None,
                 grace: float = DEFAULT_GRACE, threads: int = 1, memory: int | None = None,
                 config: Mapping[str, Any] | None = None, settings_file: str | None = None) -> None:
        if threads < 1:
            raise InputError(f"{self.kind}: threads must be >= 1, got {threads}")
        self.python = str(Path(python).expanduser()) if python else None
        if self.python is not None and not os.access(self.python, os.X_OK):
            raise OracleUnavailable(f"{self.kind}: the tool's Python {self.python} is not an executable file"
                                    + (f" (from {settings_file})" if settings_file else ""))
        self.args, self.env = tuple(args), dict(env or {})
        self.slack = self.default_slack if slack is None else float(slack)
        if not (self.slack >= 0 and math.isfinite(self.slack)):
            raise InputError(f"{self.kind}: slack must be a finite number >= 0")
        self.grace, self.threads, self.memory = grace, threads, memory
        self.config = dict(config or {})
        self.settings_file = settings_file

    @property
    def interpreter(self) -> str:
        """The Python the tool runs with: its own when named, else vnnbridge's."""
        import sys

        return self.python or sys.executable

    def version(self) -> str:
        """The tool's version string (empty when unknown)."""
        return ""

    def invocation(self, query: Query, timeout: float, folder: Path, results: Path) -> Invocation:
        """The command that decides ``query`` within ``timeout`` and writes ``results``."""
        raise NotImplementedError

    def read(self, run: CompletedRun, results: Path, query: Query) -> OracleResult:
        """The verdict of a finished run (default: the VNN-COMP result file through `words`)."""
        return result_from_file(run, results, oracle=self.name, version=self.version(), words=self.words,
                                tool=self.tool, slack=self.slack)

    def check(self, query: Query, timeout: float) -> OracleResult:
        """Call folder, pre-filled result file, one run, the result read; tool failures are ERROR."""
        name = self.name
        folder = call_dir(self.kind, query.sha256)
        results = folder / "results.txt"
        results.write_text(NO_RESULT + "\n")
        try:
            how = self.invocation(query, timeout, folder, results)
        except CannotRun as exc:
            return OracleResult(Verdict.ERROR, name, self.version(), reason=str(exc))
        argv = [*how.argv, *self.args]
        try:
            run = run_command(argv, timeout=timeout, log=folder / f"{self.kind}.log", cwd=how.cwd or folder,
                              env={**how.env, **self.env}, slack=self.slack, grace=self.grace,
                              threads=self.threads, memory=self.memory)
        except OSError as exc:
            return OracleResult(Verdict.ERROR, name, self.version(),
                                reason=f"cannot start {argv[0]}: {exc.strerror or exc}")
        return self.read(run, results, query)
