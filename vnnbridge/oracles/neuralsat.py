"""The ``neuralsat`` oracle: NeuralSAT (PyPI ``neuralsat``, 0.2.17) through its ``main.py``.

NeuralSAT installs its code as a top-level package named ``src`` and pulls gurobipy,
torchvision and torchaudio, so it is not a vnnbridge dependency: install it into its own
environment and name that environment's Python (``neuralsat:/path/to/python``), or a folder
holding its ``main.py`` (``neuralsat:/path/to/neuralsat/src``, run with this Python). Plain
``neuralsat`` looks for the package in this Python. Runs ``main.py --net ONNX --spec VNNLIB
--timeout T --device cpu --result_file F --export_cex``; its words are ``sat``, ``unsat``,
``unknown`` and ``timeout``, and a ``sat`` comes with the competition's counterexample.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping

from vnnbridge.errors import OracleUnavailable
from vnnbridge.oracles.base import OracleResult, Query, Verdict
from vnnbridge.oracles.process import DEFAULT_GRACE, call_dir, run_command
from vnnbridge.oracles.script import result_from_file

__all__ = ["VERDICTS", "NeuralsatOracle"]

VERDICTS: dict[str, Verdict] = {
    "sat": Verdict.SAT,
    "unsat": Verdict.UNSAT,
    "unknown": Verdict.UNKNOWN,
    "timeout": Verdict.TIMEOUT,
    "error": Verdict.ERROR,
}
_SLACK = 20.0
_LOCATE = ("import importlib.metadata as m; d = m.distribution('neuralsat'); "
           "print(d.version); print(d.locate_file('src/main.py'))")


class NeuralsatOracle:
    """Box queries answered by NeuralSAT's ``main.py``."""

    name = "neuralsat"

    def __init__(self, where: str | os.PathLike[str] | None = None, *, device: str = "cpu",
                 batch: int | None = None, slack: float = _SLACK, grace: float = DEFAULT_GRACE,
                 threads: int = 1, env: Mapping[str, str] | None = None) -> None:
        self.device, self.batch = device, batch
        self.slack, self.grace, self.threads, self.env = slack, grace, threads, dict(env or {})
        path = Path(where).expanduser() if where else None
        if path is not None and path.is_dir():
            self.python, self.main, self._version = sys.executable, path / "main.py", ""
        else:
            self.python = str(path) if path is not None else sys.executable
            self._version, self.main = self._locate()
        if not self.main.is_file():
            raise OracleUnavailable(f"NeuralSAT's main.py is not at {self.main}")

    def _locate(self) -> tuple[str, Path]:
        log = call_dir("neuralsat-locate", "0") / "log.txt"
        try:
            run = run_command([self.python, "-c", _LOCATE], timeout=60, log=log, slack=1.0)
        except OSError as exc:
            raise OracleUnavailable(f"cannot run {self.python}: {exc.strerror or exc}") from None
        lines = run.output().strip().splitlines()
        if run.returncode != 0 or len(lines) < 2:
            raise OracleUnavailable(f"neuralsat is not installed for {self.python} (pip install neuralsat "
                                    f"into its own environment, then name it neuralsat:/that/python)")
        return lines[-2].strip(), Path(lines[-1].strip())

    def version(self) -> str:
        """The installed neuralsat version (empty for a source folder)."""
        return self._version

    def check(self, query: Query, timeout: float) -> OracleResult:
        """Run NeuralSAT once and read its result file."""
        from vnnbridge.vnncomp.results import NO_RESULT

        folder = call_dir(self.name, query.sha256)
        results = folder / "results.txt"
        results.write_text(NO_RESULT + "\n")
        argv = [self.python, str(self.main), "--net", str(query.onnx), "--spec", str(query.vnnlib),
                "--timeout", f"{timeout:g}", "--device", self.device, "--result_file", str(results),
                "--export_cex", "--verbosity", "0"]
        if self.batch is not None:
            argv += ["--batch", str(self.batch)]
        run = run_command(argv, timeout=timeout, log=folder / "neuralsat.log", cwd=folder, env=self.env,
                          slack=self.slack, grace=self.grace, threads=self.threads)
        return result_from_file(run, results, oracle=self.name, version=self._version, words=VERDICTS,
                                tool="NeuralSAT", slack=self.slack)
