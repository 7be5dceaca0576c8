"""Fault injection through fake VNN-COMP tool folders run by ``vnncomp:DIR`` (tests/data/fake_tools)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from vnnbridge.errors import OracleUnavailable
from vnnbridge.network import load_network
from vnnbridge.oracles.base import Query, Verdict
from vnnbridge.oracles.fake import sample_witness
from vnnbridge.oracles.process import LOG_CAP
from vnnbridge.oracles.registry import make_oracle
from vnnbridge.vnncomp.results import format_result

TOOLS = Path(__file__).resolve().parents[1] / "data" / "fake_tools"
TIMEOUT = 2.0
# Deadline = timeout + slack, then grace until SIGKILL: well inside timeout + 5 s.
FAST = dict(slack=1.0, grace=1.0)


def _process_state(pid: int) -> str | None:
    """The /proc state letter of ``pid`` (None when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()[0]


def _alive(pid: int) -> bool:
    return _process_state(pid) not in (None, "Z", "X")


def _survivors(marker: Path) -> list[int]:
    """Live processes whose command line names ``marker`` (the query file: unique per test)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(marker) in cmdline and _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def _check(tool: str, query: Query, **options: object):
    oracle = make_oracle(f"vnncomp:{TOOLS / tool}", **{**FAST, **options})
    start = time.monotonic()
    result = oracle.check(query, TIMEOUT)
    elapsed = time.monotonic() - start
    assert elapsed < TIMEOUT + 5, f"{tool} took {elapsed:.1f} s"
    assert not _survivors(query.vnnlib)
    return result


@pytest.fixture
def robust(cube_query) -> Query:
    return cube_query("mnist", "0-1", 0.01)


@pytest.mark.parametrize(("tool", "reason"), [
    ("crash", "exited with code -11"),
    ("nonzero", "exited with code 3"),
    ("garbage", "unknown result word 'probably'"),
    ("empty", "the result file is empty"),
    ("silent", "the tool wrote no result"),
    ("flood", "the tool wrote no result"),
    ("bad_prepare", "prepare_instance.sh exited with code 1"),
])
def test_fault_is_an_error_with_its_reason(tool: str, reason: str, robust: Query) -> None:
    result = _check(tool, robust)
    assert result.verdict is Verdict.ERROR
    assert reason in result.reason
    assert result.witness is None


def test_flood_is_capped_in_the_log(robust: Query) -> None:
    result = _check("flood", robust)
    assert result.log is not None and result.log.stat().st_size < LOG_CAP + 1000
    assert "further bytes of output dropped" in result.log.read_text()[-200:]


def test_hang_is_a_timeout(robust: Query) -> None:
    result = _check("hang", robust)
    assert result.verdict is Verdict.TIMEOUT


def test_stubborn_group_is_killed(robust: Query) -> None:
    result = _check("stubborn", robust)
    assert result.verdict is Verdict.TIMEOUT
    assert result.log is not None
    pids = [int(p) for p in (result.log.parent / "pids").read_text().split()]
    assert len(pids) == 3  # the script, its child, its grandchild: all ignored SIGTERM
    assert not any(_alive(pid) for pid in pids)


def test_orphan_left_behind_is_killed(robust: Query) -> None:
    result = _check("orphan", robust)
    assert result.verdict is Verdict.UNSAT
    assert result.log is not None
    assert not _alive(int((result.log.parent / "pids").read_text()))


def test_2021_holds_is_unsat_and_prepare_runs_once(robust: Query, cube_query, tmp_path: Path) -> None:
    counter = tmp_path / "prepared.txt"
    oracle = make_oracle(f"vnncomp:{TOOLS / 'holds'}", env={"FAKE_PREPARE_LOG": str(counter)}, **FAST)
    assert oracle.check(robust, TIMEOUT).verdict is Verdict.UNSAT
    assert oracle.check(cube_query("mnist", "0-1", 0.02), TIMEOUT).verdict is Verdict.UNSAT
    assert counter.read_text().splitlines() == [f"vnnbridge {robust.onnx}"]


def _answer(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "answer.txt"
    path.write_text(text)
    return {"FAKE_ANSWER": str(path)}


@pytest.mark.parametrize("word", ["sat", "violated"])
def test_real_witness_is_validated_sat(cube_query, tmp_path: Path, word: str) -> None:
    query = cube_query("mnist", "1-1", 0.3)
    x = sample_witness(query)
    assert x is not None
    text = format_result(Verdict.SAT, x, load_network(query.onnx).run(x)).replace("sat", word, 1)
    result = _check("answer", query, env=_answer(tmp_path, text))
    assert result.verdict is Verdict.SAT, result.reason
    assert np.array_equal(result.witness, x)  # read back exactly


@pytest.mark.parametrize(("where", "reason"), [("centre", "does not violate"), ("outside", "outside every")])
def test_bogus_witness_is_an_error(robust: Query, tmp_path: Path, where: str, reason: str) -> None:
    box = robust.spec.single_box
    x = box.center() if where == "centre" else box.center() + 0.5
    text = format_result(Verdict.SAT, x, np.zeros(10))
    result = _check("answer", robust, env=_answer(tmp_path, text))
    assert result.verdict is Verdict.ERROR
    assert "bogus witness" in result.reason and reason in result.reason


def test_sat_without_counterexample_on_a_robust_box_is_unknown(robust: Query, tmp_path: Path) -> None:
    # vnnbridge searches for the missing witness, finds none (the box is robust): not a sat.
    result = _check("answer", robust, env=_answer(tmp_path, "sat\n"))
    assert result.verdict is Verdict.UNKNOWN and "without a witness" in result.reason


def test_paths_with_spaces_and_quotes(cube_query, tmp_path: Path) -> None:
    folder = tmp_path / "tool with 'quotes' & \"spaces\""
    shutil.copytree(TOOLS / "answer", folder)
    query = cube_query("mnist", "0-1", 0.01)
    answer = tmp_path / "an answer; with $(no) expansion.txt"
    answer.write_text("unsat\n")
    result = make_oracle(f"vnncomp:{folder}", env={"FAKE_ANSWER": str(answer)}, **FAST).check(query, TIMEOUT)
    assert result.verdict is Verdict.UNSAT, result.reason


def test_folder_without_scripts_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(OracleUnavailable, match="no run_instance.sh"):
        make_oracle(f"vnncomp:{tmp_path}")


@pytest.mark.parametrize(("image", "radius", "verdict"), [("1-1", 0.2, Verdict.SAT), ("0-1", 0.02, Verdict.UNSAT)])
def test_vnnbridge_itself_as_a_tool_folder(cube_query, image: str, radius: float, verdict: Verdict) -> None:
    # The repository's own harness scripts, run the way vnnbridge runs any competition tool.
    root = Path(__file__).resolve().parents[2]
    query = cube_query("mnist", image, radius)
    result = make_oracle(f"vnncomp:{root}", env={"VNNBRIDGE_ORACLE": "embedded"}).check(query, 30)
    assert result.verdict is verdict, result.reason
    if verdict is Verdict.SAT:
        assert query.spec.violated_by(result.witness, load_network(query.onnx).run(result.witness))
