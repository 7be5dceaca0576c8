"""The VNN-LIB 2.0 solver interface: capabilities, declarations, the standard's error cases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vnnbridge.cli import main
from vnnbridge.errors import InputError
from vnnbridge.vnncomp.solver import CAPABILITIES, capability

V2 = """(vnnlib-version <2.0>)
; a comment (with parentheses)
(declare-network f
    (declare-input  A float32 [2,2])
    (declare-output Y float32 [1, 3])
)
(assert (>= A[0,0] 0.0))
"""


def test_every_capability_answers() -> None:
    for flag in CAPABILITIES:
        lines = capability(flag)
        assert all(line and line == line.strip() for line in lines), flag
    assert capability("--vnnlib-versions") == ("1.0", "2.0")
    low, high = capability("--onnx-opset-versions")
    assert 0 < int(low) <= int(high)
    assert capability("--multiple-network-theories") == ("SNET",)
    assert capability("--hidden-node-theories") == ("NH",)
    assert capability("--serialise-assignments") == ("false",)
    with pytest.raises(InputError, match="unknown capability"):
        capability("--nonsense")


def test_operators_bare_one_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["supports", "--onnx-operators"]) == 0
    ops = capsys.readouterr().out.splitlines()
    assert {"Gemm", "Relu", "Conv", "MatMul", "Flatten"} <= set(ops)
    assert all(op.isidentifier() and " " not in op for op in ops)
    assert "Softmax" not in ops and "Sigmoid" not in ops


def test_name_and_version() -> None:
    for flag, expected in (("--name", "vnnbridge"), ("--version", "vnnbridge")):
        out = subprocess.run([sys.executable, "-m", "vnnbridge", flag], capture_output=True, text=True)
        assert out.returncode == 0 and expected in out.stdout


def test_verify_error_cases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    query = tmp_path / "q.vnnlib"
    query.write_text(V2)
    cases = [
        ([str(query)], "do not match"),  # no --network for f
        ([str(query), "--network", "g=x.onnx"], "missing: f"),
        ([str(query), "--network", "bad"], "NAME=PATH"),
        ([str(tmp_path / "nope.vnnlib"), "--network", "f=x.onnx"], "no such VNN-LIB file"),
    ]
    for args, message in cases:
        assert main(["verify", *args]) == 2
        err = capsys.readouterr()
        assert err.out == "" and message in err.err and len(err.err.strip().splitlines()) == 1


def test_verify_rejects_hidden_and_multiple_networks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hidden = tmp_path / "h.vnnlib"
    hidden.write_text(V2.replace("(declare-output", '(declare-hidden H float32 [1] "n")\n    (declare-output'))
    assert main(["verify", str(hidden), "--network", "f=x.onnx"]) == 2
    assert "hidden-node declarations are not supported" in capsys.readouterr().err
    two = tmp_path / "two.vnnlib"
    two.write_text(V2.replace("(assert", "(declare-network g\n (declare-input B float32 [1])\n"
                              " (declare-output Z float32 [1]))\n(assert"))
    assert main(["verify", str(two), "--network", "f=x.onnx", "--network", "g=y.onnx"]) == 2
    assert "handles one (SNET)" in capsys.readouterr().err
    f64 = tmp_path / "f64.vnnlib"
    f64.write_text(V2.replace("A float32", "A float64"))
    assert main(["verify", str(f64), "--network", "f=x.onnx"]) == 2
    assert "element type float64" in capsys.readouterr().err


def _tiny_model(path: Path) -> None:
    """Y = relu(X @ [[1], [1]]) for X of shape [1, 2] (float32)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((2, 1), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "w"], ["h"]), helper.make_node("Relu", ["h"], ["Y"])], "tiny",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 1])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


TINY = """(vnnlib-version <2.0>)
(declare-network net
    (declare-input X float32 [1,2])
    (declare-output Y float32 [1,1])
)
(assert (>= X[0,0] 0.0))
(assert (<= X[0,0] 1.0))
(assert (>= X[0,1] 0.5))
(assert (<= X[0,1] 1.0))
(assert (>= Y[0,0] {bound}))
"""


def test_verify_sat_prints_the_typed_assignment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "tiny.onnx"
    _tiny_model(model)
    query = tmp_path / "q.vnnlib"
    query.write_text(TINY.format(bound="1.75"))
    assert main(["verify", str(query), "--network", f"net={model}", "--timeout", "20.5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "sat" and lines[1] == "X float32 [1,2]" and lines[4] == "Y float32 [1,1]"
    x0, x1, y = float(lines[2]), float(lines[3]), float(lines[5])
    assert 0 <= x0 <= 1 and 0.5 <= x1 <= 1 and y >= 1.75 and abs(y - (x0 + x1)) < 1e-6
    query.write_text(TINY.format(bound="2.5"))
    assert main(["verify", str(query), "--network", f"net={model}", "--timeout", "20"]) == 0
    assert capsys.readouterr().out == "unsat\n"


def test_verify_reads_vnnlib_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "tiny.onnx"
    _tiny_model(model)
    query = tmp_path / "q1.vnnlib"
    query.write_text("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
                     "(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n(assert (>= X_1 0.0))\n(assert (<= X_1 1.0))\n"
                     "(assert (<= Y_0 -0.5))\n")
    assert main(["verify", str(query), "--network", f"anyname={model}"]) == 0
    assert capsys.readouterr().out == "unsat\n"


def test_verify_times_out_on_time_and_ends_the_tool(tmp_path: Path) -> None:
    # A competition tool folder that hangs: `verify` must say timed-out on time and leave nothing behind.
    import os
    import time

    from vnnbridge.vnncomp.run import SCOPE_VARIABLE, find_marked

    model = tmp_path / "tiny.onnx"
    _tiny_model(model)
    query = tmp_path / "q.vnnlib"
    query.write_text(TINY.format(bound="1.75"))
    root = Path(__file__).resolve().parents[2]
    scope = f"test-verify-{os.getpid()}"
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "vnnbridge", "verify", str(query), "--network", f"net={model}",
                           "--timeout", "3.5", "--oracle", f"vnncomp:{root / 'tests/data/fake_tools/hang'}"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, SCOPE_VARIABLE: scope})
    # The timeout counts from when verify starts working, so start-up (slow on a loaded machine) comes on
    # top; the process runner alone would only answer after its slack of 5 s past the oracle's budget.
    assert time.monotonic() - start < 3.5 + 3.0
    assert done.returncode == 0 and done.stdout == "timed-out\n", done.stderr
    time.sleep(0.5)
    assert find_marked(scope + ":", exact=False) == []
