"""``vnnbridge vnnlib check`` and ``vnnbridge vnnlib format``, run in-process through ``main``."""

from __future__ import annotations

import gzip
import importlib
import inspect
import json
from pathlib import Path

import pytest

from vnnbridge.cli import main
from vnnbridge.vnnlib import parse, parse_file

DATA = Path(__file__).resolve().parents[1] / "data" / "vnnlib"
OK = DATA / "ok"


def test_check_json_is_one_object_with_the_scorer_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vnnlib", "check", str(OK / "input_disjunction.vnnlib"), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert json.loads(out) == {"inputs": 2, "outputs": 2, "boxes": 2, "disjuncts_per_box": [2, 2],
                               "rows": [[1, 1], [1, 1]]}


def test_check_prints_a_readable_summary(capsys: pytest.CaptureFixture[str]) -> None:
    path = OK / "mnist_fc_prop_0_0.03.vnnlib"
    assert main(["vnnlib", "check", str(path)]) == 0
    assert capsys.readouterr().out == (f"{path}: 784 inputs, 10 outputs, 1 box\n  disjuncts per box: [9]\n"
                                       f"  rows per disjunct: [[1, 1, 1, 1, 1, 1, 1, 1, 1]]\n")


def test_check_reads_gzip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    packed = tmp_path / "p.vnnlib.gz"
    packed.write_bytes(gzip.compress((OK / "mixed_and.vnnlib").read_bytes()))
    assert main(["vnnlib", "check", str(packed), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["disjuncts_per_box"] == [2, 1]


def test_check_of_a_2x_query_that_is_no_box_spec_says_why(shared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = shared / "vnnlib-corpus/vnnlib2/multiple_networks.vnnlib"
    assert main(["vnnlib", "check", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["spec"] is None and [n["name"] for n in out["networks"]] == ["AcasXu", "AcasYu", "AcasZu"]
    assert out["reason"].endswith("expected one network for a box spec, found 3 (AcasXu, AcasYu, AcasZu)")


def test_format_rewrites_canonically(tmp_path: Path) -> None:
    out = tmp_path / "out.vnnlib"
    assert main(["vnnlib", "format", str(OK / "comments.vnnlib"), "-o", str(out)]) == 0
    text = out.read_text()
    assert ";" not in text and text.endswith("\n")
    assert parse(text) == parse_file(OK / "comments.vnnlib")


def test_format_to_stdout_and_to_gz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vnnlib", "format", str(OK / "tabs.vnnlib")]) == 0
    text = capsys.readouterr().out
    out = tmp_path / "out.vnnlib.gz"
    assert main(["vnnlib", "format", str(OK / "tabs.vnnlib"), "-o", str(out)]) == 0
    assert gzip.decompress(out.read_bytes()).decode() == text


def test_format_converts_1_to_2_with_onnx_shapes_and_back(shared: Path, tmp_path: Path) -> None:
    net = shared / "data/paper/networks/mnist_784_32_10.onnx"
    v2 = tmp_path / "p2.vnnlib"
    v1 = tmp_path / "p1.vnnlib"
    src = OK / "mnist_fc_prop_0_0.03.vnnlib"
    assert main(["vnnlib", "format", str(src), "--version", "2.0", "--onnx", str(net), "-o", str(v2)]) == 0
    assert "(declare-input X float32 [1,28,28])" in v2.read_text()
    assert main(["vnnlib", "format", str(v2), "--version", "1.0", "-o", str(v1)]) == 0
    assert parse_file(v1) == parse_file(src)


def test_format_checks_sizes_against_the_onnx_model(shared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = shared / "data/paper/networks/mnist_784_32_10.onnx"
    assert main(["vnnlib", "format", str(OK / "tabs.vnnlib"), "--onnx", str(net)]) == 2
    assert "expected a model with 2 inputs and 1 outputs, found shapes [1, 28, 28] and [1, 10]" in \
        capsys.readouterr().err


def test_format_keeps_a_2x_query_that_is_no_box_spec(shared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = shared / "vnnlib-corpus/vnnlib2/intermediate_nodes.vnnlib"
    assert main(["vnnlib", "format", str(path), "--version", "2.0"]) == 0
    assert "(declare-hidden N Real [1,2] \"onnx\")" in capsys.readouterr().out
    assert main(["vnnlib", "format", str(path)]) == 2  # 1.0 needs a box spec
    assert "expected a bound on one input variable (a box)" in capsys.readouterr().err


def test_vnnlib_without_a_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vnnlib"]) == 2
    assert "check" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["vnnbridge.vnnlib", "vnnbridge.vnnlib.parser", "vnnbridge.vnnlib.writer",
                                    "vnnbridge.vnnlib.vnnlib2", "vnnbridge.vnnlib.dnf", "vnnbridge.cli.vnnlib"])
def test_all_is_complete_and_documented(module: str) -> None:
    mod = importlib.import_module(module)
    public = {name for name, obj in vars(mod).items()
              if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
              and obj.__module__ == module}
    assert public <= set(mod.__all__)
    for name in mod.__all__:
        obj = getattr(mod, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert obj.__doc__, f"{module}.{name} has no docstring"
