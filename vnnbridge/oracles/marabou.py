"""The ``marabou`` oracle: the ``Marabou`` command that maraboupy 2.0.0 installs.

Marabou reads the ONNX model and the query's VNN-LIB file itself. Measured facts about
2.0.0 that shape this adapter:

- stdout is ``Network: ...``, ``Property: ...``, a blank line, then one result word
  (``sat``, ``unsat``, ``Timeout``, ``Error``, ``UNKNOWN``); for ``sat`` an
  ``Input assignment:`` block of ``xI = V`` lines follows, printed with 6 decimals.
- ``--export-assignment`` writes ``assignment.txt`` into the working folder whatever
  ``--export-assignment-file`` says, holds the same 6 decimals, and makes an ``unsat`` run
  crash with exit code 1; so the witness is read from stdout instead.
- Its ONNX reader has no Div, Mul, AveragePool, Pad or Shape, and its Sub needs a same-shape
  constant, so the model it sees goes through `vnnbridge.network.marabou_model` first
  (rewrites cross-checked with onnxruntime; the witness is still validated on the query's
  own model).
- Its VNN-LIB reader takes ``(>= Y_j Y_i)`` and ``(- Y_a Y_b)`` but rejects sums of scaled
  terms such as ``(+ (* 1.0 Y_0) (* -1.0 Y_1))``; the shared writer uses the former.
- It can spend minutes loading a large CNN before its own ``--timeout`` starts to count; the
  runner's deadline (timeout + slack) kills it all the same.

Printed witnesses sit on the decision boundary (margin ~1e-6) and are rescued by the shared
repair in `vnnbridge.oracles.repair` when onnxruntime disagrees in the last digits. The
``api`` mode (``make_oracle("marabou", mode="api")``) runs maraboupy's Python API in a child
process instead (``python -m vnnbridge.oracles.marabou``), which hands back the witness in
full precision as JSON.
"""

from __future__ import annotations

import enum
import json
import logging
import math
import re
import shutil
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from vnnbridge.errors import OracleProtocolError, OracleUnavailable
from vnnbridge.oracles.base import OracleResult, Query, Verdict
from vnnbridge.oracles.external import CannotRun, ExternalOracle, Invocation
from vnnbridge.oracles.process import CompletedRun, call_dir, run_command

__all__ = ["MEMORY_LIMIT", "MODES", "VERDICTS", "MarabouMode", "MarabouOracle", "find_marabou", "parse_answer",
           "parse_output", "solve_with_api"]

log = logging.getLogger(__name__)

# Marabou's result words (the command's and maraboupy's exit codes) -> verdicts. Nothing else.
VERDICTS: dict[str, Verdict] = {
    "sat": Verdict.SAT,
    "unsat": Verdict.UNSAT,
    "Timeout": Verdict.TIMEOUT,
    "TIMEOUT": Verdict.TIMEOUT,
    "Error": Verdict.ERROR,
    "ERROR": Verdict.ERROR,
    "UNKNOWN": Verdict.UNKNOWN,
    "QUIT_REQUESTED": Verdict.UNKNOWN,
}



class MarabouMode(enum.Enum):
    """How Marabou is run: its command, or maraboupy's Python API in a child process."""

    COMMAND = "command"
    API = "api"


MODES = tuple(m.value for m in MarabouMode)

_ASSIGNMENT = re.compile(r"^\s*x(\d+)\s*=\s*(\S+)\s*$")
# Seconds the runner waits past Marabou's own --timeout (start-up and ONNX parsing).
_SLACK = 3.0
# Marabou's address space cap: it took 11 GB on a small CNN; past the cap it fails with an
# error verdict instead of pushing the machine into swap.
MEMORY_LIMIT = 8 * 1024**3


def find_marabou() -> Path | None:
    """The ``Marabou`` command beside this Python (a virtualenv's bin) or on PATH."""
    beside = Path(sys.executable).parent / "Marabou"
    if beside.is_file():
        return beside
    found = shutil.which("Marabou")
    return Path(found) if found else None


@lru_cache(maxsize=4)
def _version(command: str) -> str:
    log_file = call_dir("marabou-version", "0") / "log.txt"
    run = run_command([command, "--version"], timeout=30, log=log_file, slack=1.0)
    match = re.search(r"Marabou version (\S+)", run.output())
    return match.group(1) if match else ""


def parse_output(text: str, inputs: int) -> tuple[Verdict, np.ndarray | None]:
    """The verdict and (for sat) the printed input assignment from Marabou's stdout.

    Raises OracleProtocolError when no result word follows the ``Property:`` line, the word
    is not in `VERDICTS`, or a ``sat`` comes without ``inputs`` assignment lines.
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Property:")), None)
    if start is None:
        raise OracleProtocolError("Marabou printed no 'Property:' line")
    word = next((line.strip() for line in lines[start + 1:] if line.strip()), None)
    if word is None:
        raise OracleProtocolError("Marabou printed no result word")
    if word not in VERDICTS:
        raise OracleProtocolError(f"Marabou printed an unknown result word {word[:80]!r}")
    verdict = VERDICTS[word]
    if verdict is not Verdict.SAT:
        return verdict, None
    values: dict[int, float] = {}
    try:
        block = lines.index("Input assignment:", start)
    except ValueError:
        raise OracleProtocolError("Marabou said sat but printed no 'Input assignment:'") from None
    for line in lines[block + 1:]:
        match = _ASSIGNMENT.match(line)
        if not match:
            break
        values[int(match.group(1))] = float(match.group(2))
    if sorted(values) != list(range(inputs)):
        raise OracleProtocolError(f"Marabou's assignment has {len(values)} of {inputs} inputs")
    return verdict, np.array([values[i] for i in range(inputs)], dtype=np.float64)


def parse_answer(text: str, inputs: int) -> tuple[Verdict, np.ndarray | None]:
    """The verdict and witness from the JSON the ``api`` child writes (``{"exit": CODE, "x": [...]}``)."""
    try:
        answer = json.loads(text)
        code, x = answer["exit"], answer.get("x")
    except (ValueError, KeyError, TypeError):
        raise OracleProtocolError("the maraboupy child wrote no readable answer") from None
    if code not in VERDICTS:
        raise OracleProtocolError(f"maraboupy returned an unknown exit code {str(code)[:80]!r}")
    verdict = VERDICTS[code]
    if verdict is not Verdict.SAT:
        return verdict, None
    if not isinstance(x, list) or len(x) != inputs:
        raise OracleProtocolError(f"maraboupy's assignment has {len(x or [])} of {inputs} inputs")
    return verdict, np.array(x, dtype=np.float64)


def solve_with_api(onnx: str, vnnlib: str, timeout: int, answer: str) -> None:
    """Solve one query with maraboupy's Python API and write the JSON answer (run in a child process)."""
    from maraboupy import Marabou

    network = Marabou.read_onnx(onnx)
    options = Marabou.createOptions(timeoutInSeconds=timeout, verbosity=0, numWorkers=1)
    code, values, _ = network.solve(verbose=False, options=options, propertyFilename=vnnlib)
    x = [float(values[v]) for v in network.inputVars[0].ravel()] if code == "sat" else None
    with open(answer, "w", encoding="utf-8") as stream:
        json.dump({"exit": code, "x": x}, stream)  # json writes floats with repr: exact


class MarabouOracle(ExternalOracle):
    """Box queries answered by the ``Marabou`` command (maraboupy 2.0.0)."""

    name = "marabou"
    kind = "marabou"
    tool = "Marabou"
    default_slack = _SLACK

    def __init__(self, command: str | Path | None = None, *, extra_args: tuple[str, ...] = (),
                 memory: int | None = MEMORY_LIMIT, mode: str | MarabouMode = MarabouMode.COMMAND,
                 **options: Any) -> None:
        try:
            self.mode = MarabouMode(mode)
        except ValueError:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}") from None
        options.setdefault("args", tuple(extra_args))
        super().__init__(memory=memory, **options)
        found = Path(command) if command else find_marabou()
        if found is None or not found.is_file():
            raise OracleUnavailable("the Marabou command is not installed (pip install maraboupy==2.0.0)")
        self.command = found

    @property
    def extra_args(self) -> tuple[str, ...]:
        """Arguments appended to every command line."""
        return self.args

    def version(self) -> str:
        """Marabou's version, e.g. ``2.0.0``."""
        return _version(str(self.command))

    def argv(self, onnx: Path, vnnlib: Path, timeout: float) -> list[str]:
        """The command line for one query (without the extra arguments)."""
        seconds = max(1, math.ceil(timeout))  # Marabou takes whole seconds; 0 would mean none
        return [str(self.command), str(onnx), str(vnnlib), "--timeout", str(seconds),
                "--verbosity", "0", "--num-workers", "1"]

    def invocation(self, query: Query, timeout: float, folder: Path, results: Path) -> Invocation:
        """The command (or the maraboupy child) on the model rewritten for Marabou's ONNX reader."""
        from vnnbridge.network import marabou_model

        try:
            onnx = marabou_model(query.onnx)
        except Exception as exc:  # a model Marabou cannot read is this oracle's error verdict
            raise CannotRun(f"model preparation failed: {exc}") from None
        if self.mode is MarabouMode.API:
            python = self.python or sys.executable
            return Invocation([python, "-m", __name__, str(onnx), str(query.vnnlib),
                               str(max(1, math.ceil(timeout))), str(folder / "answer.json")])
        return Invocation(self.argv(onnx, query.vnnlib, timeout))

    def read(self, run: CompletedRun, results: Path, query: Query) -> OracleResult:
        """The verdict from Marabou's stdout (command) or the child's JSON answer (api)."""
        answer = results.parent / "answer.json" if self.mode is MarabouMode.API else None
        return self._result(run, query, answer)

    def _result(self, run: CompletedRun, query: Query, answer: Path | None = None) -> OracleResult:
        base: dict[str, Any] = dict(oracle=self.name, version=self.version(), seconds=run.seconds, log=run.log)
        if run.cancelled:
            return OracleResult(Verdict.UNKNOWN, reason=f"stopped after {run.seconds:.1f} s "
                                "(another oracle answered first)", **base)
        if run.timed_out:
            return OracleResult(Verdict.TIMEOUT, reason=f"killed {run.seconds:.1f} s after start", **base)
        if run.returncode != 0:
            tail = run.tail()
            if self.memory is not None and ("bad_alloc" in tail or "MemoryError" in tail):
                return OracleResult(Verdict.ERROR, reason=f"Marabou ran out of memory (capped at "
                                    f"{self.memory / 1024**3:g} GiB): {tail[-120:]}", **base)
            return OracleResult(Verdict.ERROR, reason=f"Marabou exited with code {run.returncode}: {tail}",
                                **base)
        try:
            if answer is None:
                verdict, witness = parse_output(run.output(), query.spec.inputs)
            else:
                text = answer.read_text(encoding="utf-8") if answer.is_file() else ""
                verdict, witness = parse_answer(text, query.spec.inputs)
        except OracleProtocolError as exc:
            return OracleResult(Verdict.ERROR, reason=f"{exc.message}: {run.tail()}", **base)
        reason = "" if verdict in (Verdict.SAT, Verdict.UNSAT) else run.tail(200)
        return OracleResult(verdict, witness=witness, reason=reason, **base)


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit("usage: python -m vnnbridge.oracles.marabou ONNX VNNLIB TIMEOUT ANSWER.json")
    solve_with_api(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
