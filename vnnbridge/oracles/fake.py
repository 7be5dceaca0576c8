"""Fake oracles for tests and fault injection: scripted verdicts or answers from a function.

``make_oracle("fake")`` is an honest but incomplete oracle: it samples the box (centre,
corners of the first coordinates, random points) and answers ``sat`` with a real witness
when one violates the property, else ``unknown``. ``make_oracle("fake:unsat")`` is a liar
that certifies everything; ``fake:timeout``, ``fake:unknown``, ``fake:error`` always say
that; ``fake:sat`` claims ``sat`` with the box centre as witness (bogus unless it really
violates); a comma list (``fake:sat,unsat,timeout``) is answered in turn, cycling.
Tool folders that fake whole verifiers for `vnnbridge.oracles.script` live in
``tests/data/fake_tools/``.
"""

from __future__ import annotations

import itertools
import time
from typing import Callable, Iterable

import numpy as np

from vnnbridge.oracles.base import OracleResult, Query, Verdict

__all__ = ["FakeOracle", "sample_witness"]

Answer = Callable[[Query, float], "OracleResult | Verdict"]

_SCRIPT_WORDS = {v.value: v for v in Verdict}


def sample_witness(query: Query, samples: int = 64, seed: int = 0) -> np.ndarray | None:
    """A point of some query box whose onnxruntime output violates the property, found by sampling."""
    from vnnbridge.network import load_network

    net = load_network(query.onnx)
    rng = np.random.default_rng(seed)
    for case in query.spec.cases:
        lo, hi = case.box.arrays()
        points = [case.box.center(), lo, hi]
        points += [lo + rng.random(lo.size) * (hi - lo) for _ in range(samples)]
        points += [np.where(rng.random(lo.size) < 0.5, lo, hi) for _ in range(samples)]
        for x in points:
            if query.spec.violated_by(x, net.run(x)):
                return x
    return None


class FakeOracle:
    """An oracle whose answers are scripted (a verdict sequence) or computed (a function)."""

    name = "fake"

    def __init__(self, script: str | Iterable[str | Verdict] | None = None, *,
                 answer: Answer | None = None, delay: float = 0.0, name: str = "fake",
                 version: str = "0") -> None:
        if script is not None and answer is not None:
            raise ValueError("give a verdict script or an answer function, not both")
        words = script.split(",") if isinstance(script, str) else list(script or [])
        verdicts = []
        for word in words:
            verdict = word if isinstance(word, Verdict) else _SCRIPT_WORDS.get(str(word).strip().lower())
            if verdict is None:
                raise ValueError(f"unknown verdict {word!r} in fake script; use {', '.join(_SCRIPT_WORDS)}")
            verdicts.append(verdict)
        self._script = itertools.cycle(verdicts) if verdicts else None
        self._answer = answer
        self.name, self._version, self.delay = name, version, delay
        self.calls: list[Query] = []

    def version(self) -> str:
        """The version given when built."""
        return self._version

    def check(self, query: Query, timeout: float) -> OracleResult:
        """Answer from the script, the function, or by honest sampling."""
        start = time.perf_counter()
        self.calls.append(query)
        if self.delay:
            time.sleep(min(self.delay, timeout))
        if self._answer is not None:
            got = self._answer(query, timeout)
            if isinstance(got, OracleResult):
                return got
            return self._result(got, query, start)
        if self._script is not None:
            return self._result(next(self._script), query, start)
        witness = sample_witness(query)
        verdict = Verdict.SAT if witness is not None else Verdict.UNKNOWN
        return OracleResult(verdict, self.name, self._version, time.perf_counter() - start,
                            witness=witness, reason="" if witness is not None else "no violation sampled")

    def _result(self, verdict: Verdict, query: Query, start: float) -> OracleResult:
        witness = query.spec.cases[0].box.center() if verdict is Verdict.SAT else None
        reason = {Verdict.ERROR: "scripted error", Verdict.UNKNOWN: "scripted unknown",
                  Verdict.TIMEOUT: "scripted timeout"}.get(verdict, "")
        return OracleResult(verdict, self.name, self._version, time.perf_counter() - start,
                            witness=witness, reason=reason)
