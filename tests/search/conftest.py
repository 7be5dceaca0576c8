"""Fixtures for the search tests: a linear classifier with an exact LP oracle, and scripted fakes.

For a linear network y = W x + c every query is a linear program, so `LinearOracle` is a real,
complete verifier (HiGHS through scipy) for it; the ground truth of every search is then known.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from vnnbridge.oracles.base import OracleResult, Query, Verdict
from vnnbridge.oracles.registry import Validating


def write_linear_onnx(path: Path, w: np.ndarray, c: np.ndarray) -> Path:
    """An ONNX model computing ``w @ x + c`` for an input of shape [1, n]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n_out, n_in = w.shape
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "c"], ["y"], transB=1)],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n_out])],
        [numpy_helper.from_array(w.astype(np.float32), "W"), numpy_helper.from_array(c.astype(np.float32), "c")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


class LinearOracle:
    """An exact oracle for one linear network: each case x polytope is an LP (maximise the slack)."""

    name = "linear-lp"

    def __init__(self, w: np.ndarray, c: np.ndarray) -> None:
        # float32 weights, as onnxruntime sees them
        self.w = w.astype(np.float32).astype(np.float64)
        self.c = c.astype(np.float32).astype(np.float64)
        self.calls = 0

    def version(self) -> str:
        return "1"

    def check(self, query: Query, timeout: float) -> OracleResult:
        from scipy.optimize import linprog

        self.calls += 1
        n = self.w.shape[1]
        for case in query.spec.cases:
            lo, hi = case.box.arrays()
            for poly in case.polytopes:
                a, b = poly.arrays(self.w.shape[0])
                # rows: a (W x + c) <= b - t, maximise t
                aw = a @ self.w
                a_ub = np.hstack([aw, np.ones((len(b), 1))])
                b_ub = b - a @ self.c
                cost = np.zeros(n + 1)
                cost[-1] = -1.0
                bounds = list(zip(lo, hi)) + [(None, 1e6)]
                sol = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
                if sol.status == 0 and -sol.fun > 1e-7:
                    return OracleResult(Verdict.SAT, self.name, "1", 0.0, np.clip(sol.x[:n], lo, hi))
                if sol.status == 0 and -sol.fun > -1e-7:
                    return OracleResult(Verdict.UNKNOWN, self.name, "1", 0.0, reason="degenerate")
        return OracleResult(Verdict.UNSAT, self.name, "1", 0.0)


class ScriptedOracle:
    """A fake for fault injection: answers with ``answer(query)`` (counts its calls)."""

    name = "scripted"

    def __init__(self, answer: Callable[[Query], OracleResult]) -> None:
        self.answer, self.calls = answer, 0

    def version(self) -> str:
        return "0"

    def check(self, query: Query, timeout: float) -> OracleResult:
        self.calls += 1
        return self.answer(query)


@pytest.fixture(scope="session")
def linear_net(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    """A 12-input, 4-class linear classifier, its weights, and an input on the 1/255 grid."""
    rng = np.random.default_rng(7)
    w = rng.normal(size=(4, 12))
    c = rng.normal(size=4) * 0.1
    x = np.round(rng.uniform(0, 1, size=12) * 255) / 255
    x[:3] = 0.0  # some coordinates on the domain boundary
    x[3] = 1.0
    path = write_linear_onnx(tmp_path_factory.mktemp("linear") / "linear.onnx", w, c)
    return path, w, c, x


@pytest.fixture()
def linear_oracle(linear_net: tuple[Path, np.ndarray, np.ndarray, np.ndarray]) -> Validating:
    """The exact LP oracle for ``linear_net``, witness-validating like every registry oracle."""
    _, w, c, _ = linear_net
    return Validating(LinearOracle(w, c))
