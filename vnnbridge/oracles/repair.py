"""Local witness repair: a few projected-gradient steps inside the box, for tools that print few decimals.

Marabou prints its witnesses with 6 decimals, and they sit on the decision boundary, so
after rounding onnxruntime often finds the property met by 1e-6 instead of violated. The
repair moves the point a little *inside the same box* along the sign of the gradient of the
violated rows and re-checks every candidate exactly with onnxruntime; it never widens the
box and never relaxes the property, so a repaired witness is as trustworthy as any other.
Gradients are finite differences through onnxruntime, which works for every ONNX model the
validator can run (no torch conversion needed).
"""

from __future__ import annotations

import logging

import numpy as np

from vnnbridge.network import Network
from vnnbridge.oracles.base import Query
from vnnbridge.vnnlib.model import Case, Polytope

__all__ = ["REPAIR_ROUNDS", "REPAIR_STEPS", "repair_witness"]

log = logging.getLogger(__name__)

# Gradient evaluations per polytope (each costs one onnxruntime run per input).
REPAIR_ROUNDS = 3
# Step lengths tried along each gradient sign, as fractions of the widest box edge; the
# smallest comes first because a rounded witness is usually within 1e-6 of a real one.
REPAIR_STEPS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
# Finite-difference step (fraction of each coordinate's box width; onnxruntime is float32).
_FD_STEP = 1e-3


def _excess(poly: Polytope, y: np.ndarray) -> float:
    """max_k (a_k . y - b_k): <= 0 exactly when the output meets the polytope."""
    a, b = poly.arrays(y.size)
    return float(np.max(a @ y - b))


def _gradient(poly: Polytope, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, net: Network) -> np.ndarray:
    """Finite-difference gradient of the polytope's worst row at ``x`` (steps stay in the box)."""
    a, b = poly.arrays(net.outputs)
    y0 = net.run(x)
    row = int(np.argmax(a @ y0 - b))
    f0 = float(a[row] @ y0)
    grad = np.zeros_like(x)
    width = hi - lo
    for i in np.flatnonzero(width > 0):
        h = _FD_STEP * width[i]
        # Step towards the roomier side so the probe stays inside the box.
        sign = 1.0 if hi[i] - x[i] >= x[i] - lo[i] else -1.0
        probe = x.copy()
        probe[i] += sign * h
        grad[i] = (float(a[row] @ net.run(probe)) - f0) / (sign * h)
    return grad


def repair_witness(query: Query, case: Case, x: np.ndarray, net: Network) -> np.ndarray | None:
    """A point of ``case.box`` near ``x`` whose onnxruntime output violates the property, or None."""
    lo, hi = case.box.arrays()
    scale = float(np.max(hi - lo)) if lo.size else 0.0
    if scale <= 0.0:
        return None  # a point box leaves nothing to search
    start = case.box.clip(x)
    y = net.run(start)
    # Closest polytopes first: the one the tool most likely meant.
    order = sorted(case.polytopes, key=lambda p: _excess(p, y))
    for poly in order:
        point = start
        for _ in range(REPAIR_ROUNDS):
            direction = -np.sign(_gradient(poly, point, lo, hi, net))
            if not np.any(direction):
                break
            best, best_excess = None, _excess(poly, net.run(point))
            for step in REPAIR_STEPS:
                candidate = np.clip(point + step * scale * direction, lo, hi)
                if query.spec.violated_by(candidate, net.run(candidate)):
                    log.debug("witness repaired with a step of %g", step * scale)
                    return candidate
                excess = _excess(poly, net.run(candidate))
                if excess < best_excess:
                    best, best_excess = candidate, excess
            if best is None:
                break
            point = best  # no violation yet: continue from the most promising step
    return None
