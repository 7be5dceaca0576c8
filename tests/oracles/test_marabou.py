"""The marabou adapter against the real Marabou command (maraboupy 2.0.0), plus its output parser."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest

from vnnbridge.errors import OracleProtocolError, OracleUnavailable
from vnnbridge.network import load_network
from vnnbridge.oracles.base import Verdict
from vnnbridge.oracles.marabou import VERDICTS, MarabouOracle, parse_output
from vnnbridge.oracles.registry import is_available, make_oracle

needs_marabou = pytest.mark.skipif(not is_available("marabou"), reason="Marabou is not installed")

SAT_TEXT = """Network: net.onnx
Property: p.vnnlib

sat
Input assignment:
\tx0 = -0.000000
\tx1 = 0.300000
\tx2 = 0.123529

Output:
\ty0 = 0.446519
\ty1 = 0.446519
"""


def test_parse_sat_reads_the_input_assignment() -> None:
    verdict, x = parse_output(SAT_TEXT, 3)
    assert verdict is Verdict.SAT
    assert x is not None and x.tolist() == [0.0, 0.3, 0.123529]


@pytest.mark.parametrize(("word", "verdict"), [("unsat", Verdict.UNSAT), ("Timeout", Verdict.TIMEOUT),
                                               ("UNKNOWN", Verdict.UNKNOWN), ("Error", Verdict.ERROR)])
def test_parse_maps_each_word_through_the_table(word: str, verdict: Verdict) -> None:
    assert parse_output(f"Network: n\nProperty: p\n\n{word}\n", 3) == (verdict, None)
    assert VERDICTS[word] is verdict


@pytest.mark.parametrize(("text", "message"), [
    ("Network: n\nProperty: p\n\nmaybe\n", "unknown result word 'maybe'"),
    ("Network: n\nProperty: p\n\n", "no result word"),
    ("Traceback (most recent call last):\n", "no 'Property:' line"),
    ("Network: n\nProperty: p\n\nsat\n", "no 'Input assignment:'"),
    (SAT_TEXT.replace("\tx2 = 0.123529\n", ""), "2 of 3 inputs"),
])
def test_parse_rejects_what_the_table_does_not_know(text: str, message: str) -> None:
    with pytest.raises(OracleProtocolError, match=message):
        parse_output(text, 3)


def test_missing_command_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(OracleUnavailable, match="Marabou command is not installed"):
        MarabouOracle(tmp_path / "no-such-Marabou")


def _fake_marabou(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "fake Marabou's bin" / "Marabou"
    script.parent.mkdir()
    script.write_text(f"#!/bin/bash\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_garbage_word_becomes_error_with_reason(tmp_path: Path, cube_query) -> None:
    query = cube_query("mnist", "0-1", 0.05)
    command = _fake_marabou(tmp_path, 'echo "Network: $1"; echo "Property: $2"; echo; echo probably')
    result = make_oracle("marabou", command=command).check(query, 5)
    assert result.verdict is Verdict.ERROR
    assert "unknown result word 'probably'" in result.reason


def test_crash_becomes_error_with_exit_code(tmp_path: Path, cube_query) -> None:
    query = cube_query("mnist", "0-1", 0.05)
    result = make_oracle("marabou", command=_fake_marabou(tmp_path, "echo boom >&2; exit 7")).check(query, 5)
    assert result.verdict is Verdict.ERROR
    assert "exited with code 7" in result.reason and "boom" in result.reason


@needs_marabou
def test_version_is_2_0_0() -> None:
    assert make_oracle("marabou").version() == "2.0.0"


@needs_marabou
def test_robust_radius_is_unsat(cube_query) -> None:
    result = make_oracle("marabou").check(cube_query("mnist", "0-1", 0.05), 60)
    assert result.verdict is Verdict.UNSAT, result.reason
    assert result.witness is None and result.oracle == "marabou" and result.seconds > 0
    assert result.log is not None and result.log.is_file()


@needs_marabou
@pytest.mark.parametrize(("dataset", "image", "radius"), [("mnist", "1-1", 0.2), ("fmnist", "7_3", 0.15)])
def test_non_robust_radius_is_sat_with_a_valid_witness(cube_query, dataset: str, image: str,
                                                       radius: float) -> None:
    query = cube_query(dataset, image, radius)
    result = make_oracle("marabou").check(query, 60)
    assert result.verdict is Verdict.SAT, result.reason
    box = query.spec.single_box
    assert box.contains(result.witness)
    net = load_network(query.onnx)
    y = net.run(result.witness)
    label = query.spec.cases[0].polytopes[0].a[0].index(1.0)  # row y_label - y_j <= 0
    # Ties count against robustness: some other logit reaches the label's, in onnxruntime.
    assert np.delete(y, label).max() >= y[label]
    assert query.spec.violated_by(result.witness, y)


@needs_marabou
def test_own_timeout_is_timeout(cube_query) -> None:
    # This query takes Marabou about 5 s; with 1 s it must stop and say so.
    result = make_oracle("marabou").check(cube_query("mnist", "0-1", 0.1), 1)
    assert result.verdict is Verdict.TIMEOUT
    assert result.seconds < 1 + 5


@needs_marabou
def test_model_with_sub_and_div_is_rewritten_for_marabou(shared: Path, tmp_path: Path) -> None:
    from vnnbridge.box import Box
    from vnnbridge.oracles.base import Query
    from vnnbridge.vnnlib.model import robustness_spec

    onnx = shared / "data" / "networks" / "mnist" / "mnistconvSmallRELUDiffAI.onnx"
    x = np.loadtxt(shared / "data" / "paper" / "mnist" / "images" / "3-1.csv").ravel()
    net = load_network(onnx)
    box = Box.cube(x, 0.001, Box.from_arrays(np.zeros(784), np.ones(784)))
    result = make_oracle("marabou").check(Query.build(onnx, robustness_spec(box, net.predict(x), 10), tmp_path), 60)
    assert result.verdict is Verdict.UNSAT, result.reason


@pytest.mark.parametrize(("text", "message"), [
    ("", "no readable answer"),
    ('{"exit": "maybe"}', "unknown exit code 'maybe'"),
    ('{"exit": "sat", "x": [0.5]}', "1 of 3 inputs"),
])
def test_api_answer_rejects_what_the_table_does_not_know(text: str, message: str) -> None:
    from vnnbridge.oracles.marabou import parse_answer

    with pytest.raises(OracleProtocolError, match=message):
        parse_answer(text, 3)


def test_api_answer_keeps_full_precision() -> None:
    from vnnbridge.oracles.marabou import parse_answer

    verdict, x = parse_answer('{"exit": "sat", "x": [0.1, 0.30000000000000004, 1e-17]}', 3)
    assert verdict is Verdict.SAT and x.tolist() == [0.1, 0.30000000000000004, 1e-17]
    assert parse_answer('{"exit": "QUIT_REQUESTED", "x": null}', 3) == (Verdict.UNKNOWN, None)


@needs_marabou
@pytest.mark.parametrize(("image", "radius", "verdict"), [("1-1", 0.2, Verdict.SAT), ("0-1", 0.05, Verdict.UNSAT)])
def test_api_mode_decides_with_full_precision_witnesses(cube_query, image: str, radius: float,
                                                        verdict: Verdict) -> None:
    query = cube_query("mnist", image, radius)
    result = make_oracle("marabou", mode="api").check(query, 60)
    assert result.verdict is verdict, result.reason
    if verdict is Verdict.SAT:
        assert query.spec.violated_by(result.witness, load_network(query.onnx).run(result.witness))


@needs_marabou
def test_paths_with_spaces_and_quotes(shared: Path, tmp_path: Path) -> None:
    import shutil

    from vnnbridge.box import Box
    from vnnbridge.oracles.base import Query
    from vnnbridge.vnnlib.model import robustness_spec

    folder = tmp_path / "it's a \"folder\" with spaces"
    folder.mkdir()
    onnx = folder / "the net (copy).onnx"
    shutil.copy(shared / "data" / "paper" / "networks" / "mnist_784_32_10.onnx", onnx)
    x = np.loadtxt(shared / "data" / "paper" / "mnist" / "images" / "0-1.csv").ravel()
    box = Box.cube(x, 0.01, Box.from_arrays(np.zeros(784), np.ones(784)))
    query = Query.build(onnx, robustness_spec(box, load_network(onnx).predict(x), 10), folder)
    assert make_oracle("marabou").check(query, 60).verdict is Verdict.UNSAT
    assert sorted(p.name for p in folder.iterdir()) == sorted([onnx.name, query.vnnlib.name])  # nothing else


def test_out_of_memory_is_an_error_that_says_so(tmp_path: Path, cube_query) -> None:
    command = _fake_marabou(tmp_path, 'echo "Property: $2"; echo "MemoryError: std::bad_alloc" >&2; exit 1')
    result = make_oracle("marabou", command=command, memory=2 * 1024**3).check(cube_query("mnist", "0-1", 0.05), 5)
    assert result.verdict is Verdict.ERROR and "ran out of memory (capped at 2 GiB)" in result.reason
