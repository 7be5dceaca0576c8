"""Get ready for one instance without analysing it: check inputs, warm caches, end leftover runs.

The harness calls ``prepare_instance.sh v1 CATEGORY ONNX VNNLIB`` before each instance, and a
non-zero exit skips the whole category. So problems with one instance are logged, not fatal: the
run that follows answers `error` for it. Caches are keyed by content hash and live in the cache
directory, never beside the benchmark files. The only processes ended are those a previous
``vnncomp-run`` of the same scope started (they carry the `RUN_MARK` environment variable with
that scope), ended by their id.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from vnnbridge.errors import VnnbridgeError
from vnnbridge.vnncomp.config import OracleChoice
from vnnbridge.vnncomp.run import find_marked, network_paths, run_scope

__all__ = ["Preparation", "end_leftover_runs", "marked_processes", "prepare_instance"]

log = logging.getLogger(__name__)


@dataclass
class Preparation:
    """What preparing found: problems (logged, not fatal) and processes ended."""

    problems: list[str] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the instance looked answerable."""
        return not self.problems


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            with open(f"/proc/{pid}/stat", "rb") as stream:
                # The parent pid is the 2nd field after the ")" that closes the command name.
                pid = int(stream.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def marked_processes(scope: str | None = None) -> list[int]:
    """Ids of live processes (readable by this user) marked by a run of ``scope``, except this one's line."""
    return find_marked(f"{scope or run_scope()}:", exact=False, skip=_ancestors())


def end_leftover_runs(scope: str | None = None) -> list[int]:
    """SIGKILL every process a previous `vnncomp-run` of ``scope`` left behind; returns their ids."""
    ended = []
    for pid in marked_processes(scope):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
        ended.append(pid)
    if ended:
        log.warning("ended %d process(es) left over from an earlier run: %s", len(ended),
                    " ".join(map(str, ended)))
    return ended


def prepare_instance(category: str, onnx: str, vnnlib: str | Path, choice: OracleChoice,
                     cleanup: bool = True) -> Preparation:
    """Check the instance's files, warm the caches the run will use, and end leftover runs."""
    from vnnbridge.network import load_network
    from vnnbridge.oracles.base import Query
    from vnnbridge.vnnlib.parser import parse_file

    result = Preparation()
    if cleanup:
        result.ended = end_leftover_runs()
    try:
        networks = network_paths(onnx)
        if len(networks) != 1:
            raise VnnbridgeError(f"{len(networks)} networks: vnnbridge answers single-network queries "
                                 "only; the run will answer error")
        net = load_network(networks[0][1])
        path = Path(vnnlib)
        if not path.is_file():
            raise VnnbridgeError("no such VNN-LIB file", path=str(path))
        spec = parse_file(path)
        if (spec.inputs, spec.outputs) != (net.inputs, net.outputs):
            raise VnnbridgeError(f"the property has {spec.inputs} inputs and {spec.outputs} outputs, the "
                                 f"network {net.inputs} and {net.outputs}", path=str(path))
        query = Query.build(net.path, spec)  # the canonical query file, cached by hash
        name = choice.oracle_for(category)
        from vnnbridge.oracles.registry import make_oracle

        oracle = make_oracle(name)
        warm = getattr(getattr(oracle, "inner", oracle), "prepare", None)
        if callable(warm):
            # An oracle's own preparation (a tool folder's prepare_instance.sh, run once per
            # network and cached); it returns the reason when it failed.
            failure = warm(net.path, query.vnnlib)
            if failure:
                raise VnnbridgeError(f"oracle {name}: {failure}")
    except VnnbridgeError as exc:
        result.problems.append(exc.located())
        log.warning("%s", exc.located())
    except Exception as exc:  # prepare must exit 0 (a failure skips the whole category): log it
        result.problems.append(f"{type(exc).__name__}: {exc}")
        log.exception("unexpected failure while preparing")
    return result
