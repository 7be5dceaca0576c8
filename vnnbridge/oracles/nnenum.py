"""The ``nnenum:DIR`` oracle: Stanley Bak's nnenum from a checkout, through its command line.

Runs ``python -m nnenum.nnenum ONNX VNNLIB TIMEOUT RESULTS PROCESSES SETTINGS`` with the
checkout's ``src`` on PYTHONPATH. Older nnenum writes ``holds``/``violated`` and no witness;
newer writes ``unsat``/``sat`` plus the counterexample. A ``sat`` without a witness cannot be
validated and so becomes ERROR ("sat without a witness") by the shared rule: with such an
nnenum, only its ``unsat`` answers are usable.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping

from vnnbridge.errors import OracleUnavailable
from vnnbridge.oracles.base import OracleResult, Query, Verdict
from vnnbridge.oracles.process import DEFAULT_GRACE, call_dir, run_command
from vnnbridge.oracles.script import git_head, result_from_file

__all__ = ["VERDICTS", "NnenumOracle"]

# nnenum's result words, old and new; "none" is what it writes when nothing was decided.
VERDICTS: dict[str, Verdict] = {
    "unsat": Verdict.UNSAT,
    "holds": Verdict.UNSAT,
    "safe": Verdict.UNSAT,
    "sat": Verdict.SAT,
    "violated": Verdict.SAT,
    "timeout": Verdict.TIMEOUT,
    "error": Verdict.ERROR,
    "unknown": Verdict.UNKNOWN,
    "none": Verdict.UNKNOWN,
}
_SLACK = 10.0


class NnenumOracle:
    """Box queries answered by nnenum's command line from a checkout."""

    name = "nnenum"

    def __init__(self, folder: str | os.PathLike[str], *, python: str | None = None, processes: int = 1,
                 settings: str = "auto", slack: float = _SLACK, grace: float = DEFAULT_GRACE,
                 env: Mapping[str, str] | None = None) -> None:
        root = Path(folder).expanduser().resolve()
        if not (root / "src" / "nnenum" / "nnenum.py").is_file():
            raise OracleUnavailable(f"no src/nnenum/nnenum.py in {root} (an nnenum checkout)")
        self.root, self.python = root, python or sys.executable
        self.processes, self.settings = processes, settings
        self.slack, self.grace, self.env = slack, grace, dict(env or {})

    def version(self) -> str:
        """The checkout's git commit (12 hex digits), or empty."""
        return git_head(self.root)

    def check(self, query: Query, timeout: float) -> OracleResult:
        """Run nnenum once and read its result file."""
        from vnnbridge.vnncomp.results import NO_RESULT

        folder = call_dir(self.name, query.sha256)
        results = folder / "results.txt"
        results.write_text(NO_RESULT + "\n")
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(self.root / "src"),
                                                           os.environ.get("PYTHONPATH", "")])), **self.env}
        argv = [self.python, "-m", "nnenum.nnenum", str(query.onnx), str(query.vnnlib), f"{timeout:g}",
                str(results), str(self.processes), self.settings]
        run = run_command(argv, timeout=timeout, log=folder / "nnenum.log", cwd=folder, env=env,
                          slack=self.slack, grace=self.grace, threads=1)
        return result_from_file(run, results, oracle=self.name, version=self.version(), words=VERDICTS,
                                tool="nnenum", slack=self.slack)
