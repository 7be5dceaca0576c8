"""``vnnbridge oracles`` and ``vnnbridge query``: output, witness file, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vnnbridge.box import Box
from vnnbridge.cli import main
from vnnbridge.network import load_network
from vnnbridge.oracles.registry import is_available
from vnnbridge.vnncomp.results import parse_counterexample
from vnnbridge.vnnlib.model import robustness_spec
from vnnbridge.vnnlib.writer import write

TOOLS = Path(__file__).resolve().parents[1] / "data" / "fake_tools"
needs_marabou = pytest.mark.skipif(not is_available("marabou"), reason="Marabou is not installed")


def _property(shared: Path, tmp_path: Path, image: str, radius: float) -> tuple[Path, Path, Box]:
    onnx = shared / "data" / "paper" / "networks" / "mnist_784_32_10.onnx"
    x = np.loadtxt(shared / "data" / "paper" / "mnist" / "images" / f"{image}.csv").ravel()
    box = Box.cube(x, radius, Box.from_arrays(np.zeros(784), np.ones(784)))
    path = tmp_path / f"{image} r{radius}.vnnlib"
    path.write_text(write(robustness_spec(box, load_network(onnx).predict(x), 10)))
    return onnx, path, box


def test_oracles_lists_every_kind(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["oracles", "--json", "--folder", f"vnncomp={TOOLS / 'holds'}"]) == 0
    listed = {o["kind"]: o for o in json.loads(capsys.readouterr().out)}
    assert {"embedded", "marabou", "vnncomp", "abcrown", "neuralsat", "nnenum", "fake"} <= set(listed)
    assert listed["fake"]["usable"] and listed["vnncomp"]["usable"]
    assert not listed["abcrown"]["usable"] and "abcrown:DIR" in listed["abcrown"]["note"]


@needs_marabou
def test_oracles_shows_marabou_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["oracles"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("marabou"))
    assert "usable" in line and "2.0.0" in line


@needs_marabou
def test_query_unsat_as_json(shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx, prop, _ = _property(shared, tmp_path, "0-1", 0.02)
    assert main(["query", "--onnx", str(onnx), "--vnnlib", str(prop), "--oracle", "marabou", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "unsat" and out["oracle"] == "marabou" and out["version"] == "2.0.0"
    assert out["seconds"] > 0 and "reason" in out


@needs_marabou
def test_query_sat_writes_an_exact_witness(shared: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    onnx, prop, box = _property(shared, tmp_path, "1-1", 0.2)
    out = tmp_path / "witness.txt"
    assert main(["query", "--onnx", str(onnx), "--vnnlib", str(prop), "--oracle", "marabou",
                 "--witness", str(out)]) == 0
    assert capsys.readouterr().out == "sat\n"
    x, y = parse_counterexample(out.read_text())
    assert box.contains(x) and x.size == 784 and y.size == 10
    assert np.array_equal(y, load_network(onnx).run(x))  # Y is onnxruntime's output, read back exactly


def test_tool_error_is_still_a_verdict(shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx, prop, _ = _property(shared, tmp_path, "0-1", 0.02)
    code = main(["query", "--onnx", str(onnx), "--vnnlib", str(prop), "--oracle",
                 f"vnncomp:{TOOLS / 'garbage'}", "--timeout", "5"])
    assert code == 0
    assert capsys.readouterr().out.startswith("error (unknown result word 'probably'")


def test_unknown_oracle_exits_2(shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A name no registry knows is bad input (2); 3 is for a known oracle that cannot run here.
    onnx, prop, _ = _property(shared, tmp_path, "0-1", 0.02)
    assert main(["query", "--onnx", str(onnx), "--vnnlib", str(prop), "--oracle", "no-such-tool"]) == 2
    assert "no oracle 'no-such-tool'" in capsys.readouterr().err


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.vnnlib"
    assert main(["query", "--onnx", str(missing), "--vnnlib", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"{missing}: no such ONNX file"


def test_size_mismatch_exits_2(shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prop = tmp_path / "five inputs.vnnlib"
    prop.write_text(write(robustness_spec(Box.from_arrays(np.zeros(5), np.ones(5)), 0, 10)))
    onnx = shared / "data" / "networks" / "mnist" / "Convnet_maxpool.onnx"
    code = main(["query", "--onnx", str(onnx), "--vnnlib", str(prop), "--oracle", "fake"])
    assert code == 2
    assert capsys.readouterr().err == f"{prop}: the property has 5 inputs and 10 outputs, the model 784 and 10\n"


def test_bad_normalisation_exits_2(shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, prop, _ = _property(shared, tmp_path, "0-1", 0.02)
    onnx = shared / "data" / "networks" / "fmnist" / "fmnist_mlp_784-32-10.onnx"
    code = main(["query", "--onnx", str(onnx), "--vnnlib", str(prop), "--mean", "0.5", "0.2", "--std", "0.5"])
    assert code == 2 and "--mean has 2 values" in capsys.readouterr().err


@needs_marabou
def test_mean_std_outside_the_graph(shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, prop, _ = _property(shared, tmp_path, "0-1", 0.001)
    onnx = shared / "data" / "networks" / "fmnist" / "fmnist_mlp_784-32-10.onnx"
    code = main(["query", "--onnx", str(onnx), "--vnnlib", str(prop), "--oracle", "marabou",
                 "--mean", "0.5", "--std", "0.5", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["verdict"] in ("sat", "unsat")
    assert Path(out["onnx"]).parent.name == "models"  # the derived model, in the cache


def test_query_json_stdout_is_one_object_when_the_solver_runs(shared: Path, tmp_path: Path) -> None:
    # r* = 33/255 on image 0-1 needs branch and bound, so HiGHS is constructed in this process;
    # HiGHS >= 1.16 prints a banner to the C-level stdout then, which must not reach ours.
    import subprocess
    import sys

    onnx, prop, _ = _property(shared, tmp_path, "0-1", 33 / 255)
    run = subprocess.run([sys.executable, "-m", "vnnbridge", "query", "--onnx", str(onnx), "--vnnlib", str(prop),
                          "--json"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["verdict"] == "unsat"
