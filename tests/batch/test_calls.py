"""The call cache: definitive answers asked once, safe for concurrent writers, witnesses re-checked."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np

from vnnbridge.batch.calls import CachedOracle
from vnnbridge.box import Box
from vnnbridge.cache import CallCache
from vnnbridge.inputs import load_input
from vnnbridge.oracles.base import OracleResult, Query, Verdict
from vnnbridge.oracles.fake import FakeOracle
from vnnbridge.oracles.registry import Validating, make_oracle
from vnnbridge.vnnlib.model import robustness_spec

from .conftest import NET, SLICE


class Counting:
    """Counts the calls that reach the real oracle."""

    def __init__(self, inner: object) -> None:
        self.inner, self.name, self.calls = inner, "embedded", 0

    def version(self) -> str:
        return self.inner.version()  # type: ignore[attr-defined]

    def check(self, query: Query, timeout: float) -> OracleResult:
        self.calls += 1
        return self.inner.check(query, timeout)  # type: ignore[attr-defined]


def _query(radius: float, tmp_path: Path) -> Query:
    x = load_input(SLICE, 0).x  # MNIST test image 0, a 7
    box = Box.cube(x, radius, Box.from_arrays(np.zeros(x.size), np.ones(x.size)))
    return Query.build(NET, robustness_spec(box, 7, 10), tmp_path)


def test_definitive_answers_are_asked_once_and_timeouts_again(tmp_path: Path) -> None:
    inner = Counting(make_oracle("embedded"))
    cached = CachedOracle(inner, CallCache(tmp_path / "calls"), "embedded", tmp_path / "calls.log")
    unsat, sat = _query(1 / 255, tmp_path), _query(0.3, tmp_path)
    first = [cached.check(q, 30.0) for q in (unsat, sat)]
    assert [r.verdict for r in first] == [Verdict.UNSAT, Verdict.SAT] and inner.calls == 2
    # A second oracle object on the same folder (another process, a resumed run) asks nothing.
    again = CachedOracle(inner, CallCache(tmp_path / "calls"), "embedded")
    second = [again.check(q, 30.0) for q in (unsat, sat)]
    assert [r.verdict for r in second] == [Verdict.UNSAT, Verdict.SAT] and inner.calls == 2 and again.hits == 2
    assert np.array_equal(second[1].witness, first[1].witness)
    assert "call cache" in second[0].reason
    # Another timeout is another question; so is another oracle.
    again.check(unsat, 31.0)
    CachedOracle(inner, CallCache(tmp_path / "calls"), "embedded:other").check(unsat, 30.0)
    assert inner.calls == 4
    # Non-answers are never kept.
    shy = CachedOracle(Validating(FakeOracle("timeout")), CallCache(tmp_path / "calls"), "fake:timeout")
    shy.check(unsat, 30.0)
    shy.check(unsat, 30.0)
    assert shy.asked == 2 and shy.hits == 0
    lines = (tmp_path / "calls.log").read_text().split()
    assert lines[1::2] == ["unsat", "sat"]


def test_a_tampered_sat_record_is_not_served(tmp_path: Path) -> None:
    inner = Counting(make_oracle("embedded"))
    cache = CallCache(tmp_path / "calls")
    cached = CachedOracle(inner, cache, "embedded")
    sat = _query(0.3, tmp_path)
    assert cached.check(sat, 30.0).verdict is Verdict.SAT
    path = cache.path(cached.key(sat, 30.0))
    record = json.loads(path.read_text())
    record["witness_hex"] = [float(v).hex() for v in load_input(SLICE, 0).x]  # x itself: classified correctly
    path.write_text(json.dumps(record))
    assert cached.check(sat, 30.0).verdict is Verdict.SAT and inner.calls == 2  # asked the oracle again
    path.write_text("{ torn")
    assert cached.check(sat, 30.0).verdict is Verdict.SAT and inner.calls == 3


def _writer(folder: str, worker: int) -> None:
    cache = CallCache(folder)
    for k in range(200):
        # Every worker writes the shared keys; each also writes its own.
        cache.put(cache.key({"k": k % 20}), {"verdict": "unsat", "payload": "x" * 2000, "k": k % 20})
        cache.put(cache.key({"k": k, "w": worker}), {"verdict": "unsat", "w": worker})
        got = cache.get(cache.key({"k": (k * 7) % 20}))
        assert got is None or got["payload"] == "x" * 2000


def test_concurrent_writers(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    cache = CallCache(tmp_path)
    assert all(cache.get(cache.key({"k": k}))["k"] == k for k in range(20))  # type: ignore[index]
    assert all(cache.get(cache.key({"k": k, "w": w})) for k in range(200) for w in range(4))
    assert not list(tmp_path.rglob("*.tmp"))  # no temp file left behind
