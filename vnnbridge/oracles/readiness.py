"""Is a tool ready? Start it on a tiny bundled instance and look at what it says.

The instance is a 2-3-2 ReLU network, written by vnnbridge itself (no download) into the
cache, and a robustness box around (0.5, 0.5) on which class 0 wins by at least 1.4: every
sound verifier answers ``unsat`` in well under a second of solving, so the time a run takes
is the tool's start-up (interpreter, imports, model loading). `check_oracle` is what
``vnnbridge oracles --check NAME`` prints, and `compare` measures each tool's start-up with it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vnnbridge.cache import atomic_write, cache_dir
from vnnbridge.errors import VnnbridgeError
from vnnbridge.oracles.base import OracleResult, Query, Verdict

__all__ = ["CHECK_TIMEOUT", "Readiness", "check_oracle", "tiny_instance"]

# Seconds the tool gets on the tiny instance (start-up dominates: abcrown takes ~8 s).
CHECK_TIMEOUT = 60.0
# Lines of the tool's log shown when it is not ready.
_TAIL_LINES = 8


def _tiny_model() -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    # h = relu(x0, x1, x0 - x1 + 1); y0 = h0 + h1 + 1, y1 = h2 - 1 (= x0 - x1 on the box).
    w1 = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]], dtype=np.float32)
    b1 = np.array([0.0, 0.0, 1.0], dtype=np.float32)
    w2 = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    b2 = np.array([1.0, -1.0], dtype=np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["a"]), helper.make_node("Add", ["a", "b1"], ["z"]),
             helper.make_node("Relu", ["z"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["c"]),
             helper.make_node("Add", ["c", "b2"], ["y"])]
    inits = [numpy_helper.from_array(v, n) for n, v in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2))]
    graph = helper.make_graph(nodes, "vnnbridge_tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="vnnbridge")
    model.ir_version = 7  # old enough for every tool's onnxruntime
    return model.SerializeToString()


def tiny_instance() -> Query:
    """The tiny instance (ONNX and VNN-LIB in the cache's ``tiny`` folder); its answer is ``unsat``."""
    from vnnbridge.box import Box
    from vnnbridge.vnnlib.model import robustness_spec

    folder = cache_dir("tiny")
    onnx = folder / "tiny_2x3x2.onnx"
    data = _tiny_model()
    if not onnx.is_file() or onnx.read_bytes() != data:
        atomic_write(onnx, data)
    box = Box.from_arrays(np.array([0.4, 0.4]), np.array([0.6, 0.6]))
    return Query.build(onnx, robustness_spec(box, 0, 2), folder)


@dataclass(frozen=True)
class Readiness:
    """What the tool did on the tiny instance: ready (a correct answer), seconds, and its log's tail."""

    spec: str
    ready: bool
    seconds: float
    verdict: str
    reason: str
    log: Path | None
    tail: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {"oracle": self.spec, "ready": self.ready, "seconds": self.seconds, "verdict": self.verdict,
                "reason": self.reason, "log": str(self.log) if self.log else None, "tail": list(self.tail)}


def _tail(log: Path | None) -> tuple[str, ...]:
    if log is None:
        return ()
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ()
    return tuple(line for line in lines if line.strip())[-_TAIL_LINES:]


def check_oracle(spec: str, timeout: float = CHECK_TIMEOUT) -> Readiness:
    """Build oracle ``spec`` and run it on the tiny instance; ready when it answers ``unsat``."""
    from vnnbridge.oracles.registry import make_oracle

    start = time.perf_counter()
    try:
        oracle = make_oracle(spec)
        result: OracleResult = oracle.check(tiny_instance(), timeout)
    except VnnbridgeError as exc:
        return Readiness(spec, False, time.perf_counter() - start, "error", exc.message, None, ())
    seconds = time.perf_counter() - start
    ready = result.verdict is Verdict.UNSAT
    reason = result.reason if not ready else ""
    if result.verdict is Verdict.SAT:
        reason = "answered sat on an instance that is unsat: the tool is unsound here"
    return Readiness(spec, ready, seconds, result.verdict.value, reason, result.log, _tail(result.log))
