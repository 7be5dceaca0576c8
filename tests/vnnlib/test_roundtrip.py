"""parse(write(spec)) == spec bit for bit, for generated specs; and what the writer's text looks like."""

from __future__ import annotations

import math
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vnnbridge.box import Box
from vnnbridge.vnnlib import format_number, membership_spec, parse, robustness_spec, write, write_file
from vnnbridge.vnnlib.model import Case, Polytope, Spec
from vnnbridge.vnnlib.model import spec_bits as bits
from vnnbridge.vnnlib.vnnlib2 import write2

SPECIAL = [0.0, -0.0, 5e-324, -5e-324, 1e-300, -1e-300, 1e300, -1e300, 2.2250738585072014e-308,
           2.225073858507201e-308, 1.7976931348623157e308, -1.7976931348623157e308, 0.1, 1.0, -1.0, 1e16,
           123456789.123, 2.0 ** -1074 * 3]
finite = st.one_of(st.sampled_from(SPECIAL), st.floats(allow_nan=False, allow_infinity=False))
coefficient = st.one_of(st.sampled_from([0.0, 0.0, 0.0, 1.0, -1.0, -0.0, 2.0, 0.5]), finite)
_NUMBER = re.compile(r"(?<![\w.])[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![\w.])")



@st.composite
def boxes(draw: st.DrawFn, n: int) -> Box:
    pairs = [sorted([draw(finite), draw(finite)]) for _ in range(n)]
    return Box(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))


@st.composite
def polytopes(draw: st.DrawFn, m: int, max_rows: int = 3) -> Polytope:
    rows = draw(st.integers(0, max_rows))
    a = tuple(tuple(draw(coefficient) for _ in range(m)) for _ in range(rows))
    return Polytope(a, tuple(draw(finite) for _ in range(rows)))


@st.composite
def specs(draw: st.DrawFn, max_cases: int = 3, max_polytopes: int = 5) -> Spec:
    n, m = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    # Cases with identical boxes (by bits) would be merged on reading, as the scorer merges them.
    bxs = draw(st.lists(boxes(n), min_size=1, max_size=max_cases,
                        unique_by=lambda b: struct.pack(f"<{2 * n}d", *b.lower, *b.upper)))
    cases = tuple(Case(b, tuple(draw(st.lists(polytopes(m), min_size=1, max_size=max_polytopes)))) for b in bxs)
    return Spec(n, m, cases)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_generated_spec_round_trips_bit_exactly(spec: Spec) -> None:
    text = write(spec)
    again = parse(text)
    assert again == spec and bits(again) == bits(spec)
    assert "e" not in "".join(_NUMBER.findall(text)).lower()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(max_cases=12, max_polytopes=40))
def test_generated_spec_with_many_disjuncts_round_trips(spec: Spec) -> None:
    again = parse(write(spec))
    assert again == spec and bits(again) == bits(spec)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_generated_spec_survives_1_to_2_to_1(spec: Spec) -> None:
    via2 = parse(write2(spec))
    assert via2 == spec and bits(via2) == bits(spec)
    assert write(via2) == write(spec)


@given(finite)
def test_numbers_are_written_without_exponent_and_read_back_exactly(x: float) -> None:
    text = format_number(x)
    assert "e" not in text and "E" not in text
    assert struct.pack("<d", float(text)) == struct.pack("<d", x)


@pytest.mark.parametrize("x,text", [(0.0, "0.0"), (-0.0, "-0.0"), (1e-5, "0.00001"), (1.5e16, "15000000000000000.0"),
                                    (5e-324, "0." + "0" * 323 + "5"), (1e300, "1" + "0" * 300 + ".0"),
                                    (-2.5e-7, "-0.00000025"), (123.25, "123.25")])
def test_number_text(x: float, text: str) -> None:
    assert format_number(x) == text


def test_non_finite_numbers_are_refused() -> None:
    for x in (math.inf, -math.inf, math.nan):
        with pytest.raises(ValueError):
            format_number(x)


def _image_box(radius: float) -> tuple[Box, np.ndarray]:
    x = np.linspace(0.0, 1.0, 784)
    return Box.cube(x, radius, Box((0.0,) * 784, (1.0,) * 784)), x


def test_robustness_query_text_has_the_form_every_tool_reads() -> None:
    box, _ = _image_box(0.01)
    text = write(robustness_spec(box, 3, 10))
    lines = text.split("\n")
    assert text.endswith("))\n") and "\r" not in text and ";" not in text
    assert lines[:2] == ["(declare-const X_0 Real)", "(declare-const X_1 Real)"]
    assert lines[794] == "(assert (>= X_0 0.0))" and lines[795] == "(assert (<= X_0 0.01))"
    assert lines[-12:] == ["(assert (or"] + [f"    (and (>= Y_{j} Y_3))" for j in range(10) if j != 3] + ["))", ""]
    assert text.count("(assert (or") == 1
    bound_lines = [ln for ln in lines if ln.startswith("(assert (") and "X_" in ln]
    assert len(bound_lines) == 2 * 784
    assert all(re.fullmatch(r"\(assert \((<=|>=) X_\d+ -?\d+\.\d+\)\)", ln) for ln in bound_lines)


def test_membership_query_is_one_conjunction() -> None:
    box, _ = _image_box(0.01)
    text = write(membership_spec(box, 0, 3))
    assert text.endswith("(assert (or\n    (and (>= Y_0 Y_1) (>= Y_0 Y_2))\n))\n")


def test_multi_box_spec_carries_boxes_inside_the_or() -> None:
    p = Polytope(((1.0, -1.0),), (0.0,))
    spec = Spec(1, 2, (Case(Box((0.0,), (1.0,)), (p,)), Case(Box((2.0,), (3.0,)), (p,))))
    assert write(spec).endswith("(assert (or\n    (and (>= X_0 0.0) (<= X_0 1.0) (>= Y_1 Y_0))\n"
                                "    (and (>= X_0 2.0) (<= X_0 3.0) (>= Y_1 Y_0))\n))\n")


def test_output_rows_use_the_simplest_form() -> None:
    box = Box((0.0,), (1.0,))
    rows = [((1.0, 0.0, 0.0), 2.5, "(<= Y_0 2.5)"), ((0.0, -1.0, 0.0), 2.5, "(>= Y_1 -2.5)"),
            ((0.0, 1.0, -1.0), 0.0, "(>= Y_2 Y_1)"), ((0.0, -1.0, 1.0), 0.0, "(>= Y_1 Y_2)"),
            ((1.0, -1.0, 0.0), 1.0, "(<= (+ (* 1.0 Y_0) (* -1.0 Y_1)) 1.0)"),
            ((2.0, 0.0, 0.0), 1.0, "(<= (* 2.0 Y_0) 1.0)")]
    for a, b, text in rows:
        written = write(Spec(1, 3, (Case(box, (Polytope((a,), (b,)),)),)))
        assert f"(and {text})" in written
        assert parse(written).cases[0].polytopes[0] == Polytope((a,), (b,))


def test_write_file_plain_and_gz(tmp_path: Path) -> None:
    box, _ = _image_box(0.02)
    spec = robustness_spec(box, 1, 10)
    from vnnbridge.vnnlib import parse_file

    for name in ("q.vnnlib", "q.vnnlib.gz"):
        path = write_file(spec, tmp_path / name)
        assert parse_file(path) == spec


def _marabou() -> str | None:
    here = Path(sys.executable).parent / "Marabou"
    return str(here) if here.exists() else shutil.which("Marabou")


@pytest.mark.marabou
def test_marabou_reads_the_robustness_query(shared: Path, tmp_path: Path) -> None:
    marabou = _marabou()
    if marabou is None:
        pytest.skip("Marabou is not installed")
    net = shared / "data/paper/networks/mnist_784_32_10.onnx"
    x = np.loadtxt(shared / "data/paper/mnist/images/0-1.csv").ravel()
    import onnxruntime as ort

    sess = ort.InferenceSession(str(net))
    label = int(np.argmax(sess.run(None, {sess.get_inputs()[0].name: x.reshape(1, 28, 28).astype(np.float32)})[0]))
    domain = Box((0.0,) * 784, (1.0,) * 784)
    verdicts = []
    for radius in (0.001, 0.3):
        prop = write_file(robustness_spec(Box.cube(x, radius, domain), label, 10), tmp_path / f"r{radius}.vnnlib")
        out = subprocess.run([marabou, str(net), str(prop), "--timeout", "60"], capture_output=True, text=True,
                             timeout=120).stdout
        verdicts.append("unsat" if "\nunsat" in out else "sat" if "\nsat" in out else out[-300:])
    assert verdicts == ["unsat", "sat"]
