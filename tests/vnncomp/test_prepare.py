"""prepare: checks without analysis, exit 0 for broken instances, ends only marked leftover processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vnnbridge.cli import main
from vnnbridge.vnncomp.config import OracleChoice
from vnnbridge.vnncomp.prepare import marked_processes, prepare_instance
from vnnbridge.vnncomp.run import RUN_MARK, SCOPE_VARIABLE, network_paths

SCOPE = f"test-prepare-{os.getpid()}"


def _sleeper(marked: bool, scope: str = SCOPE) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != RUN_MARK}
    if marked:
        env[RUN_MARK] = f"{scope}:12345"
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env=env,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def test_prepare_ends_marked_leftovers_only(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marked, other, unmarked = _sleeper(True), _sleeper(True, SCOPE + "-other"), _sleeper(False)
    monkeypatch.setenv(SCOPE_VARIABLE, SCOPE)
    try:
        time.sleep(0.3)  # let the children exec so /proc shows their environment
        assert marked_processes() == [marked.pid]
        onnx = shared / "data/networks/mnist/mnist-net_256x2.onnx"
        vnnlib = shared / "data/vnnlib/mnistfc/prop_0_0.03.vnnlib"
        result = prepare_instance("mnist_fc", str(onnx), vnnlib, OracleChoice())
        assert result.ok, result.problems
        assert result.ended == [marked.pid]
        assert marked.wait(timeout=10) == -9
        assert unmarked.poll() is None and other.poll() is None
    finally:
        for proc in (marked, other, unmarked):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_prepare_reports_problems_and_exits_zero(shared: Path, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    onnx = shared / "data/networks/mnist/mnist-net_256x2.onnx"
    acas = shared / "vnnlib-corpus/acasxu/prop_1.vnnlib"
    result = prepare_instance("c", str(onnx), acas, OracleChoice(), cleanup=False)
    assert not result.ok and "5 inputs" in result.problems[0]
    assert main(["vnncomp-prepare", "--category", "c", "--onnx", str(tmp_path / "none.onnx"), "--vnnlib",
                 str(acas), "--no-cleanup"]) == 0
    assert "no such ONNX file" in caplog.text
    before = sorted(p.name for p in shared.rglob("*"))
    prepare_instance("c", str(onnx), shared / "data/vnnlib/mnistfc/prop_0_0.05.vnnlib", OracleChoice(),
                     cleanup=False)
    assert sorted(p.name for p in shared.rglob("*")) == before  # nothing written beside the inputs


def test_network_argument_forms(tmp_path: Path) -> None:
    assert network_paths("onnx/a.onnx") == [("N", "onnx/a.onnx")]
    assert network_paths("[('f', 'a.onnx'), ('g', 'b.onnx')]") == [("f", "a.onnx"), ("g", "b.onnx")]
    assert network_paths("('f', 'a.onnx')") == [("f", "a.onnx")]
    assert network_paths("f=a.onnx;g=b.onnx") == [("f", "a.onnx"), ("g", "b.onnx")]
    from vnnbridge.errors import InputError

    for bad in ("[1, 2]", "[('f',)]", "[", "[]"):
        with pytest.raises(InputError):
            network_paths(bad)
