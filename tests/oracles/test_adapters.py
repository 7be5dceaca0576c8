"""abcrown, nnenum and neuralsat adapters against fake checkouts that mimic the real command lines.

The real tools cannot be installed here; these fakes check the arguments and config each
adapter builds, and answer in each tool's documented result format.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vnnbridge.errors import OracleUnavailable
from vnnbridge.network import load_network
from vnnbridge.oracles.base import Query, Verdict
from vnnbridge.oracles.fake import sample_witness
from vnnbridge.oracles.registry import make_oracle
from vnnbridge.vnncomp.results import format_counterexample

TOOLS = Path(__file__).resolve().parents[1] / "data" / "fake_tools"
FAST = dict(slack=1.0, grace=1.0)


@pytest.fixture
def robust(cube_query) -> Query:
    return cube_query("mnist", "0-1", 0.01)


@pytest.fixture
def non_robust(cube_query) -> tuple[Query, Path]:
    """A non-robust query and a file holding a real counterexample for it."""
    query = cube_query("mnist", "1-1", 0.3)
    x = sample_witness(query)
    assert x is not None
    path = query.vnnlib.parent / "cex.txt"
    path.write_text(format_counterexample(x, load_network(query.onnx).run(x)))
    return query, path


def test_abcrown_unsat_and_its_config(robust: Query) -> None:
    oracle = make_oracle(f"abcrown:{TOOLS / 'abcrown'}", env={"FAKE_ABCROWN": "unsat"}, **FAST)
    result = oracle.check(robust, 7)
    assert result.verdict is Verdict.UNSAT, result.reason
    cfg = json.loads((result.log.parent / "config.yaml").read_text())
    assert cfg["model"]["onnx_path"] == str(robust.onnx)
    assert cfg["specification"]["vnnlib_path"] == str(robust.vnnlib)
    assert cfg["bab"]["timeout"] == 7.0 and cfg["general"]["device"] == "cpu"


def test_abcrown_sat_is_validated(non_robust: tuple[Query, Path]) -> None:
    query, cex = non_robust
    result = make_oracle(f"abcrown:{TOOLS / 'abcrown'}", env={"FAKE_ABCROWN": f"sat:{cex}"}, **FAST).check(query, 5)
    assert result.verdict is Verdict.SAT and query.spec.single_box.contains(result.witness)


def test_abcrown_silent_cpu_failure_is_an_error(robust: Query) -> None:
    result = make_oracle(f"abcrown:{TOOLS / 'abcrown'}", env={"FAKE_ABCROWN": "silent"}, **FAST).check(robust, 5)
    assert result.verdict is Verdict.ERROR and "wrote no result" in result.reason


def test_abcrown_hang_is_a_timeout(robust: Query) -> None:
    result = make_oracle(f"abcrown:{TOOLS / 'abcrown'}", env={"FAKE_ABCROWN": "hang"}, **FAST).check(robust, 1)
    assert result.verdict is Verdict.TIMEOUT and result.seconds < 1 + 5


def test_abcrown_needs_a_checkout(tmp_path: Path) -> None:
    with pytest.raises(OracleUnavailable, match="complete_verifier/abcrown.py"):
        make_oracle(f"abcrown:{tmp_path}")


@pytest.mark.parametrize(("mode", "verdict"), [("holds", Verdict.UNSAT), ("none", Verdict.UNKNOWN)])
def test_nnenum_words(robust: Query, mode: str, verdict: Verdict) -> None:
    result = make_oracle(f"nnenum:{TOOLS / 'nnenum'}", env={"FAKE_NNENUM": mode}, **FAST).check(robust, 5)
    assert result.verdict is verdict, result.reason


def test_nnenum_violated_without_witness_gets_a_witness_by_vnnbridge(non_robust: tuple[Query, Path]) -> None:
    query, _ = non_robust
    result = make_oracle(f"nnenum:{TOOLS / 'nnenum'}", env={"FAKE_NNENUM": "violated"}, **FAST).check(query, 5)
    assert result.verdict is Verdict.SAT and result.reason.startswith("witness by vnnbridge"), result.reason
    assert query.spec.violated_by(result.witness, load_network(query.onnx).run(result.witness))


def test_nnenum_violated_on_a_robust_box_becomes_unknown(robust: Query) -> None:
    # The fake lies: no witness exists, so vnnbridge finds none and the sat is not believed.
    result = make_oracle(f"nnenum:{TOOLS / 'nnenum'}", env={"FAKE_NNENUM": "violated"}, **FAST).check(robust, 5)
    assert result.verdict is Verdict.UNKNOWN, result.reason
    assert "sat without a witness" in result.reason and "vnnbridge found none" in result.reason


def test_nnenum_sat_with_witness_is_validated(non_robust: tuple[Query, Path]) -> None:
    query, cex = non_robust
    result = make_oracle(f"nnenum:{TOOLS / 'nnenum'}", env={"FAKE_NNENUM": f"sat:{cex}"}, **FAST).check(query, 5)
    assert result.verdict is Verdict.SAT, result.reason


def test_nnenum_garbage_word_is_an_error(robust: Query) -> None:
    result = make_oracle(f"nnenum:{TOOLS / 'nnenum'}", env={"FAKE_NNENUM": "maybe"}, **FAST).check(robust, 5)
    assert result.verdict is Verdict.ERROR and "unknown result word 'maybe'" in result.reason


@pytest.mark.parametrize(("mode", "verdict"), [("unsat", Verdict.UNSAT), ("unknown", Verdict.UNKNOWN),
                                               ("crash", Verdict.ERROR)])
def test_neuralsat_words(robust: Query, mode: str, verdict: Verdict) -> None:
    result = make_oracle(f"neuralsat:{TOOLS / 'neuralsat'}", env={"FAKE_NEURALSAT": mode}, **FAST).check(robust, 5)
    assert result.verdict is verdict, result.reason


def test_neuralsat_sat_is_validated(non_robust: tuple[Query, Path]) -> None:
    query, cex = non_robust
    oracle = make_oracle(f"neuralsat:{TOOLS / 'neuralsat'}", env={"FAKE_NEURALSAT": f"sat:{cex}"}, **FAST)
    assert oracle.check(query, 5).verdict is Verdict.SAT


def test_neuralsat_missing_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(OracleUnavailable, match="main.py"):
        make_oracle(f"neuralsat:{tmp_path}")
