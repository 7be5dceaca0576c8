"""The ``portfolio:A,B,...`` oracle: several oracles race on one query; the first real answer wins.

Every member gets the whole query and the whole timeout at once, each in its own thread. The
first validated ``sat`` (its witness re-run with onnxruntime by the member's `Validating`
wrapper) or the first ``unsat`` wins; the other members are stopped through the shared process
runner (`vnnbridge.oracles.process.cancelled_by`: their process groups are killed). The answer
names the member that gave it (``oracle`` is ``portfolio/MEMBER``). An ``unsat`` is taken as
the member's word: like any oracle's, it is cross-examined by the search that asked.

Members that run inside this process (``embedded``, ``fake``, plug-ins) cannot be killed, so
they run in a child process (``python -m vnnbridge query --json``) that the runner can end like
any tool. External tools run in this process's threads, each through its own runner call.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from typing import Any, cast

import numpy as np

from vnnbridge.errors import InputError, OracleProtocolError
from vnnbridge.oracles.base import Oracle, OracleResult, Query, Verdict
from vnnbridge.oracles.process import cancelled_by, call_dir, run_command

__all__ = ["ChildOracle", "PortfolioOracle", "split_members"]

# Seconds a child member may take past its timeout (Python and torch start-up).
_CHILD_SLACK = 10.0
# Seconds to wait for the losing members to end after they were told to stop.
_STOP_WAIT = 5.0


def split_members(text: str) -> list[str]:
    """``embedded,abcrown:/x?python=/p`` -> the member specs (a comma never sits inside one)."""
    members = [m.strip() for m in text.split(",") if m.strip()]
    if len(members) < 2:
        raise InputError(f"a portfolio needs two or more oracles, comma-separated; got {text!r}")
    if len(set(members)) != len(members):
        raise InputError(f"a portfolio names an oracle twice: {text!r}")
    if any(m.partition(":")[0] == "portfolio" for m in members):
        raise InputError("a portfolio cannot hold a portfolio")
    return members


class ChildOracle:
    """An in-process oracle run in a child process (``vnnbridge query --json``), so it can be stopped."""

    def __init__(self, spec: str, name: str) -> None:
        self.spec, self.name = spec, name

    def version(self) -> str:
        """The version vnnbridge reports for it (read from the child's answer)."""
        return ""

    def check(self, query: Query, timeout: float) -> OracleResult:
        """Run ``vnnbridge query`` on the query's files and read its JSON line."""
        folder = call_dir("portfolio-child", query.sha256)
        argv = [sys.executable, "-m", "vnnbridge", "query", "--onnx", str(query.onnx), "--vnnlib",
                str(query.vnnlib), "--oracle", self.spec, "--timeout", repr(float(timeout)), "--json"]
        run = run_command(argv, timeout=timeout, slack=_CHILD_SLACK, log=folder / "child.log")
        base: dict[str, Any] = dict(oracle=self.name, seconds=run.seconds, log=run.log)
        if run.cancelled:
            return OracleResult(Verdict.UNKNOWN, reason=f"stopped after {run.seconds:.1f} s "
                                "(another oracle answered first)", **base)
        if run.timed_out:
            return OracleResult(Verdict.TIMEOUT, reason=f"killed {run.seconds:.1f} s after start", **base)
        line = next((ln for ln in reversed(run.output().splitlines()) if ln.startswith("{")), "")
        try:
            answer = json.loads(line)
            verdict = Verdict(answer["verdict"])
        except (ValueError, KeyError, TypeError):
            return OracleResult(Verdict.ERROR, reason=f"the child wrote no answer (exit {run.returncode}): "
                                f"{run.tail()}", **base)
        witness = answer.get("witness")
        return OracleResult(verdict, version=str(answer.get("version", "")), reason=str(answer.get("reason", "")),
                            witness=None if witness is None else np.asarray(witness, dtype=np.float64),
                            **base)


def _member(spec: str, options: dict[str, Any]) -> Oracle:
    from vnnbridge.oracles.external import ExternalOracle
    from vnnbridge.oracles.registry import Validating, make_oracle

    oracle = make_oracle(spec, **options)
    inner = getattr(oracle, "inner", oracle)
    if isinstance(inner, ExternalOracle):
        return oracle
    return cast(Oracle, Validating(ChildOracle(spec, str(inner.name))))  # Validating's name is a property


class PortfolioOracle:
    """Members race on each query; the first validated sat or unsat wins, the rest are stopped."""

    def __init__(self, members: str, **options: Any) -> None:
        self.specs = split_members(members)
        self.members = [_member(spec, options) for spec in self.specs]
        self.name = "portfolio:" + ",".join(str(m.name) for m in self.members)

    def version(self) -> str:
        """The members' versions, ``name=version`` joined by commas."""
        return ",".join(f"{m.name}={m.version()}" for m in self.members)

    def check(self, query: Query, timeout: float) -> OracleResult:
        """Race the members; the winner's result, named ``portfolio/MEMBER``."""
        start = time.perf_counter()
        stop = threading.Event()
        answers: queue.Queue[tuple[int, OracleResult]] = queue.Queue()

        def _race(index: int, member: Oracle) -> None:
            with cancelled_by(stop):
                try:
                    result = member.check(query, timeout)
                except Exception as exc:  # a member's failure is its ERROR, never the portfolio's
                    message = getattr(exc, "message", str(exc))
                    result = OracleResult(Verdict.ERROR, str(member.name), reason=f"{type(exc).__name__}: "
                                          f"{message}")
            answers.put((index, result))

        threads = [threading.Thread(target=_race, args=(i, m), name=f"portfolio-{m.name}", daemon=True)
                   for i, m in enumerate(self.members)]
        for thread in threads:
            thread.start()
        results: dict[int, OracleResult] = {}
        winner: tuple[int, OracleResult] | None = None
        while len(results) < len(threads):
            index, result = answers.get()
            results[index] = result
            if result.verdict is Verdict.UNSAT or (result.verdict is Verdict.SAT and result.witness is not None):
                winner = (index, result)
                break
        stop.set()
        for thread in threads:
            thread.join(timeout=_STOP_WAIT)
        seconds = time.perf_counter() - start
        if winner is not None:
            index, result = winner
            member = self.members[index].name
            note = f"answered by {member}" + (f"; {result.reason}" if result.reason else "")
            return OracleResult(result.verdict, f"portfolio/{member}", result.version, seconds, result.witness,
                                note, result.log)
        return self._no_winner(results, seconds)

    def _no_winner(self, results: dict[int, OracleResult], seconds: float) -> OracleResult:
        verdicts = [r.verdict for r in results.values()]
        said = "; ".join(f"{self.members[i].name}: {r.verdict.value}" + (f" ({r.reason[:160]})" if r.reason else "")
                         for i, r in sorted(results.items()))
        for verdict in (Verdict.TIMEOUT, Verdict.UNKNOWN, Verdict.ERROR):
            if verdict in verdicts:
                return OracleResult(verdict, self.name, self.version(), seconds, reason=said)
        raise OracleProtocolError(f"the portfolio ended without results: {said}")  # pragma: no cover

