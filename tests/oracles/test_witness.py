"""Witness validation and repair, and the FakeOracle other tests script their oracles with."""

from __future__ import annotations

import numpy as np
import pytest

from vnnbridge.errors import BogusWitness
from vnnbridge.network import load_network
from vnnbridge.oracles.base import OracleResult, Query, Verdict
from vnnbridge.oracles.fake import FakeOracle, sample_witness
from vnnbridge.oracles.registry import make_oracle
from vnnbridge.oracles.repair import repair_witness
from vnnbridge.oracles.witness import CLIP_ATOL, confirm_witness, validated


def _boundary_point(query: Query) -> np.ndarray:
    """A point of the box on the safe side of the decision boundary, within 1e-9 of it."""
    net = load_network(query.onnx)
    bad = sample_witness(query)
    assert bad is not None
    good = query.spec.single_box.center()
    while query.spec.violated_by(good, net.run(good)):  # the centre may be unsafe already
        good = (good + query.spec.single_box.arrays()[0]) / 2
    for _ in range(80):
        mid = (good + bad) / 2
        if query.spec.violated_by(mid, net.run(mid)):
            bad = mid
        else:
            good = mid
    return good


def test_boundary_witness_is_repaired_inside_the_box(cube_query) -> None:
    query = cube_query("mnist", "1-1", 0.3)
    net = load_network(query.onnx)
    x = _boundary_point(query)
    assert not query.spec.violated_by(x, net.run(x))
    fixed = confirm_witness(query, x)
    assert query.spec.single_box.contains(fixed) and query.spec.violated_by(fixed, net.run(fixed))
    assert np.max(np.abs(fixed - x)) < 0.01  # a local repair, not a fresh search
    with pytest.raises(BogusWitness, match="does not violate"):
        confirm_witness(query, x, repair=False)


def test_six_decimals_are_clipped_then_checked(cube_query) -> None:
    query = cube_query("mnist", "1-1", 0.3)
    x = sample_witness(query)
    lo, _ = query.spec.single_box.arrays()
    x[0] = lo[0] - CLIP_ATOL / 2  # a rounded print just outside the box
    got = confirm_witness(query, x)
    assert query.spec.single_box.contains(got) and got[0] == lo[0]


@pytest.mark.parametrize(("change", "message"), [
    (lambda x: x + 0.5, "outside every queried box"),
    (lambda x: x[:-1], "has 783 values"),
    (lambda x: np.where(np.arange(x.size) == 3, np.nan, x), "non-finite"),
])
def test_bogus_witnesses(cube_query, change, message: str) -> None:
    query = cube_query("mnist", "1-1", 0.3)
    with pytest.raises(BogusWitness, match=message):
        confirm_witness(query, change(sample_witness(query)))


def test_robust_box_has_nothing_to_repair(cube_query) -> None:
    query = cube_query("mnist", "0-1", 0.01)
    case = query.spec.cases[0]
    assert repair_witness(query, case, case.box.center(), load_network(query.onnx)) is None


def test_validated_turns_bogus_sat_into_error(cube_query) -> None:
    query = cube_query("mnist", "0-1", 0.01)
    claim = OracleResult(Verdict.SAT, "liar", witness=query.spec.single_box.center())
    result = validated(claim, query)
    assert result.verdict is Verdict.ERROR and result.witness is None
    assert result.reason.startswith("bogus witness: ")
    assert validated(OracleResult(Verdict.SAT, "mute"), query).reason == "sat without a witness"


def test_fake_script_cycles_and_bogus_sat_is_caught(cube_query) -> None:
    query = cube_query("mnist", "0-1", 0.01)
    oracle = make_oracle("fake:unsat,timeout,sat")
    verdicts = [oracle.check(query, 1).verdict for _ in range(4)]
    assert verdicts == [Verdict.UNSAT, Verdict.TIMEOUT, Verdict.ERROR, Verdict.UNSAT]


def test_fake_answers_from_a_function(cube_query) -> None:
    query = cube_query("mnist", "0-1", 0.01)
    seen = []
    fake = FakeOracle(answer=lambda q, t: seen.append(t) or Verdict.UNKNOWN)
    assert fake.check(query, 3.0).verdict is Verdict.UNKNOWN and seen == [3.0] and fake.calls == [query]


def test_honest_fake_finds_real_witnesses_only(cube_query) -> None:
    oracle = make_oracle("fake")
    assert oracle.check(cube_query("mnist", "1-1", 0.3), 5).verdict is Verdict.SAT
    assert oracle.check(cube_query("mnist", "0-1", 0.01), 5).verdict is Verdict.UNKNOWN


def test_fake_rejects_unknown_words() -> None:
    with pytest.raises(ValueError, match="unknown verdict 'maybe'"):
        FakeOracle("unsat,maybe")
