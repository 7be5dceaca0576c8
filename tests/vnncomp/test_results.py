"""VNN-COMP result files: the word table and the counterexample format, both ways."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vnnbridge.errors import OracleProtocolError
from vnnbridge.oracles.base import Verdict
from vnnbridge.vnncomp.results import (RESULT_WORDS, format_result, parse_result, read_result,
                                       write_result)


@pytest.mark.parametrize(("word", "verdict"), [("unsat", Verdict.UNSAT), ("holds", Verdict.UNSAT),
                                               ("timeout", Verdict.TIMEOUT), ("unknown", Verdict.UNKNOWN),
                                               ("error", Verdict.ERROR)])
def test_words_map_through_the_table(word: str, verdict: Verdict) -> None:
    assert parse_result(f"{word}\n").verdict is verdict
    assert RESULT_WORDS[word] is verdict


def test_competition_counterexample_is_read() -> None:
    text = "violated\n((X_0 0.1)\n (X_1 -2.5e-3)\n (Y_0 1e+2)\n (Y_1 -0.0))\n"
    parsed = parse_result(text)
    assert parsed.verdict is Verdict.SAT and parsed.word == "violated"
    assert parsed.x.tolist() == [0.1, -0.0025] and parsed.y.tolist() == [100.0, -0.0]


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"),
    ("no_result_in_file\n", "wrote no result"),
    ("SAT\n", "unknown result word 'SAT'"),
    ("sat\n((X_0 1) (X_2 3))", "lacks X_1"),
    ("sat\n((X_0 1) (X_0 3))", "X_0 twice"),
    ("sat\n((X_0 1) (Z_0 3))", "cannot read"),
])
def test_bad_files_are_protocol_errors(text: str, message: str) -> None:
    with pytest.raises(OracleProtocolError, match=message):
        parse_result(text)


def test_missing_file_is_a_protocol_error(tmp_path: Path) -> None:
    with pytest.raises(OracleProtocolError, match="cannot read the result file"):
        read_result(tmp_path / "nothing.txt")


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(st.lists(finite, min_size=1, max_size=20), st.lists(finite, min_size=1, max_size=5))
def test_counterexample_round_trips_exactly(x: list[float], y: list[float]) -> None:
    parsed = parse_result(format_result(Verdict.SAT, x, y))
    assert parsed.x.tolist() == x and parsed.y.tolist() == y
    assert [np.float64(v).tobytes() for v in parsed.x] == [np.float64(v).tobytes() for v in x]


def test_written_file_reads_back(tmp_path: Path) -> None:
    path = write_result(tmp_path / "r.txt", Verdict.SAT, [0.5, 1 / 3], [2.0])
    assert path.read_text() == "sat\n((X_0 0.5)\n (X_1 0.3333333333333333)\n (Y_0 2.0))\n"
    assert read_result(path).x.tolist() == [0.5, 1 / 3]
    assert write_result(tmp_path / "u.txt", Verdict.UNSAT).read_text() == "unsat\n"


def test_sat_needs_its_counterexample() -> None:
    with pytest.raises(ValueError, match="needs the counterexample"):
        format_result(Verdict.SAT)
    with pytest.raises(ValueError, match="finite"):
        format_result(Verdict.SAT, [float("inf")], [0.0])
