"""One fixture per grammar feature in tests/data/vnnlib/ok/, each read to the exact spec it means."""

from __future__ import annotations

import gzip
import logging
import math
from pathlib import Path

import pytest

from vnnbridge.vnnlib import parse, parse_file, write
from vnnbridge.vnnlib.model import Spec
from vnnbridge.vnnlib.model import spec_bits as bits

OK = Path(__file__).resolve().parents[1] / "data" / "vnnlib" / "ok"


def cases(spec: Spec) -> list[tuple[list[float], list[float], list[tuple[list[list[float]], list[float]]]]]:
    """A spec as plain lists: per case (lower, upper, [(A, b), ...])."""
    return [(list(c.box.lower), list(c.box.upper), [([list(r) for r in p.a], list(p.b)) for p in c.polytopes])
            for c in spec.cases]



# fixture -> the cases it must produce: (lower, upper, [(A, b), ...]) per box.
EXPECTED = {
    "comments.vnnlib": [([0.0], [1.0], [([[1.0]], [0.5])])],
    "multiline.vnnlib": [([-1.5], [2.5], [([[0.0]], [0.0])])],
    "tabs.vnnlib": [([0.0, 2.0], [1.0, 3.0], [([[1.0]], [7.0])])],
    "no_final_newline.vnnlib": [([-1.0], [1.0], [([[1.0]], [0.0])])],
    "literals.vnnlib": [([-0.0, -1e-5, 0.5, 5e-324], [0.0, 150.0, 7.0, 1e300],
                         [([[1.0]], [-12345678901234567890.0])])],
    "input_disjunction.vnnlib": [
        ([0.0, 0.0], [1.0, 1.0], [([[-1.0, 1.0]], [0.0]), ([[1.0, 0.0]], [-1.0])]),
        ([2.0, 0.0], [3.0, 1.0], [([[-1.0, 1.0]], [0.0]), ([[1.0, 0.0]], [-1.0])]),
    ],
    "mixed_and.vnnlib": [
        ([0.0], [1.0], [([[-1.0]], [-10.0]), ([[1.0]], [-10.0])]),
        ([5.0], [6.0], [([[-1.0]], [-20.0])]),
    ],
    "no_spaces.vnnlib": [([0.0], [1.0], [([[1.0, -1.0], [1.0, 0.0], [0.0, -1.0]], [0.0, 3.0, 3.0]),
                                         ([[-1.0, 1.0]], [0.0])])],
    "several_or.vnnlib": [([0.0], [1.0], [([[1.0, 0.0], [0.0, 1.0]], [y0, y1])
                                          for y0 in (1.0, 2.0) for y1 in (1.0, 2.0, 3.0)])],
    "strict.vnnlib": [([0.0], [1.0], [([[1.0, -1.0]], [0.0]), ([[-1.0, 0.0]], [-5.0])])],
    "constant_first.vnnlib": [([0.25], [0.75], [([[-1.0]], [-3.0]), ([[1.0]], [-3.0])])],
    "top_level_and.vnnlib": [([0.0, -1.0], [1.0, 1.0], [([[1.0]], [0.5])])],
    "nested.vnnlib": [([0.0], [1.0], [
        ([[1.0, 0.0], [0.0, 1.0]], [1.0, 3.0]),
        ([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], [1.0, 4.0, 4.0]),
        ([[1.0, 0.0], [0.0, 1.0]], [2.0, 3.0]),
        ([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], [2.0, 4.0, 4.0]),
    ])],
    "linear_terms.vnnlib": [([0.0], [1.0], [([[1.0, 2.0, -0.5], [-1.0, 1.0, 0.0], [0.0, 0.0, -1.0],
                                              [3.0, -1.0, 0.0]], [3.0, -1.0, 4.0, 1.0])])],
    "plain_outputs.vnnlib": [([0.0], [1.0], [([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], [100.0, 1.0, 100.0]),
                                             ([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], [100.0, 2.0, 100.0])])],
    "repeated_bounds.vnnlib": [([0.25], [0.5], [([[1.0]], [0.0])])],
    "identical_boxes.vnnlib": [([0.012809650041163], [0.012809912674129],
                                [([[1.0]], [0.723087719250898]), ([[-1.0]], [-0.7258463589656547])])],
    "v2_features.vnnlib": [([0.5, 0.25], [0.5, 1.0], [
        ([[1.0, -1.0, 0.0], [1.0, 0.0, 2.0]], [0.0, 3.5]),
        ([[1.0, 0.0, -1.0]], [0.0]),
    ])],
}


def test_every_ok_fixture_has_an_expectation() -> None:
    names = {p.name for p in OK.glob("*.vnnlib")} - {"mnist_fc_prop_0_0.03.vnnlib"}
    assert names == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_feature_fixture_means_what_it_says(name: str) -> None:
    assert cases(parse_file(OK / name)) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_feature_fixture_round_trips_bit_exactly(name: str) -> None:
    spec = parse_file(OK / name)
    again = parse(write(spec))
    assert again == spec and bits(again) == bits(spec)


def test_negative_zero_and_subnormal_literals_keep_their_bits() -> None:
    spec = parse_file(OK / "literals.vnnlib")
    lo = spec.cases[0].box.lower
    assert math.copysign(1.0, lo[0]) < 0 and lo[3] == 5e-324


def test_ge_output_bound_gives_negative_zero_as_the_scorer() -> None:
    # The scorer computes (>= Y_0 0.0) as the row -y0 <= -1 * 0.0, i.e. a bound of -0.0.
    spec = parse("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (>= X_0 0))(assert (<= X_0 1))"
                 "(assert (>= Y_0 0.0))")
    assert math.copysign(1.0, spec.cases[0].polytopes[0].b[0]) < 0


def test_strict_comparison_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vnnbridge.vnnlib"):
        parse_file(OK / "strict.vnnlib")
    warnings = [r.getMessage() for r in caplog.records if "strict" in r.getMessage()]
    assert len(warnings) == 1 and "strict.vnnlib:5:9: strict '>' read as non-strict '>='" in warnings[0]


def test_gzip_is_read_transparently(tmp_path: Path) -> None:
    text = (OK / "input_disjunction.vnnlib").read_bytes()
    packed = tmp_path / "p.vnnlib.gz"
    packed.write_bytes(gzip.compress(text))
    assert parse_file(packed) == parse_file(OK / "input_disjunction.vnnlib")


def test_crlf_line_ends_parse(tmp_path: Path) -> None:
    text = (OK / "several_or.vnnlib").read_text()
    assert parse(text.replace("\n", "\r\n")) == parse(text)


def test_general_rules_agree_with_the_whole_shape_terminals() -> None:
    # A comment after every "(" breaks every whole-shape terminal, so the same file then goes
    # through the general one-token-per-parenthesis rules; both must give the same bits.
    for path in sorted(OK.glob("*.vnnlib")):
        text = path.read_text()
        if text.lstrip().startswith("(vnnlib-version"):
            continue
        code = [line.partition(";") for line in text.splitlines()]
        slow = parse("\n".join(c.replace("(", "( ; general path\n") + sep + rest for c, sep, rest in code))
        fast = parse(text)
        assert slow == fast and bits(slow) == bits(fast), path.name


def test_input_bound_through_a_linear_term_is_exact_or_refused() -> None:
    head = "(declare-const X_0 Real)(declare-const Y_0 Real)(assert (<= Y_0 0))"
    spec = parse(head + "(assert (<= (* 2 X_0) 1))(assert (<= (* -4 X_0) 1))")
    assert spec.cases[0].box.lower == (-0.25,) and spec.cases[0].box.upper == (0.5,)


def test_shapes_that_do_not_fit_are_read_by_the_general_rules() -> None:
    # "(and (and))" passes the whole-shape terminal's parenthesis check but holds no comparison.
    spec = parse("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (>= X_0 0))(assert (<= X_0 1))"
                 "(assert (or (and (and)) (and (<= Y_0 1))))")
    assert cases(spec) == [([0.0], [1.0], [([], []), ([[1.0]], [1.0])])]


def test_column_fast_path_agrees_with_the_loop(monkeypatch: pytest.MonkeyPatch, shared: Path) -> None:
    from vnnbridge.vnnlib import parser

    paths = sorted(OK.glob("*.vnnlib")) + sorted((shared / "vnnlib-corpus").glob("[!v]*/*.vnnlib"))
    fast = {p.name: parse_file(p) for p in paths}
    monkeypatch.setattr(parser._ToSpec, "_fill_bulk", lambda *args: False)
    for p in paths:
        slow = parse_file(p)
        assert slow == fast[p.name] and bits(slow) == bits(fast[p.name]), p.name


def test_a_disjunction_larger_than_one_chunk(tmp_path: Path) -> None:
    from vnnbridge.box import Box
    from vnnbridge.vnnlib.model import Case, Polytope
    from vnnbridge.vnnlib.parser import _CHUNK

    n = 40
    poly = (Polytope(((1.0, -1.0),), (0.0,)),)
    spec = Spec(n, 2, tuple(Case(Box(tuple(k + i / 7 for i in range(n)), tuple(k + i / 7 + 0.5 for i in range(n))),
                                 poly) for k in range(1500)))
    text = write(spec)
    assert len(text) > 2 * _CHUNK
    again = parse(text)
    assert again == spec and bits(again) == bits(spec)


def test_a_byte_order_mark_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "bom.vnnlib"
    path.write_bytes(b"\xef\xbb\xbf" + (OK / "tabs.vnnlib").read_bytes())
    assert parse_file(path) == parse_file(OK / "tabs.vnnlib")


def test_deeply_nested_formulas_give_a_message_not_a_crash() -> None:
    from vnnbridge.errors import SpecError

    head = "(vnnlib-version <2.0>)(declare-network N (declare-input X Real [1]) (declare-output Y Real [1]))"
    deep = "(assert " + "(and " * 5000 + "(<= X[0] 1)" + ")" * 5000 + ")"
    with pytest.raises(SpecError, match="nested at most"):
        parse(head + deep)
    # VNN-LIB 1.0 normalises bottom-up inside the parser, so depth is no problem there.
    flat = parse("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (>= X_0 0))(assert "
                 + "(and " * 5000 + "(<= X_0 1)" + ")" * 5000 + ")")
    assert flat.cases[0].box.upper == (1.0,)
