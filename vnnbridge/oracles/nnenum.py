"""The ``nnenum:DIR`` oracle: Stanley Bak's nnenum from a checkout, through its command line.

Runs ``python -m nnenum.nnenum ONNX VNNLIB TIMEOUT RESULTS PROCESSES SETTINGS`` with the
checkout's ``src`` on PYTHONPATH, with the Python of nnenum's own environment
(``nnenum:DIR?python=/venv/bin/python`` or ``vnnbridge-tool.toml``). nnenum writes
``holds``/``violated`` and, at commit b18238f, no witness for ``violated``: the witness-
validating wrapper of the registry then looks for one itself (`vnnbridge.oracles.witness`),
so a true ``violated`` still becomes a validated ``sat`` ("witness by vnnbridge").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vnnbridge.errors import OracleUnavailable
from vnnbridge.oracles.base import Query, Verdict
from vnnbridge.oracles.external import ExternalOracle, Invocation
from vnnbridge.oracles.script import git_head

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


class NnenumOracle(ExternalOracle):
    """Box queries answered by nnenum's command line from a checkout."""

    name = "nnenum"
    kind = "nnenum"
    tool = "nnenum"
    words = VERDICTS
    default_slack = _SLACK

    def __init__(self, folder: str | os.PathLike[str], *, processes: int = 1, settings: str = "auto",
                 **options: Any) -> None:
        super().__init__(**options)
        root = Path(folder).expanduser().resolve()
        if not (root / "src" / "nnenum" / "nnenum.py").is_file():
            raise OracleUnavailable(f"no src/nnenum/nnenum.py in {root} (an nnenum checkout)")
        self.root = root
        self.processes, self.settings = processes, settings

    def version(self) -> str:
        """The checkout's git commit (12 hex digits), or empty."""
        return git_head(self.root)

    def invocation(self, query: Query, timeout: float, folder: Path, results: Path) -> Invocation:
        """``python -m nnenum.nnenum ONNX VNNLIB TIMEOUT RESULTS PROCESSES SETTINGS``."""
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(self.root / "src"),
                                                           os.environ.get("PYTHONPATH", "")]))}
        argv = [self.interpreter, "-m", "nnenum.nnenum", str(query.onnx), str(query.vnnlib), f"{timeout:g}",
                str(results), str(self.processes), self.settings]
        return Invocation(argv, env=env)
