"""A tool runs in its own environment: ``?python=``, ``vnnbridge-tool.toml``, why it cannot start, ``--check``."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from vnnbridge.cli import main
from vnnbridge.errors import InputError, OracleUnavailable
from vnnbridge.oracles.base import Query, Verdict
from vnnbridge.oracles.external import split_spec, tool_options
from vnnbridge.oracles.readiness import check_oracle, tiny_instance
from vnnbridge.oracles.registry import make_oracle

TOOLS = Path(__file__).resolve().parents[1] / "data" / "fake_tools"
FAST = dict(slack=1.0, grace=1.0)


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def own_python(tmp_path: Path) -> Path:
    """A tool interpreter that says it was used, then runs the tool with this Python."""
    return _script(tmp_path / "tool-python", f'echo "tool python in use"\nexec {sys.executable} "$@"')


@pytest.fixture
def broken_python(tmp_path: Path) -> Path:
    """A tool interpreter whose environment lacks the tool's dependencies."""
    return _script(tmp_path / "broken-python",
                   "echo \"ModuleNotFoundError: No module named 'termcolor'\" >&2\nexit 1")


def test_split_spec_reads_the_options() -> None:
    where, options = split_spec("/opt/abc?python=/v/bin/python&arg=--conv_mode&arg=matrix&threads=2&env=A=b")
    assert where == "/opt/abc"
    assert options == {"python": "/v/bin/python", "args": ["--conv_mode", "matrix"], "threads": 2,
                       "env": {"A": "b"}}
    assert split_spec("/opt/abc") == ("/opt/abc", {})
    with pytest.raises(InputError, match="unknown oracle option 'pyhton'"):
        split_spec("/opt/abc?pyhton=/x")


def test_python_option_runs_the_tool_with_that_interpreter(own_python: Path) -> None:
    oracle = make_oracle(f"nnenum:{TOOLS / 'nnenum'}?python={own_python}", env={"FAKE_NNENUM": "holds"}, **FAST)
    result = oracle.check(tiny_instance(), 5)
    assert result.verdict is Verdict.UNSAT, result.reason
    assert result.log is not None and "tool python in use" in result.log.read_text()


def test_tool_file_beside_the_folder_names_the_python(tmp_path: Path, own_python: Path) -> None:
    folder = tmp_path / "nnenum"
    shutil.copytree(TOOLS / "nnenum", folder)
    (tmp_path / "vnnbridge-tool.toml").write_text(f'[nnenum]\npython = "{own_python}"\nargs = []\n'
                                                  '[abcrown]\npython = "/nowhere/python"\n')
    assert tool_options("nnenum", str(folder))["python"] == str(own_python)
    result = make_oracle(f"nnenum:{folder}", **FAST).check(tiny_instance(), 5)
    assert result.verdict is Verdict.UNSAT and "tool python in use" in result.log.read_text()


def test_tool_file_inside_the_folder_with_a_bad_key(tmp_path: Path) -> None:
    folder = tmp_path / "nnenum"
    shutil.copytree(TOOLS / "nnenum", folder)
    (folder / "vnnbridge-tool.toml").write_text('pyton = "/x"\n')
    with pytest.raises(InputError, match="unknown key 'pyton'") as exc:
        make_oracle(f"nnenum:{folder}")
    assert exc.value.path == str(folder / "vnnbridge-tool.toml")


def test_a_missing_python_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(OracleUnavailable, match="not an executable file"):
        make_oracle(f"abcrown:{TOOLS / 'abcrown'}?python={tmp_path / 'no-python'}")


def test_a_tool_that_cannot_start_says_why(broken_python: Path, cube_query) -> None:
    query: Query = cube_query("mnist", "0-1", 0.01)
    result = make_oracle(f"abcrown:{TOOLS / 'abcrown'}?python={broken_python}", **FAST).check(query, 5)
    assert result.verdict is Verdict.ERROR
    assert "exited with code 1" in result.reason and "No module named 'termcolor'" in result.reason


def test_query_prints_why_the_tool_cannot_start(broken_python: Path, cube_query,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    query: Query = cube_query("mnist", "0-1", 0.01)
    assert main(["query", "--onnx", str(query.onnx), "--vnnlib", str(query.vnnlib), "--oracle",
                 f"nnenum:{TOOLS / 'nnenum'}?python={broken_python}", "--timeout", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("error (") and "No module named 'termcolor'" in out


def test_check_reports_ready_and_not_ready(broken_python: Path, own_python: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["oracles", "--check", "embedded"]) == 0
    assert "embedded: ready (unsat on the tiny instance" in capsys.readouterr().out
    broken = f"nnenum:{TOOLS / 'nnenum'}?python={broken_python}"
    assert main(["oracles", "--check", broken, "--check", "embedded"]) == 1
    out = capsys.readouterr().out
    assert f"{broken}: not ready (error" in out and "  | ModuleNotFoundError: No module named 'termcolor'" in out
    assert main(["oracles", "--check", broken, "--json"]) == 1
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["ready"] is False and entry["tail"][-1].endswith("No module named 'termcolor'")


def test_check_catches_an_unsound_answer() -> None:
    check = check_oracle("fake:sat")
    assert not check.ready and check.verdict != "unsat"
    assert check_oracle("fake:unsat").ready
