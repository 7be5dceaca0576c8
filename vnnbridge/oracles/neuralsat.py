"""The ``neuralsat`` oracle: NeuralSAT (PyPI ``neuralsat``, 0.2.17) through its ``main.py``.

NeuralSAT installs its code as a top-level package named ``src`` and pulls gurobipy,
torchvision and torchaudio, so it is not a vnnbridge dependency: install it into its own
environment and name that environment's Python (``neuralsat:/path/to/python`` or
``neuralsat?python=/path/to/python``), or a folder holding its ``main.py``
(``neuralsat:/path/to/neuralsat/src``, run with ``python=`` when given, else this Python).
Plain ``neuralsat`` looks for the package in this Python. Runs ``main.py --net ONNX --spec VNNLIB
--timeout T --device cpu --result_file F --export_cex``; its words are ``sat``, ``unsat``,
``unknown`` and ``timeout``, and a ``sat`` comes with the competition's counterexample.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vnnbridge.errors import OracleUnavailable
from vnnbridge.oracles.base import Query, Verdict
from vnnbridge.oracles.external import ExternalOracle, Invocation
from vnnbridge.oracles.process import call_dir, run_command

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


class NeuralsatOracle(ExternalOracle):
    """Box queries answered by NeuralSAT's ``main.py``."""

    name = "neuralsat"
    kind = "neuralsat"
    tool = "NeuralSAT"
    words = VERDICTS
    default_slack = _SLACK

    def __init__(self, where: str | os.PathLike[str] | None = None, *, device: str = "cpu",
                 batch: int | None = None, **options: Any) -> None:
        path = Path(where).expanduser() if where else None
        if path is not None and not path.is_dir() and not options.get("python"):
            options["python"] = str(path)  # neuralsat:/venv/bin/python
        super().__init__(**options)
        self.device, self.batch = device, batch
        if path is not None and path.is_dir():
            self.main, self._version = path / "main.py", ""
        else:
            self._version, self.main = self._locate()
        if not self.main.is_file():
            raise OracleUnavailable(f"NeuralSAT's main.py is not at {self.main}")

    def _locate(self) -> tuple[str, Path]:
        log = call_dir("neuralsat-locate", "0") / "log.txt"
        try:
            run = run_command([self.interpreter, "-c", _LOCATE], timeout=60, log=log, slack=1.0)
        except OSError as exc:
            raise OracleUnavailable(f"cannot run {self.interpreter}: {exc.strerror or exc}") from None
        lines = run.output().strip().splitlines()
        if run.returncode != 0 or len(lines) < 2:
            raise OracleUnavailable(f"neuralsat is not installed for {self.interpreter} (pip install neuralsat "
                                    f"into its own environment, then name it neuralsat:/that/python)")
        return lines[-2].strip(), Path(lines[-1].strip())

    def version(self) -> str:
        """The installed neuralsat version (empty for a source folder)."""
        return self._version

    def invocation(self, query: Query, timeout: float, folder: Path, results: Path) -> Invocation:
        """``main.py --net ONNX --spec VNNLIB --timeout T --device D --result_file F --export_cex``."""
        argv = [self.interpreter, str(self.main), "--net", str(query.onnx), "--spec", str(query.vnnlib),
                "--timeout", f"{timeout:g}", "--device", self.device, "--result_file", str(results),
                "--export_cex", "--verbosity", "0"]
        if self.batch is not None:
            argv += ["--batch", str(self.batch)]
        return Invocation(argv)
