"""Measures of a certified box: apothem, edges, log-volume and description complexity.

The apothem is min over coordinates of min(x_i - lb_i, ub_i - x_i) where faces lying on the
domain boundary do not count (a black pixel at 0 cannot move further down, and that says
nothing about robustness). A box all of whose faces lie on the boundary is the whole domain;
its apothem is the domain's l-inf radius around x (the smallest cube that covers D).
"""

from __future__ import annotations

import math

import numpy as np

from vnnbridge.box import Box

__all__ = ["apothem", "box_metrics"]


def apothem(box: Box, x: np.ndarray, domain: Box) -> float:
    """The box's apothem around ``x`` in ``domain`` (faces on the domain boundary do not count)."""
    lo, hi = box.arrays()
    dlo, dhi = domain.arrays()
    v = np.asarray(x, dtype=np.float64).ravel()
    slack = np.concatenate([np.where(lo > dlo, v - lo, np.inf), np.where(hi < dhi, hi - v, np.inf)])
    best = float(slack.min()) if slack.size else math.inf
    if math.isinf(best):
        return float(max(np.max(v - dlo), np.max(dhi - v))) if v.size else 0.0
    return best


def box_metrics(box: Box, x: np.ndarray, domain: Box) -> dict[str, float | int | None]:
    """apothem, min/avg/max edge, log-volume (None when an edge is 0) and complexity (faces moved off x)."""
    lo, hi = box.arrays()
    v = np.asarray(x, dtype=np.float64).ravel()
    edges = hi - lo
    log_volume = float(np.sum(np.log(edges))) if np.all(edges > 0) else None
    return {
        "apothem": apothem(box, v, domain),
        "min_edge": float(edges.min()),
        "avg_edge": float(edges.mean()),
        "max_edge": float(edges.max()),
        "log_volume": log_volume,
        "complexity": int(np.count_nonzero(lo < v) + np.count_nonzero(hi > v)),
    }
