"""The ``abcrown:DIR`` oracle: alpha-beta-CROWN from a checkout, run through its ``abcrown.py``.

vnnbridge writes the YAML config itself (model, VNN-LIB path, timeout, device, result and
counterexample files) and runs ``complete_verifier/abcrown.py --config FILE`` in a per-call
folder, never the checkout's ``vnncomp_scripts``: their ``prepare_instance.sh`` runs
``killall python`` and their ``run_instance.sh`` exits 0 without a result on CPU. In this
single-VNN-LIB mode abcrown writes ``sat``/``unsat``/``timeout`` (its ``unknown`` becomes
``timeout``) and, for ``sat``, appends the counterexample file in the competition format.
The config is JSON text, which every YAML reader accepts.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping

from vnnbridge.errors import OracleUnavailable
from vnnbridge.oracles.base import OracleResult, Query
from vnnbridge.oracles.process import DEFAULT_GRACE, call_dir, run_command
from vnnbridge.oracles.script import git_head, result_from_file

__all__ = ["AbcrownOracle", "config"]

# torch start-up, model loading and CUDA probing come on top of the bab timeout.
_SLACK = 30.0


def config(onnx: Path, vnnlib: Path, timeout: float, results: Path, cex: Path, device: str,
           extra: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """The abcrown config for one query (``extra`` sections are merged in, key by key)."""
    cfg: dict[str, dict[str, Any]] = {
        "general": {"device": device, "results_file": str(results), "save_adv_example": True},
        "model": {"onnx_path": str(onnx)},
        "specification": {"vnnlib_path": str(vnnlib)},
        "attack": {"cex_path": str(cex)},
        "bab": {"timeout": float(timeout)},
    }
    for section, values in (extra or {}).items():
        cfg.setdefault(section, {}).update(values)
    return cfg




class AbcrownOracle:
    """Box queries answered by alpha-beta-CROWN's ``abcrown.py`` from a checkout."""

    name = "abcrown"

    def __init__(self, folder: str | os.PathLike[str], *, python: str | None = None, device: str = "cpu",
                 extra: Mapping[str, Mapping[str, Any]] | None = None, slack: float = _SLACK,
                 grace: float = DEFAULT_GRACE, threads: int = 1, env: Mapping[str, str] | None = None) -> None:
        root = Path(folder).expanduser().resolve()
        candidates = [root / "complete_verifier" / "abcrown.py", root / "abcrown.py"]
        script = next((c for c in candidates if c.is_file()), None)
        if script is None:
            raise OracleUnavailable(f"no complete_verifier/abcrown.py in {root} (an alpha-beta-CROWN checkout)")
        self.root, self.script = root, script
        self.python = python or sys.executable
        self.device, self.extra = device, extra
        self.slack, self.grace, self.threads, self.env = slack, grace, threads, dict(env or {})

    def version(self) -> str:
        """The checkout's git commit (12 hex digits), or empty."""
        return git_head(self.root)

    def check(self, query: Query, timeout: float) -> OracleResult:
        """Write the config, run abcrown.py, read its result file."""
        from vnnbridge.vnncomp.results import NO_RESULT

        folder = call_dir(self.name, query.sha256)
        results, cex, cfg = folder / "results.txt", folder / "cex.txt", folder / "config.yaml"
        results.write_text(NO_RESULT + "\n")
        cfg.write_text(json.dumps(config(query.onnx, query.vnnlib, timeout, results, cex, self.device,
                                         self.extra), indent=1))
        # abcrown imports its modules as top-level ones, and auto_LiRPA from the checkout root.
        paths = [str(self.script.parent), str(self.root), os.environ.get("PYTHONPATH", "")]
        env = {"PYTHONPATH": os.pathsep.join(p for p in paths if p), **self.env}
        run = run_command([self.python, str(self.script), "--config", str(cfg)], timeout=timeout,
                          log=folder / "abcrown.log", cwd=folder, env=env, slack=self.slack,
                          grace=self.grace, threads=self.threads)
        return result_from_file(run, results, oracle=self.name, version=self.version(), tool="abcrown.py",
                                slack=self.slack)
