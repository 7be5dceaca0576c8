"""compare on equal footing: start-up measured and shown, reasons and logs under --out, same model for all."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

from vnnbridge.cli import main
from vnnbridge.oracles.base import Verdict
from vnnbridge.vnncomp.compare import compare_oracles, format_table
from vnnbridge.vnncomp.config import OracleChoice
from vnnbridge.vnncomp.run import HarnessInstance, answer_instance, oracle_budget

TOOLS = Path(__file__).resolve().parents[1] / "data" / "fake_tools"


@pytest.fixture(scope="module")
def bench(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    onnx = shared / "data/paper/networks/mnist_784_32_10.onnx"
    image = sorted((shared / "data/paper/mnist/images").glob("*.csv"))[0]
    out = tmp_path_factory.mktemp("bench") / "one"
    assert main(["export-benchmark", "--onnx", str(onnx), "--input", str(image), "--radii", "0", "--timeout", "20",
                 "--out", str(out)]) == 0
    return out


@pytest.fixture
def broken_python(tmp_path: Path) -> Path:
    path = tmp_path / "broken-python"
    path.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'yaml'\" >&2\nexit 1\n")
    path.chmod(0o755)
    return path


def test_startup_column_reasons_and_logs(bench: Path, tmp_path: Path, broken_python: Path) -> None:
    broken = f"nnenum:{TOOLS / 'nnenum'}?python={broken_python}"
    comparison = compare_oracles(bench, ["embedded", broken], tmp_path / "out")
    by = {s.oracle: s for s in comparison.summaries()}
    assert by["embedded"].unsat == 1 and by["embedded"].startup_s > 0
    assert by[broken].error == 1 and by[broken].startup_s == 0.0
    table = format_table(comparison)
    assert "start-up s" in table.splitlines()[0] and "oracles that did not start" in table
    assert "No module named 'yaml'" in table
    folder = next(p for p in (tmp_path / "out").iterdir() if p.name.startswith("nnenum"))
    rows = list(csv.DictReader((folder / "outcomes.csv").open()))
    assert rows[0]["result"] == "not ready" and "No module named 'yaml'" in rows[0]["reason"]
    assert rows[1]["result"] == "error" and "No module named 'yaml'" in rows[1]["reason"]
    assert len(list(folder.glob("*.tool.log"))) == 1  # the tool's own log, beside the harness log
    emb = list(csv.DictReader((tmp_path / "out" / "embedded" / "outcomes.csv").open()))
    assert emb[1]["result"] == "unsat" and float(emb[1]["run_s"]) >= float(emb[1]["solve_s"])


def test_plot_without_matplotlib_is_one_line(bench: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    code = main(["compare", str(bench), "--oracle", "fake:unsat", "--plot", str(tmp_path / "c.png"),
                 "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1 and "fake:unsat" in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "vnnbridge[plot]" in err[0] and "Traceback" not in captured.err


def test_every_oracle_is_held_back_the_same() -> None:
    assert oracle_budget("embedded", 30.0) == oracle_budget("abcrown:/x", 30.0) == 29.0
    assert oracle_budget("nnenum:/x", 30.0, startup=5.0) == 24.0


def _softmax_net(path: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper, save

    w = numpy_helper.from_array(np.array([[2.0, -1.0], [0.5, 1.0]], dtype=np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["z"]), helper.make_node("Relu", ["z"], ["h"]),
             helper.make_node("Softmax", ["h"], ["y"], axis=-1)]
    graph = helper.make_graph(nodes, "softmax", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    save(model, str(path))
    return path


@pytest.mark.marabou
def test_harness_strips_softmax_for_every_oracle(tmp_path: Path) -> None:
    # Marabou's ONNX reader has no Softmax: without the derivation `query` uses, this was `error`.
    onnx = _softmax_net(tmp_path / "net.onnx")
    vnnlib = tmp_path / "p.vnnlib"
    vnnlib.write_text("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
                      "(declare-const Y_1 Real)\n(assert (>= X_0 0.9))\n(assert (<= X_0 1.0))\n"
                      "(assert (>= X_1 0.0))\n(assert (<= X_1 0.1))\n(assert (>= Y_1 Y_0))\n")
    answer = answer_instance(HarnessInstance("c", str(onnx), vnnlib, tmp_path / "r.txt", 30.0), OracleChoice("marabou"))
    assert answer.verdict is Verdict.UNSAT, answer.reason
    assert (tmp_path / "r.txt").read_text().strip() == "unsat"


def test_a_portfolio_starts_up_as_its_slowest_member(tmp_path: Path) -> None:
    from vnnbridge.vnncomp.compare import measure_startup

    up = measure_startup(f"portfolio:embedded,nnenum:{TOOLS / 'nnenum'}?slack=1", tmp_path)
    members = [measure_startup(m, tmp_path / m[:6]) for m in ("embedded", f"nnenum:{TOOLS / 'nnenum'}")]
    # The reasons in the message: a member that did not start once failed here in CI without saying why.
    assert up.ready and all(m.ready for m in members), (up, members)
    assert not up.reason, up.reason  # every member of the portfolio started
    assert (tmp_path / "member0" / "startup.log").is_file() and (tmp_path / "member1" / "startup.log").is_file()
    assert up.seconds > 0


def test_a_start_up_check_that_dies_is_tried_once_more(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Fault injection: the check process dies without an answer the first time only.
    import vnnbridge.vnncomp.compare as compare

    flaky = tmp_path / "flaky.py"
    flaky.write_text("import os, runpy, sys\n"
                     f"mark = {str(tmp_path / 'died')!r}\n"
                     "if not os.path.exists(mark):\n"
                     "    open(mark, 'w').close()\n"
                     "    sys.exit('killed before answering')\n"
                     "sys.argv = ['vnnbridge', *sys.argv[1:]]\n"
                     "runpy.run_module('vnnbridge', run_name='__main__')\n")
    monkeypatch.setattr(compare, "_python", lambda: [sys.executable, str(flaky)])
    up = compare.measure_startup("embedded", tmp_path / "up")
    assert up.ready and up.seconds > 0, up
    assert "killed before answering" in (tmp_path / "up" / "startup.log").read_text()
    (tmp_path / "died").unlink()
    monkeypatch.setattr(compare, "_python", lambda: [sys.executable, "-c", "import sys; sys.exit('gone')"])
    down = compare.measure_startup("embedded", tmp_path / "down")
    assert not down.ready and "wrote no answer" in down.reason and "gone" in down.reason
