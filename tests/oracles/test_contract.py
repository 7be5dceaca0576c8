"""The contract every oracle keeps, one suite parametrised over all of them (STYLE habit 10).

Complete oracles must decide the two reference queries; incomplete ones may say
timeout/unknown, but no oracle may ever certify a non-robust box or refute a robust one,
and every ``sat`` that reaches the caller carries a witness onnxruntime confirms.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from vnnbridge.box import Box
from vnnbridge.network import load_network
from vnnbridge.oracles.base import Oracle, OracleResult, Query, Verdict
from vnnbridge.oracles.registry import is_available, make_oracle
from vnnbridge.vnnlib.model import membership_spec

TOOLS = Path(__file__).resolve().parents[1] / "data" / "fake_tools"
TIMEOUT = 60.0
COMPLETE = {"embedded", "marabou"}
UNDECIDED = {Verdict.TIMEOUT, Verdict.UNKNOWN}


@pytest.fixture(params=["fake", "embedded", "marabou", "neuralsat", "abcrown"])
def oracle(request: pytest.FixtureRequest) -> Oracle:
    if not is_available(request.param):
        pytest.skip(f"{request.param} is not installed")
    return make_oracle(request.param)


def _kept(result: OracleResult, oracle: Oracle, query: Query) -> None:
    """What holds for every answer: provenance, timing, and a confirmed witness exactly for sat."""
    assert isinstance(result.verdict, Verdict)
    assert result.oracle == oracle.name and result.version == oracle.version()
    assert result.seconds >= 0.0
    if result.verdict is Verdict.SAT:
        x = result.witness
        assert x is not None and x.size == query.spec.inputs
        assert query.spec.violated_by(x, load_network(query.onnx).run(x))
    else:
        assert result.witness is None
    if result.verdict in (Verdict.ERROR, Verdict.UNKNOWN):
        assert result.reason


def test_robust_box_is_never_refuted(oracle: Oracle, cube_query) -> None:
    query = cube_query("mnist", "0-1", 0.01)
    start = time.monotonic()
    result = oracle.check(query, TIMEOUT)
    assert time.monotonic() - start < TIMEOUT + 30
    _kept(result, oracle, query)
    allowed = {Verdict.UNSAT} if oracle.name in COMPLETE else {Verdict.UNSAT} | UNDECIDED
    assert result.verdict in allowed, result.reason


@pytest.mark.parametrize(("dataset", "image", "radius"), [("mnist", "1-1", 0.3), ("fmnist", "7_3", 0.15)])
def test_non_robust_box_is_never_certified(oracle: Oracle, cube_query, dataset: str, image: str,
                                           radius: float) -> None:
    query = cube_query(dataset, image, radius)
    result = oracle.check(query, TIMEOUT)
    _kept(result, oracle, query)
    allowed = {Verdict.SAT} if oracle.name in COMPLETE else {Verdict.SAT} | UNDECIDED
    assert result.verdict in allowed, result.reason


def test_point_membership_is_sat_at_the_point(oracle: Oracle, shared: Path, tmp_path: Path) -> None:
    # A degenerate box around an image: the witness can only be the image itself, and the
    # multi-row polytope (label's logit >= every other) must be met exactly.
    onnx = shared / "data" / "paper" / "networks" / "fmnist_784_32_10.onnx"
    x = np.loadtxt(shared / "data" / "paper" / "fmnist" / "images" / "2_1.csv").ravel()
    net = load_network(onnx)
    query = Query.build(onnx, membership_spec(Box.point(x), net.predict(x), net.outputs), tmp_path)
    result = oracle.check(query, TIMEOUT)
    _kept(result, oracle, query)
    allowed = {Verdict.SAT} if oracle.name in COMPLETE else {Verdict.SAT} | UNDECIDED
    assert result.verdict in allowed, result.reason


def test_tool_folder_keeps_the_contract(cube_query, tmp_path: Path) -> None:
    # The same contract through vnncomp:DIR, with an answer file holding a real verdict.
    query = cube_query("mnist", "0-1", 0.01)
    answer = tmp_path / "answer.txt"
    answer.write_text("unsat\n")
    oracle = make_oracle(f"vnncomp:{TOOLS / 'answer'}", env={"FAKE_ANSWER": str(answer)}, slack=1.0)
    result = oracle.check(query, 5)
    _kept(result, oracle, query)
    assert result.verdict is Verdict.UNSAT
