"""Cross-examination: an oracle's `unsat` is only as good as the attempts to break it.

Verifiers are wrong sometimes (Marabou 2.0.0 answers `unsat` on Fashion-MNIST boxes that hold
onnxruntime-confirmed counterexamples). Before a search relies on an `unsat`, a `Falsifier`
independent of that oracle tries to break it inside the queried box: vnnbridge's one falsifier
(`vnnbridge.engine.attack.falsify`, a batched projected-gradient attack) on all polytopes of the
query at once (for a robustness query: every other class's margin), from the box centre and
random restarts. A point it finds counts only after onnxruntime confirms it, so a refutation is
never the falsifier's word alone.

What it does not do: a failed attack proves nothing. The falsifier can only *refute*; it
never upgrades an answer to `unsat`. It needs a network the engine compiles (`ModelError`
otherwise: the caller records that the answer went unexamined).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from vnnbridge.errors import InputError
from vnnbridge.oracles.base import Query
from vnnbridge.search.names import DEFAULT_CROSS_EXAMINE

__all__ = ["DEFAULT_STEPS", "Falsifier", "counterexample_margin"]

log = logging.getLogger(__name__)

DEFAULT_STEPS = DEFAULT_CROSS_EXAMINE


@dataclass(frozen=True)
class Falsifier:
    """The embedded attack as an independent check: finds onnxruntime-confirmed counterexamples or nothing."""

    steps: int = DEFAULT_STEPS
    restarts: int = 8
    seed: int = 1  # not the embedded oracle's seed 0: a second, different look

    def __post_init__(self) -> None:
        if self.steps < 1 or self.restarts < 1:
            raise InputError("--cross-examine needs a positive number of attack steps (or none)")

    @property
    def name(self) -> str:
        """How the certificate names this check."""
        return f"attack (pgd {self.restarts}x{self.steps})"

    def supports(self, onnx: str) -> bool:
        """Whether the engine compiles the network (the attack needs its gradients)."""
        from vnnbridge.engine.graph import load_layer_net
        from vnnbridge.errors import ModelError

        try:
            load_layer_net(onnx)
        except ModelError as exc:
            log.info("cross-examination unavailable for %s: %s", onnx, exc)
            return False
        return True

    def refute(self, query: Query, seconds: float = 10.0, repeat: bool = False) -> np.ndarray | None:
        """A validated counterexample to ``query`` (inside one of its boxes), or None: one round of
        restarts, or with ``repeat`` fresh rounds until ``seconds`` are spent."""
        from vnnbridge.engine.attack import falsify

        return falsify(query.onnx, spec=query.spec, budget=seconds, seed=self.seed, restarts=self.restarts,
                       steps=self.steps, repeat=repeat)


def counterexample_margin(y: np.ndarray, label: int) -> float:
    """How clearly a point is misclassified: the best other logit minus the label's (>= 0 at a counterexample)."""
    v = np.asarray(y, dtype=np.float64).ravel()
    return float(np.max(np.delete(v, label)) - v[label])
