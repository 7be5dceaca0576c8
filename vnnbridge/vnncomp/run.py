"""Answer one competition instance: always write a result file, and finish before TIMEOUT.

The harness runs ``run_instance.sh v1 CATEGORY ONNX VNNLIB RESULTS TIMEOUT`` from the benchmark
folder, kills the script at TIMEOUT + 60 s, and newer scoring turns any answer given after TIMEOUT
into `timeout`. So the answer is due at an internal deadline: TIMEOUT, measured from when the
script started (``--started``), minus a reserve for writing the file and leaving the interpreter.
A watchdog thread writes `timeout` and ends the process at that deadline if the oracle has not
come back by then; the oracle itself gets a budget that ends earlier still, so that its process
runner can kill its tool cleanly.

Every verdict goes through the witness validation of the oracle registry, and a `sat` is checked
once more the way the scorer checks it before it is written; one that fails is written as
`unknown` (a `sat` without a valid witness would cost -150 points).

Every oracle sees the model `query` would give it: a final Softmax stripped when the property
only compares outputs (`vnnbridge.network.prepare_model`); the witness's outputs in the result
file are still those of the instance's own model. Every oracle is held back by the same
`OVERRUN` from the deadline, external tools and the embedded oracle alike. When
``$VNNBRIDGE_ANSWER_JSON`` names a file, the answer's verdict, reason, oracle, seconds and the
tool's log are written there too (`compare` reads it for its reason column).
"""

from __future__ import annotations

import ast
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vnnbridge.errors import InputError, VnnbridgeError
from vnnbridge.oracles.base import Verdict
from vnnbridge.vnncomp.config import OracleChoice
from vnnbridge.vnnlib.model import Spec

__all__ = ["ANSWER_JSON", "OVERRUN", "RUN_MARK", "SCOPE_VARIABLE", "STARTUP_VARIABLE", "HarnessAnswer",
           "HarnessInstance", "answer_instance", "end_own_tools", "find_marked", "mark_own_tools", "network_paths", "oracle_budget",
           "reserve_seconds", "run_scope", "write_answer", "write_answer_json"]

log = logging.getLogger(__name__)

# Environment marker that `vnncomp-prepare` looks for to end processes left over from a run. Its
# value is ``SCOPE:PID``; prepare ends only its own scope's leftovers (``VNNBRIDGE_RUN_SCOPE``,
# default ``harness``), so that parallel comparisons or test runs never end each other's tools.
RUN_MARK = "VNNBRIDGE_VNNCOMP_RUN"
SCOPE_VARIABLE = "VNNBRIDGE_RUN_SCOPE"
# Where the answer is also written as JSON (for `compare`), when set.
ANSWER_JSON = "VNNBRIDGE_ANSWER_JSON"
# The oracle's start-up in seconds as `compare` measured it: the time limit includes it, so the
# oracle's own timeout (which tools count from after their start-up) leaves it out.
STARTUP_VARIABLE = "VNNBRIDGE_STARTUP"


def run_scope() -> str:
    """The scope of this process's runs (``$VNNBRIDGE_RUN_SCOPE``, default ``harness``)."""
    return os.environ.get(SCOPE_VARIABLE, "").strip() or "harness"


def find_marked(value: str, exact: bool = True, skip: set[int] | None = None) -> list[int]:
    """Ids of live processes (readable by this user) whose `RUN_MARK` is ``value`` (or starts with it)."""
    mark = f"{RUN_MARK}={value}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if skip and pid in skip:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # another user's process, or gone already
            continue
        if any(item == mark if exact else item.startswith(mark) for item in environ.split(b"\0")):
            found.append(pid)
    return sorted(found)


def mark_own_tools() -> None:
    """Mark this process so that every tool its oracle starts inherits the mark (``SCOPE:PID``)."""
    os.environ[RUN_MARK] = f"{run_scope()}:{os.getpid()}"


def end_own_tools() -> None:
    """SIGKILL the processes this run's oracle started (they carry this run's mark), by their id."""
    import signal

    for pid in find_marked(f"{run_scope()}:{os.getpid()}", skip={os.getpid()}):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
# Seconds every oracle is held back from the deadline, the same for all (equal footing): the
# witness check and the result file need it. A tool still running at the deadline is ended by
# the watchdog (its process carries this run's mark).
OVERRUN = 1.0


def oracle_budget(name: str, remaining: float, startup: float = 0.0) -> float:
    """Seconds to give oracle ``name`` within ``remaining``: the same `OVERRUN` held back for every oracle.

    ``startup`` (the oracle's measured start-up, part of ``remaining``) is left out of the timeout
    the oracle is told. When the two would eat more than half of what is left, the oracle gets half.
    """
    return max(remaining - OVERRUN - max(0.0, startup), remaining / 2)


def _startup() -> float:
    try:
        return max(0.0, float(os.environ.get(STARTUP_VARIABLE, "") or 0.0))
    except ValueError:
        return 0.0


def reserve_seconds(timeout: float) -> float:
    """Seconds kept back from TIMEOUT for writing the result and exiting (1.5 s .. 10 s, 5 %)."""
    return min(10.0, max(1.5, 0.05 * timeout))


@dataclass(frozen=True)
class HarnessInstance:
    """One harness call: category, model, property, result file and time limit (seconds)."""

    category: str
    onnx: str
    vnnlib: Path
    results: Path
    timeout: float

    def __post_init__(self) -> None:
        if not (self.timeout > 0):
            raise InputError(f"TIMEOUT must be a positive number of seconds, got {self.timeout!r}")


@dataclass(frozen=True)
class HarnessAnswer:
    """What was written: the verdict word, the witness (flat X and Y) for sat, and why."""

    verdict: Verdict
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    reason: str = ""
    oracle: str = ""
    seconds: float = 0.0
    log: str = ""  # the tool's own log of this call, when it has one

    @property
    def word(self) -> str:
        """The first line of the result file."""
        return self.verdict.value


def network_paths(onnx: str) -> list[tuple[str, str]]:
    """The networks named by the ONNX argument: a path, or a list of ``(name, path)`` pairs.

    Multi-network VNN-LIB 2.0 instances pass a list such as ``[('f', 'a.onnx'), ('g', 'b.onnx')]``;
    ``name=path`` entries separated by ``;`` or ``,`` are read too.
    """
    text = onnx.strip()
    if text.startswith(("[", "(")):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise InputError(f"cannot read the network list {text!r}") from None
        if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, str) for v in value):
            value = [value]
        pairs = []
        for item in value if isinstance(value, (list, tuple)) else []:
            if not (isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(v, str) for v in item)):
                raise InputError(f"the network list must hold (name, path) pairs, found {item!r}")
            pairs.append((item[0], item[1]))
        if not pairs:
            raise InputError(f"the network list {text!r} names no network")
        return pairs
    if "=" in text and not Path(text).exists():
        pairs = []
        for entry in filter(None, (e.strip() for e in text.replace(";", ",").split(","))):
            name, _, path = entry.partition("=")
            pairs.append((name.strip(), path.strip()))
        return pairs
    return [("N", text)]


class _ResultFile:
    """The result file, written once: by the main thread with the answer or by the watchdog."""

    def __init__(self, path: Path) -> None:
        self.path, self.lock, self.done = path, threading.Lock(), False

    def write(self, answer: HarnessAnswer) -> bool:
        with self.lock:
            if self.done:
                return False
            write_answer(self.path, answer)
            self.done = True
            return True


def write_answer(path: Path, answer: HarnessAnswer) -> None:
    """Write the result file: the verdict word, and for sat the witness ``((X_0 v) ... (Y_0 v))``."""
    from vnnbridge.vnncomp.results import write_result

    x = None if answer.x is None else np.asarray(answer.x, dtype=np.float64).ravel()
    y = None if answer.y is None else np.asarray(answer.y, dtype=np.float64).ravel()
    write_result(path, answer.verdict, x, y)


def _load_spec(path: Path) -> Spec:
    from vnnbridge.vnnlib.parser import parse_file  # lazily: it builds its LALR table on import

    if not path.is_file():
        raise InputError("no such VNN-LIB file", path=str(path))
    return parse_file(path)


def write_answer_json(answer: HarnessAnswer) -> None:
    """The answer as JSON into ``$VNNBRIDGE_ANSWER_JSON`` (nothing when unset)."""
    target = os.environ.get(ANSWER_JSON, "").strip()
    if not target:
        return
    import json

    from vnnbridge.cache import atomic_write

    try:
        atomic_write(target, json.dumps({"verdict": answer.word, "reason": answer.reason, "oracle": answer.oracle,
                                         "seconds": answer.seconds, "log": answer.log}))
    except OSError as exc:
        log.warning("cannot write %s: %s", target, exc.strerror or exc)


def _decide(instance: HarnessInstance, choice: OracleChoice, deadline: float) -> HarnessAnswer:
    from vnnbridge.derived import compares_outputs_only
    from vnnbridge.network import load_network, prepare_model
    from vnnbridge.oracles.base import Query
    from vnnbridge.oracles.registry import make_oracle
    from vnnbridge.vnncomp.scoring import check_counterexample

    networks = network_paths(instance.onnx)
    if len(networks) != 1:
        names = ", ".join(name for name, _ in networks)
        raise InputError(f"the instance names {len(networks)} networks ({names}); vnnbridge answers "
                         "single-network queries only")
    net = load_network(networks[0][1])
    spec = _load_spec(instance.vnnlib)
    if spec.inputs != net.inputs or spec.outputs != net.outputs:
        raise InputError(f"the property has {spec.inputs} inputs and {spec.outputs} outputs, the network "
                         f"{net.inputs} and {net.outputs}", path=str(instance.vnnlib))
    name = choice.oracle_for(instance.category)
    oracle = make_oracle(name)
    # The model `query` would hand the oracle (a final Softmax stripped when only comparisons matter).
    query = Query.build(prepare_model(net.path, strip_softmax=compares_outputs_only(spec)), spec)
    budget = oracle_budget(name, deadline - time.monotonic(), _startup())
    if budget <= 0.05:
        return HarnessAnswer(Verdict.TIMEOUT, reason="no time left after loading the instance", oracle=name)
    log.info("oracle %s, budget %.1f s, query %s", name, budget, query.vnnlib)
    result = oracle.check(query, budget)
    tool_log = str(result.log) if result.log else ""
    if result.verdict is not Verdict.SAT:
        return HarnessAnswer(result.verdict, reason=result.reason, oracle=result.oracle or name, seconds=result.seconds,
                      log=tool_log)
    # The validated witness lies in the box exactly; the outputs are onnxruntime's for it (which,
    # like the scorer, evaluates the float32 rounding of x).
    x = np.asarray(result.witness, dtype=np.float64).ravel()
    y = net.run(x)
    verdict = check_counterexample(net, spec, x, y)
    if not verdict.ok:
        log.warning("%s: witness fails the scorer's check (%s); answering unknown", name, verdict.reason)
        return HarnessAnswer(Verdict.UNKNOWN, reason=f"witness rejected: {verdict.reason}", oracle=name,
                      seconds=result.seconds, log=tool_log)
    return HarnessAnswer(Verdict.SAT, x=x, y=y, reason=result.reason, oracle=result.oracle or name,
                  seconds=result.seconds, log=tool_log)


def answer_instance(instance: HarnessInstance, choice: OracleChoice, started: float | None = None) -> HarnessAnswer:
    """Decide the instance and write its result file before the internal deadline; returns what was written.

    ``started`` is the wall-clock time (``time.time()``) at which the harness started the script;
    time already spent before Python came up counts against TIMEOUT. Bad input is written as
    `error` and logged as one located line; it does not raise.
    """
    mark_own_tools()
    spent = max(0.0, time.time() - started) if started is not None else 0.0
    deadline = time.monotonic() + instance.timeout - spent - reserve_seconds(instance.timeout)
    sink = _ResultFile(instance.results)
    begin = time.monotonic()

    def _expire() -> None:
        from vnnbridge.oracles.process import active_logs

        running = active_logs()
        # The oracle and the seconds it held the instance, as every other answer records them
        # (compare's outcomes read them; a 0.0 here looked like an instant timeout).
        answer = HarnessAnswer(Verdict.TIMEOUT, reason="internal deadline reached",
                               oracle=choice.oracle_for(instance.category), seconds=time.monotonic() - begin,
                               log=str(running[0]) if running else "")
        if sink.write(answer):
            write_answer_json(answer)
            log.warning("internal deadline reached after %.1f s; wrote timeout", time.monotonic() - begin)
            end_own_tools()
            logging.shutdown()
            os._exit(0)  # the oracle thread cannot be interrupted; the harness must get its answer now

    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        answer = _decide(instance, choice, deadline)
    except VnnbridgeError as exc:
        log.error("%s", exc.located())
        answer = HarnessAnswer(Verdict.ERROR, reason=exc.located())
    except Exception as exc:  # anything unforeseen still has to leave a verdict in the file
        log.error("unexpected failure: %s: %s", type(exc).__name__, exc)
        log.debug("traceback of the unexpected failure", exc_info=True)
        answer = HarnessAnswer(Verdict.ERROR, reason=f"{type(exc).__name__}: {exc}")
    finally:
        watchdog.cancel()
    if sink.write(answer):
        write_answer_json(answer)
    log.info("%s after %.2f s (%s)", answer.word, time.monotonic() - begin, answer.reason or answer.oracle)
    return answer
