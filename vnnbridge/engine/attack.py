"""Falsification: projected sign-gradient descent inside a box towards an output polytope union.

The loss of an input is ``min over polytopes of max over rows (a·y - b)``; it is <= 0 exactly
at counterexamples. Gradients are back-propagated through the compiled `LayerNet` with numpy
(and torch only inside convolutions), a whole batch of restarts at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from vnnbridge.engine.graph import LayerNet

__all__ = ["Objective", "pgd", "start_points"]


@dataclass(eq=False)
class Objective:
    """Stacked polytope rows ``c @ y <= d``; ``group[r]`` is the polytope of row r."""

    c: np.ndarray
    d: np.ndarray
    starts: np.ndarray  # first row of each polytope (rows are grouped by polytope)

    @classmethod
    def from_polytopes(cls, polys: list[tuple[np.ndarray, np.ndarray]]) -> Objective:
        """Stack (a, b) pairs, one per polytope."""
        c = np.vstack([a for a, _ in polys])
        d = np.concatenate([b for _, b in polys])
        starts = np.cumsum([0] + [len(b) for _, b in polys[:-1]])
        return cls(c, d, starts.astype(np.intp))

    def values(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Loss per row of ``y`` and the row index that attains it."""
        v = y @ self.c.T - self.d  # (n, rows)
        per_poly = np.maximum.reduceat(v, self.starts, axis=1)  # (n, polys)
        best = np.argmin(per_poly, axis=1)
        loss = per_poly[np.arange(len(y)), best]
        # Within the chosen polytope the attaining row is its maximal one.
        ends = np.append(self.starts[1:], v.shape[1])
        rows = np.empty(len(y), dtype=np.intp)
        for i, p in enumerate(best):
            s, e = self.starts[p], ends[p]
            rows[i] = s + int(np.argmax(v[i, s:e]))
        return loss, rows


def _gradients(net: LayerNet, x: np.ndarray, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outputs at ``x`` and the gradient of ``coef[i] · y(x[i])`` for each row."""
    zs = net.pre_activations(x)
    g = coef
    for j in range(len(net.relus), -1, -1):
        g = net.affines[j].op.backward(g)
        if j == 0:
            break
        relu = net.relus[j - 1]
        g = g * np.where(relu.mask, zs[j - 1] > 0, True)
    return zs[-1], g


def pgd(net: LayerNet, obj: Objective, lo: np.ndarray, hi: np.ndarray, x0: np.ndarray,
        steps: int, rng: np.random.Generator, step0: float = 0.5, step_end: float = 0.005,
        stop_below: float = 0.0, deadline: float = np.inf) -> tuple[np.ndarray, float]:
    """The best point found from the starts ``x0`` (n, inputs) and its float64 loss."""
    x = np.clip(np.atleast_2d(x0), lo, hi)
    width = hi - lo
    best_x, best_v = x[0].copy(), np.inf
    for t in range(steps + 1):
        y = net.forward(x)
        loss, rows = obj.values(y)
        i = int(np.argmin(loss))
        if loss[i] < best_v:
            best_v, best_x = float(loss[i]), x[i].copy()
        if best_v < stop_below or t == steps or time.perf_counter() > deadline:
            break
        _, g = _gradients(net, x, obj.c[rows])
        frac = step0 * (step_end / step0) ** (t / max(1, steps - 1))
        x = np.clip(x - frac * width * np.sign(g), lo, hi)
    return best_x, best_v


def start_points(lo: np.ndarray, hi: np.ndarray, n: int, rng: np.random.Generator,
           centre: np.ndarray | None = None) -> np.ndarray:
    """``n`` starting points: the centre (or the given point) first, then uniform random points."""
    c = (lo + hi) / 2.0 if centre is None else centre
    if n <= 1:
        return c[None, :]
    rand = lo + rng.random((n - 1, lo.size)) * (hi - lo)
    return np.vstack([c[None, :], rand])
