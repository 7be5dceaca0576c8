"""The process runner: argv without a shell, explicit environment, per-call log, group kill."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import pytest

from vnnbridge.oracles.process import LOG_CAP, call_dir, group_alive, run_command, thread_env


def _dead(pid: int) -> bool:
    """Gone, or a zombie waiting for init to reap it (dead all the same)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2:].split()[0] in ("Z", "X")


def test_argv_is_not_a_shell(tmp_path: Path) -> None:
    odd = "it's \"quoted\" $(echo no) ; & spaced"
    run = run_command([sys.executable, "-c", "import sys; print(sys.argv[1])", odd],
                      timeout=30, log=tmp_path / "a log.txt")
    assert run.returncode == 0 and not run.timed_out
    assert run.output() == odd + "\n"


def test_environment_pins_threads_and_can_be_set(tmp_path: Path) -> None:
    code = "import os; print(os.environ['OMP_NUM_THREADS'], os.environ['MKL_NUM_THREADS'], os.environ['X'])"
    run = run_command([sys.executable, "-c", code], timeout=30, log=tmp_path / "log", env={"X": "y"})
    assert run.output().split() == ["1", "1", "y"]
    run = run_command([sys.executable, "-c", code], timeout=30, log=tmp_path / "log", threads=3,
                      env={"X": "z", "MKL_NUM_THREADS": "2"})
    assert run.output().split() == ["3", "2", "z"]
    assert "OMP_NUM_THREADS" not in os.environ or os.environ["OMP_NUM_THREADS"] != "3"  # ours untouched
    with pytest.raises(ValueError):
        thread_env(0)


def test_stdin_is_closed_and_stderr_is_logged(tmp_path: Path) -> None:
    code = "import sys; print(repr(sys.stdin.read())); print('to stderr', file=sys.stderr)"
    run = run_command([sys.executable, "-c", code], timeout=30, log=tmp_path / "log")
    assert run.output().splitlines() == ["''", "to stderr"]


def test_exit_code_and_signal(tmp_path: Path) -> None:
    assert run_command(["bash", "-c", "exit 4"], timeout=30, log=tmp_path / "log").returncode == 4
    assert run_command(["bash", "-c", "kill -TERM $$"], timeout=30, log=tmp_path / "log").returncode == -15


def test_deadline_kills_the_whole_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = (f"trap '' TERM; echo $$ >> '{pids}'; "
              f"(trap '' TERM; echo $BASHPID >> '{pids}'; sleep 300) & sleep 300")
    start = time.monotonic()
    run = run_command(["bash", "-c", script], timeout=0.5, log=tmp_path / "log", slack=0.5, grace=0.5)
    assert run.timed_out and run.returncode == -9 and not run.survivors
    assert time.monotonic() - start < 0.5 + 0.5 + 0.5 + 5
    leader = int(pids.read_text().split()[0])
    assert not group_alive(leader)
    assert all(_dead(pid) for pid in map(int, pids.read_text().split()))


def test_leftovers_die_when_the_tool_exits(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    run = run_command(["bash", "-c", f"sleep 300 & echo $! > '{pid_file}'"], timeout=30, log=tmp_path / "log")
    assert run.returncode == 0 and not run.timed_out
    assert _dead(int(pid_file.read_text()))


def test_flood_is_capped(tmp_path: Path) -> None:
    run = run_command(["bash", "-c", f"head -c {LOG_CAP + 5_000_000} /dev/zero"], timeout=60,
                      log=tmp_path / "log")
    assert run.returncode == 0 and run.dropped_bytes == 5_000_000
    assert run.log.stat().st_size < LOG_CAP + 200


def test_argv_is_logged_at_info(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="vnnbridge.oracles.process"):
        run_command(["true", "a b"], timeout=30, log=tmp_path / "log", cwd=tmp_path)
    assert "run: true 'a b'" in caplog.text


def test_missing_program_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        run_command([str(tmp_path / "no-such-tool")], timeout=30, log=tmp_path / "log")


def test_call_dirs_are_fresh_and_in_the_cache() -> None:
    a, b = call_dir("t", "abcdef"), call_dir("t", "abcdef")
    assert a != b and a.is_dir() and a.parent.name == "runs"
    assert Path(os.environ["VNNBRIDGE_CACHE"]) in a.parents


def test_memory_cap_makes_a_greedy_tool_fail(tmp_path: Path) -> None:
    code = "b = bytearray(2 * 1024**3); print('allocated')"
    run = run_command([sys.executable, "-c", code], timeout=30, log=tmp_path / "log", memory=1024**3)
    assert run.returncode != 0 and "MemoryError" in run.output()


def test_sigterm_to_us_still_kills_the_tool(tmp_path: Path) -> None:
    # A vnnbridge process that is itself terminated mid-call must not leave the tool running.
    pid_file = tmp_path / "tool.pid"
    code = (
        "import os, signal, threading, sys\n"
        "from pathlib import Path\n"
        "from vnnbridge.oracles.process import run_command\n"
        "threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()\n"
        f"run_command(['bash', '-c', 'echo $$ > \"$0\"; sleep 300', {str(pid_file)!r}], timeout=60, "
        f"log=Path({str(tmp_path / 'log')!r}), grace=0.5)\n"
    )
    import subprocess

    done = subprocess.run([sys.executable, "-c", code], timeout=30)
    assert done.returncode == 128 + 15
    assert _dead(int(pid_file.read_text()))
