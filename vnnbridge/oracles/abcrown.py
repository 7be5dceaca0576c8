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
from pathlib import Path
from typing import Any, Mapping

from vnnbridge.errors import OracleUnavailable
from vnnbridge.oracles.base import Query
from vnnbridge.oracles.external import ExternalOracle, Invocation
from vnnbridge.oracles.script import git_head

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


class AbcrownOracle(ExternalOracle):
    """Box queries answered by alpha-beta-CROWN's ``abcrown.py`` from a checkout."""

    name = "abcrown"
    kind = "abcrown"
    tool = "abcrown.py"
    default_slack = _SLACK

    def __init__(self, folder: str | os.PathLike[str], *, device: str = "cpu",
                 extra: Mapping[str, Mapping[str, Any]] | None = None, **settings: Any) -> None:
        super().__init__(**settings)
        root = Path(folder).expanduser().resolve()
        candidates = [root / "complete_verifier" / "abcrown.py", root / "abcrown.py"]
        script = next((c for c in candidates if c.is_file()), None)
        if script is None:
            raise OracleUnavailable(f"no complete_verifier/abcrown.py in {root} (an alpha-beta-CROWN checkout)")
        self.root, self.script = root, script
        self.device = device
        # The settings file's ``config`` table first, then what the caller gave.
        self.extra: dict[str, dict[str, Any]] = {k: dict(v) for k, v in self.config.items()}
        for section, values in (extra or {}).items():
            self.extra.setdefault(section, {}).update(values)

    def version(self) -> str:
        """The checkout's git commit (12 hex digits), or empty."""
        return git_head(self.root)

    def invocation(self, query: Query, timeout: float, folder: Path, results: Path) -> Invocation:
        """Write the config into the call folder and run abcrown.py on it."""
        cex, cfg = folder / "cex.txt", folder / "config.yaml"
        cfg.write_text(json.dumps(config(query.onnx, query.vnnlib, timeout, results, cex, self.device,
                                         self.extra), indent=1))
        # abcrown imports its modules as top-level ones, and auto_LiRPA from the checkout root.
        paths = [str(self.script.parent), str(self.root), os.environ.get("PYTHONPATH", "")]
        env = {"PYTHONPATH": os.pathsep.join(p for p in paths if p)}
        return Invocation([self.interpreter, str(self.script), "--config", str(cfg)], env=env)
