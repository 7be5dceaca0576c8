"""The ``vnncomp:DIR`` oracle: any tool folder with the VNN-COMP scripts.

This is how alpha-beta-CROWN, nnenum, NeuralSAT or PyRAT plug in. Like the competition
harness, vnnbridge runs ``prepare_instance.sh v1 CATEGORY ONNX VNNLIB`` once per network
and category, then ``run_instance.sh v1 CATEGORY ONNX VNNLIB RESULTS TIMEOUT`` per query
with the results file pre-filled with ``no_result_in_file``. The file is read through
`vnnbridge.vnncomp.results` (one table of words, 2021's ``holds``/``violated`` included);
a non-zero exit, a missing word or a word outside the table is an ERROR verdict with the
reason, and a ``sat`` is only believed once its witness passes `vnnbridge.oracles.witness`.
A ``python=`` setting puts that interpreter's folder first on the scripts' PATH, so a
``python`` they call is the tool's own.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from vnnbridge.cache import atomic_write, cache_dir, sha256_bytes, sha256_file
from vnnbridge.errors import OracleUnavailable
from vnnbridge.oracles.base import OracleResult, Query, Verdict
from vnnbridge.oracles.external import ExternalOracle, Invocation, result_from_file
from vnnbridge.oracles.process import call_dir, run_command

__all__ = ["DEFAULT_CATEGORY", "PREPARE_TIMEOUT", "ScriptOracle", "git_head", "result_from_file"]

log = logging.getLogger(__name__)

# The benchmark category vnnbridge names its own queries with.
DEFAULT_CATEGORY = "vnnbridge"
# Seconds a tool may spend in prepare_instance.sh (converting or loading a network).
PREPARE_TIMEOUT = 600.0
# Tools start slowly (torch, CUDA probing): seconds allowed past the timeout they were given.
_SLACK = 15.0


def git_head(folder: Path) -> str:
    """The commit a tool checkout is at (12 hex digits), or empty when it cannot be read."""
    head = folder / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (folder / ".git" / ref[5:]).read_text().strip()[:12]
        return ref[:12]
    except OSError:
        return ""


def _command(script: Path) -> list[str]:
    """Run a script directly when it is executable (its shebang decides), else with bash."""
    return [str(script)] if os.access(script, os.X_OK) else ["bash", str(script)]


class ScriptOracle(ExternalOracle):
    """Box queries answered by a tool folder holding ``run_instance.sh`` (and ``prepare_instance.sh``)."""

    kind = "vnncomp"
    tool = "run_instance.sh"
    default_slack = _SLACK

    def __init__(self, folder: str | os.PathLike[str], *, category: str = DEFAULT_CATEGORY,
                 prepare_timeout: float = PREPARE_TIMEOUT, name: str | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.folder = Path(folder).expanduser().resolve()
        self.run_script = self.folder / "run_instance.sh"
        if not self.run_script.is_file():
            raise OracleUnavailable(f"no run_instance.sh in {self.folder}")
        prepare = self.folder / "prepare_instance.sh"
        self.prepare_script = prepare if prepare.is_file() else None
        self.category, self.prepare_timeout = category, prepare_timeout
        self.name = name or f"{self.kind}:{self.folder.name}"
        self._prepared: set[str] = set()

    def version(self) -> str:
        """The folder's ``version.txt`` (first line), else a hash of its scripts."""
        stamp = self.folder / "version.txt"
        if stamp.is_file():
            lines = stamp.read_text(errors="replace").strip().splitlines()
            return lines[0].strip() if lines else ""
        digest = hashlib.sha256()
        for script in (self.prepare_script, self.run_script):
            if script is not None:
                digest.update(script.read_bytes())
        return f"scripts-{digest.hexdigest()[:12]}"

    def _path_env(self) -> dict[str, str]:
        if self.python is None:
            return {}
        return {"PATH": os.pathsep.join([str(Path(self.python).parent), os.environ.get("PATH", "")])}

    def prepare(self, onnx: Path, vnnlib: Path) -> str | None:
        """Run ``prepare_instance.sh`` once per (folder, category, network); the failure reason, or None."""
        if self.prepare_script is None:
            return None
        key = sha256_bytes(f"{self.folder}|{self.category}|{sha256_file(onnx)}|{self.version()}".encode())
        marker = cache_dir("prepared") / key
        if key in self._prepared or marker.is_file():
            return None
        folder = call_dir("prepare", key)
        try:
            run = run_command([*_command(self.prepare_script), "v1", self.category, str(onnx), str(vnnlib)],
                              timeout=self.prepare_timeout, log=folder / "prepare.log", cwd=self.folder,
                              env={**self._path_env(), **self.env}, slack=self.slack, grace=self.grace,
                              threads=self.threads)
        except OSError as exc:
            return f"cannot start prepare_instance.sh: {exc.strerror or exc}"
        if run.timed_out:
            return f"prepare_instance.sh ran past {self.prepare_timeout:g} s; log: {run.log}"
        if run.returncode != 0:
            return f"prepare_instance.sh exited with code {run.returncode}: {run.tail()}"
        self._prepared.add(key)
        atomic_write(marker, f"{self.folder}\n{self.category}\n{onnx}\n")
        return None

    def invocation(self, query: Query, timeout: float, folder: Path, results: Path) -> Invocation:
        """``run_instance.sh v1 CATEGORY ONNX VNNLIB RESULTS TIMEOUT`` in the tool folder."""
        return Invocation([*_command(self.run_script), "v1", self.category, str(query.onnx),
                           str(query.vnnlib), str(results), f"{timeout:g}"], cwd=self.folder,
                          env=self._path_env())

    def check(self, query: Query, timeout: float) -> OracleResult:
        """Prepare (once), then the shared run loop."""
        failure = self.prepare(query.onnx, query.vnnlib)
        if failure is not None:
            return OracleResult(Verdict.ERROR, self.name, self.version(), reason=failure)
        return super().check(query, timeout)
