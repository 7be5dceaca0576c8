"""The competition's judgement of one answer: witness checks with the scorer's tolerances, and points.

The VNN-COMP scorer re-runs every counterexample with onnxruntime. The written outputs must match
that run within a relative error of ``SCORER_RTOL`` (``numpy.allclose`` with ``SCORER_ATOL`` as the absolute part), and the input must lie in the property's box
within ``SCORER_ATOL``. The property must then be violated by the recomputed output, again within
``SCORER_ATOL``. A `sat` without such a witness is wrong and costs ``WRONG_POINTS``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vnnbridge.network import Network
from vnnbridge.vnnlib.model import Spec

__all__ = ["CORRECT_POINTS", "SCORER_ATOL", "SCORER_RTOL", "WRONG_POINTS", "WitnessCheck",
           "check_counterexample"]

SCORER_ATOL = 1e-4
SCORER_RTOL = 1e-3
CORRECT_POINTS = 10
WRONG_POINTS = -150


@dataclass(frozen=True)
class WitnessCheck:
    """Whether a counterexample passes the scorer's checks, and why not when it fails."""

    ok: bool
    reason: str = ""
    outputs: tuple[float, ...] = ()


def check_counterexample(net: Network, spec: Spec, x: np.ndarray, y: np.ndarray | None = None) -> WitnessCheck:
    """Judge ``x`` (and the written outputs ``y`` when given) as the VNN-COMP scorer does."""
    xv = np.asarray(x, dtype=np.float64).ravel()
    if xv.size != spec.inputs:
        return WitnessCheck(False, f"witness has {xv.size} inputs, the property {spec.inputs}")
    if not np.all(np.isfinite(xv)):
        return WitnessCheck(False, "witness has non-finite inputs")
    if not any(case.box.contains(xv, atol=SCORER_ATOL) for case in spec.cases):
        return WitnessCheck(False, f"witness lies outside every input box (tolerance {SCORER_ATOL:g})")
    actual = net.run(xv)
    if y is not None:
        yv = np.asarray(y, dtype=np.float64).ravel()
        if yv.size != actual.size:
            return WitnessCheck(False, f"witness has {yv.size} outputs, the network {actual.size}")
        if not np.allclose(yv, actual, rtol=SCORER_RTOL, atol=SCORER_ATOL):
            worst = float(np.max(np.abs(yv - actual) / np.maximum(np.abs(actual), 1e-12)))
            return WitnessCheck(False, f"written outputs differ from onnxruntime (relative error {worst:.3g})",
                                tuple(float(v) for v in actual))
    if not spec.violated_by(xv, actual, atol=SCORER_ATOL):
        return WitnessCheck(False, "the onnxruntime output at the witness does not violate the property",
                            tuple(float(v) for v in actual))
    return WitnessCheck(True, "", tuple(float(v) for v in actual))
