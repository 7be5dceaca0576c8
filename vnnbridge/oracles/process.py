"""The one process runner for every external tool: argv list, own session, group kill, log file.

A tool runs as ``argv`` (never through a shell) in a new session, so it and every child it
starts share one process group that belongs to this call alone. stdin is ``/dev/null``;
stdout and stderr go, through a pipe, into one per-call log file (capped at ``LOG_CAP``
bytes, so a tool that floods its output cannot fill the disk). At ``timeout + slack`` the
group gets SIGTERM, after ``grace`` more seconds SIGKILL. When the tool exits by itself,
whatever it left behind in its group gets the same treatment, so no process of a call
outlives it. Only the group started here is ever signalled.

Every tool runs with ``PYTHONUNBUFFERED=1``: a Python tool killed at its deadline otherwise
leaves an empty log (block-buffered stdout), and the reason of its failure with it. A run
started inside `cancelled_by` ends early (same group kill) once that event is set; this is
how a portfolio stops the members that lost the race.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Mapping, Sequence

from vnnbridge.cache import cache_dir

__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_SLACK",
    "LOG_CAP",
    "THREAD_VARIABLES",
    "CompletedRun",
    "active_logs",
    "call_dir",
    "cancelled_by",
    "group_alive",
    "run_command",
    "thread_env",
]

_logger = logging.getLogger(__name__)

# Every tool overruns its timeout by its start-up time; the runner waits this long past it.
DEFAULT_SLACK = 5.0
# Seconds between SIGTERM and SIGKILL.
DEFAULT_GRACE = 2.0
# Bytes of tool output kept in a call's log; the rest is counted and dropped.
LOG_CAP = 16 * 1024 * 1024
# The variables that fix BLAS/OpenMP pools; one thread each by default, so parallel queries
# do not oversubscribe the cores.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

_counter = itertools.count()
# The cancel event of the runs started in this thread (set by `cancelled_by`).
_local = threading.local()
# Seconds between looks at the cancel event while a tool runs.
_POLL = 0.1
# The log files of the runs in progress (a watchdog that ends the process names them).
_active: set[Path] = set()
_active_lock = threading.Lock()


def active_logs() -> list[Path]:
    """The log files of the tool runs in progress in this process."""
    with _active_lock:
        return sorted(_active)


@dataclass(frozen=True)
class CompletedRun:
    """How one tool call ended: exit code (negative: killed by that signal), timing, log."""

    argv: tuple[str, ...]
    returncode: int
    timed_out: bool
    seconds: float
    log: Path
    dropped_bytes: int = 0
    survivors: bool = False  # some process of the group could not be killed (it left the group)
    cancelled: bool = False  # ended early because the caller's cancel event was set

    def output(self, limit: int = LOG_CAP) -> str:
        """The logged output (first ``limit`` bytes), decoded leniently."""
        try:
            with self.log.open("rb") as stream:
                return stream.read(limit).decode("utf-8", errors="replace")
        except OSError:
            return ""

    def tail(self, chars: int = 400) -> str:
        """The last ``chars`` characters of the log, on one line (for error reasons)."""
        try:
            size = self.log.stat().st_size
            with self.log.open("rb") as stream:
                stream.seek(max(0, size - 4 * chars))
                text = stream.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        return " ".join(text.split())[-chars:]


def thread_env(threads: int = 1) -> dict[str, str]:
    """The environment entries that pin BLAS/OpenMP pools to ``threads`` threads."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return {name: str(threads) for name in THREAD_VARIABLES}


@contextlib.contextmanager
def cancelled_by(event: threading.Event) -> Iterator[None]:
    """Runs started in this thread inside the block end (group kill) as soon as ``event`` is set."""
    previous = getattr(_local, "cancel", None)
    _local.cancel = event
    try:
        yield
    finally:
        _local.cancel = previous


def _wait(proc: subprocess.Popen[bytes], seconds: float, cancel: threading.Event | None) -> str:
    """Wait for the tool: ``"exited"``, ``"timeout"`` or ``"cancelled"``."""
    if cancel is None:
        try:
            proc.wait(timeout=seconds)
            return "exited"
        except subprocess.TimeoutExpired:
            return "timeout"
    end = time.monotonic() + seconds
    while True:
        if cancel.is_set():
            return "cancelled"
        left = end - time.monotonic()
        if left <= 0:
            return "timeout"
        try:
            proc.wait(timeout=min(_POLL, left))
            return "exited"
        except subprocess.TimeoutExpired:
            continue


def call_dir(kind: str, key: str) -> Path:
    """A fresh folder for one call under ``cache_dir('runs')``, named by ``kind``, ``key`` (a hash) and a serial."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    folder = cache_dir("runs") / f"{kind}-{key[:16]}-{stamp}-{os.getpid()}-{next(_counter)}"
    folder.mkdir(parents=True, exist_ok=False)
    return folder


def _live_members(pgid: int) -> list[int] | None:
    """PIDs of group ``pgid`` that are not zombies, from /proc (None where /proc is missing)."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        # Fields after the parenthesised command name: state, ppid, pgrp, ...
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def group_alive(pgid: int) -> bool:
    """Whether a live (non-zombie) process is left in process group ``pgid``.

    Zombies are dead already; their reaping is up to their parent (or init, which in a
    container may take a second), so they do not count.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the group exists but is no longer ours to signal
        return True
    members = _live_members(pgid)
    return True if members is None else bool(members)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    # The leader stays a zombie (and keeps the group alive) until reaped, so reap while waiting.
    end = time.monotonic() + seconds
    while True:
        proc.poll()
        if not group_alive(proc.pid):
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.02)


def _end_group(proc: subprocess.Popen[bytes], grace: float) -> bool:
    """SIGTERM the call's group, SIGKILL it after ``grace``; True when nothing of it is left."""
    proc.poll()
    if not group_alive(proc.pid):
        return True
    _signal_group(proc.pid, signal.SIGTERM)
    if _wait_group_gone(proc, grace):
        return True
    _signal_group(proc.pid, signal.SIGKILL)
    # Killed processes are reaped by init (or by us, for the leader) within moments.
    return _wait_group_gone(proc, 5.0)


def _copy_output(source: IO[bytes], sink: IO[bytes], cap: int, dropped: list[int]) -> None:
    kept = 0
    try:
        for chunk in iter(lambda: source.read(1 << 16), b""):
            room = cap - kept
            if room > 0:
                sink.write(chunk[:room])
                kept += min(room, len(chunk))
            if len(chunk) > room:
                dropped[0] += len(chunk) - max(room, 0)
    except (OSError, ValueError):  # the pipe was closed under us after a deadline
        pass


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """While a tool runs, SIGTERM to us unwinds (so its group is killed) instead of dying at once."""
    if threading.current_thread() is not threading.main_thread() or callable(signal.getsignal(signal.SIGTERM)):
        # Elsewhere signals never arrive; and a Python handler already installed (certify's, which
        # keeps a certified box) unwinds as well, so it stays in charge.
        yield
        return

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _limit_memory(pid: int, memory: int | None) -> None:
    # Set on the started child (not in a preexec hook, which is unsafe with threads); the
    # tool has only just exec'd, and everything it starts later inherits the limit.
    if memory is None:
        return
    import resource

    with contextlib.suppress(ProcessLookupError, PermissionError, ValueError, OSError):
        resource.prlimit(pid, resource.RLIMIT_AS, (memory, memory))


def run_command(argv: Sequence[str | os.PathLike[str]], *, timeout: float, log: Path,
                env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
                slack: float = DEFAULT_SLACK, grace: float = DEFAULT_GRACE, threads: int = 1,
                log_cap: int = LOG_CAP, memory: int | None = None) -> CompletedRun:
    """Run ``argv`` with a deadline of ``timeout + slack`` seconds; never raises for what the tool does.

    The environment is this process's, plus one thread per BLAS/OpenMP pool (``threads``),
    plus ``env`` (which wins). ``memory`` caps the tool's address space in bytes. Raises
    ``FileNotFoundError``/``PermissionError`` only when the program cannot be started at all.
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout!r}")
    args = tuple(os.fspath(a) for a in argv)
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **thread_env(threads), **(env or {})}
    log.parent.mkdir(parents=True, exist_ok=True)
    _log_argv(args, cwd)
    with _active_lock:
        _active.add(log)
    try:
        return _run(args, timeout, log, full_env, cwd, slack, grace, log_cap, memory)
    finally:
        with _active_lock:
            _active.discard(log)


def _run(args: tuple[str, ...], timeout: float, log: Path, full_env: dict[str, str],
         cwd: str | os.PathLike[str] | None, slack: float, grace: float, log_cap: int,
         memory: int | None) -> CompletedRun:
    start = time.perf_counter()
    dropped = [0]
    with log.open("wb") as sink, _terminate_as_exit():
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
                                start_new_session=True)
        pgid = proc.pid  # a new session makes the child the leader of its own group
        _limit_memory(pgid, memory)
        pipe = proc.stdout
        if pipe is None:
            raise RuntimeError("subprocess gave no stdout pipe")
        reader = threading.Thread(target=_copy_output, args=(pipe, sink, log_cap, dropped),
                                  name=f"log-{pgid}", daemon=True)
        reader.start()
        ending = "exited"
        try:
            ending = _wait(proc, timeout + slack, getattr(_local, "cancel", None))
        finally:
            # Also on KeyboardInterrupt: nothing we started may outlive the call.
            gone = _end_group(proc, grace)
            returncode = proc.wait()
            reader.join(timeout=grace + 1.0)
            if reader.is_alive():
                # A process that left our group still holds the pipe; the daemon reader is
                # abandoned (closing the pipe under a blocked read could hang this thread).
                _logger.warning("%s: output pipe still held by a process outside the group", args[0])
            else:
                with contextlib.suppress(OSError):
                    pipe.close()
    seconds = time.perf_counter() - start
    if dropped[0]:
        with log.open("ab") as sink:
            sink.write(f"\n[vnnbridge: {dropped[0]} further bytes of output dropped]\n".encode())
    if not gone:
        _logger.warning("%s: processes of group %d survived SIGKILL", args[0], pgid)
    return CompletedRun(args, returncode, ending == "timeout", seconds, log, dropped[0], not gone,
                        ending == "cancelled")


def _log_argv(args: tuple[str, ...], cwd: str | os.PathLike[str] | None) -> None:
    _logger.info("run: %s%s", shlex.join(args), f" (in {cwd})" if cwd else "")
