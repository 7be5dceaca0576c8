"""The real competition verifiers, each from its own environment (skipped unless named).

Set the variables to run them (recipe: ../shared/PEERS.md; each tool in its own venv):

- ``VNNBRIDGE_NNENUM=/peers/nnenum?python=/peers/nnv/bin/python`` (marker ``nnenum``)
- ``VNNBRIDGE_ABCROWN=/peers/abcrown?python=/peers/abc/bin/python`` (marker ``abcrown``)
- ``VNNBRIDGE_NEURALSAT=/peers/ns/bin/python`` (marker ``neuralsat``)

A ``vnnbridge-tool.toml`` beside the folder may name the python instead of ``?python=``.
Run one tool with ``pytest -m nnenum tests/oracles/test_real_tools.py``.
"""

from __future__ import annotations

import os

import pytest

from vnnbridge.network import load_network
from vnnbridge.oracles.base import Query, Verdict
from vnnbridge.oracles.readiness import check_oracle
from vnnbridge.oracles.registry import make_oracle
from vnnbridge.oracles.witness import RECOVERED

TOOLS = {"nnenum": "VNNBRIDGE_NNENUM", "abcrown": "VNNBRIDGE_ABCROWN", "neuralsat": "VNNBRIDGE_NEURALSAT"}
# Seconds per query: start-up (abcrown ~8 s, NeuralSAT ~6 s, more on a loaded machine) plus solving.
TIMEOUT = 120.0


def _spec(tool: str) -> str:
    value = os.environ.get(TOOLS[tool], "").strip()
    if not value:
        pytest.skip(f"set {TOOLS[tool]} to run the real {tool} (see this module's docstring)")
    return f"{tool}:{value}"


@pytest.fixture(params=[pytest.param(t, marks=getattr(pytest.mark, t)) for t in TOOLS])
def tool(request: pytest.FixtureRequest) -> str:
    return _spec(request.param)


def test_the_tool_is_ready(tool: str) -> None:
    check = check_oracle(tool, TIMEOUT)
    assert check.ready, f"{check.reason}\n" + "\n".join(check.tail)


def test_a_robust_box_is_unsat(tool: str, cube_query) -> None:
    query: Query = cube_query("mnist", "0-1", 0.01)
    result = make_oracle(tool).check(query, TIMEOUT)
    assert result.verdict is Verdict.UNSAT, result.reason


def test_a_sat_comes_with_a_validated_witness(tool: str, cube_query) -> None:
    query: Query = cube_query("mnist", "1-1", 0.1)
    result = make_oracle(tool).check(query, TIMEOUT)
    assert result.verdict is Verdict.SAT, result.reason
    assert query.spec.violated_by(result.witness, load_network(query.onnx).run(result.witness))
    if tool.startswith("nnenum"):  # nnenum writes no counterexample: vnnbridge found it
        assert result.reason.startswith(RECOVERED)
