"""The portfolio oracle: members race, the first validated sat or unsat wins, the others are stopped."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from vnnbridge.errors import InputError
from vnnbridge.network import load_network
from vnnbridge.oracles.base import Query, Verdict
from vnnbridge.oracles.process import active_logs
from vnnbridge.oracles.registry import make_oracle

HANG = Path(__file__).resolve().parents[1] / "data" / "fake_tools" / "hang"


def test_first_unsat_wins_and_the_hanging_member_is_stopped(cube_query) -> None:
    query: Query = cube_query("mnist", "0-1", 0.01)
    oracle = make_oracle(f"portfolio:vnncomp:{HANG},fake:unsat")
    start = time.perf_counter()
    result = oracle.check(query, 60)
    assert result.verdict is Verdict.UNSAT and result.oracle == "portfolio/fake"
    assert "answered by fake" in result.reason
    # The hanging tool (sleep 600) was killed, not waited for.
    assert time.perf_counter() - start < 40 and not active_logs()


def test_a_sat_wins_only_with_a_validated_witness(cube_query) -> None:
    query: Query = cube_query("mnist", "1-1", 0.3)  # not robust
    result = make_oracle(f"portfolio:vnncomp:{HANG},fake").check(query, 60)
    assert result.verdict is Verdict.SAT and result.oracle == "portfolio/fake"
    assert query.spec.violated_by(result.witness, load_network(query.onnx).run(result.witness))


def test_no_winner_reports_every_member(cube_query) -> None:
    query: Query = cube_query("mnist", "0-1", 0.01)
    result = make_oracle("portfolio:fake:timeout,fake:unknown").check(query, 10)
    assert result.verdict is Verdict.TIMEOUT
    assert "fake: timeout" in result.reason and "fake: unknown" in result.reason


@pytest.mark.parametrize(("spec", "message"), [("portfolio:embedded", "two or more"),
                                               ("portfolio:embedded,embedded", "twice")])
def test_bad_portfolios(spec: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        make_oracle(spec)
