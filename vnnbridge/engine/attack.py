"""Falsification: projected sign-gradient descent inside a box towards an output polytope union.

The loss of an input is ``min over polytopes of max over rows (a·y - b)``; it is <= 0 exactly
at counterexamples. Gradients are back-propagated through the compiled `LayerNet` with numpy
(and torch only inside convolutions), a whole batch of restarts at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vnnbridge.engine.graph import LayerNet

if TYPE_CHECKING:
    from vnnbridge.vnnlib.model import Spec

__all__ = ["AIM", "Objective", "falsify", "pgd", "start_points"]

# Aim this far past the boundary, so that float32 (onnxruntime) agrees with float64.
AIM = 3e-5


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


def falsify(onnx: str | Path, lower: np.ndarray | None = None, upper: np.ndarray | None = None, *,
            label: int | None = None, spec: Spec | None = None, budget: float = 5.0, seed: int = 0,
            restarts: int = 8, steps: int = 40, repeat: bool = True) -> np.ndarray | None:
    """A validated counterexample, or None: the one falsifier of vnnbridge.

    Either ``spec`` (every case of it, its own boxes) or a box ``lower``/``upper`` with the
    robustness question for ``label`` (any other logit >= the label's counts, ties included).
    Per case: PGD from the box centre and ``restarts - 1`` random points for ``steps`` steps, all
    polytopes of the case at once; with ``repeat``, fresh random restarts until ``budget`` seconds
    are spent, else one round. A point only counts when onnxruntime (float32, as deployed) confirms
    it violates the property; one that violates in float64 only is pushed a little further in first.
    Callers: cross-examination (`vnnbridge.search.crossexam.Falsifier`), witness recovery
    (`vnnbridge.oracles.witness.search_witness`) and `check`.
    """
    from vnnbridge.engine.graph import load_layer_net
    from vnnbridge.network import load_network
    from vnnbridge.vnnlib.model import robustness_spec

    net = load_layer_net(onnx)
    runtime = load_network(onnx)
    if spec is None:
        if lower is None or upper is None or label is None:
            raise ValueError("falsify needs a spec, or a box (lower, upper) and a label")
        from vnnbridge.box import Box

        spec = robustness_spec(Box.from_arrays(np.asarray(lower, float), np.asarray(upper, float)), int(label),
                               net.outputs)
    rng = np.random.default_rng(seed)
    deadline = time.perf_counter() + max(0.0, float(budget))
    cases = []
    for case in spec.cases:
        polys = [p.arrays(spec.outputs) for p in case.polytopes]
        # An empty disjunction never holds; an empty conjunction holds everywhere (the centre shows it).
        if polys and all(len(b) for _, b in polys):
            lo, hi = case.box.arrays()
            cases.append((lo, hi, Objective.from_polytopes(polys)))
    first = True
    while cases and (first or (repeat and time.perf_counter() < deadline)):
        for lo, hi, obj in cases:
            x0 = start_points(lo, hi, restarts, rng, centre=None if first else lo + rng.random(lo.size) * (hi - lo))
            x, v = pgd(net, obj, lo, hi, x0, steps, rng, stop_below=-AIM, deadline=deadline)
            if v <= 0.0 and not spec.violated_by(x, runtime.run(x)):
                # On the boundary in float64 only: push further inside, in small steps.
                x, v = pgd(net, obj, lo, hi, x[None, :], steps, rng, 1e-3, 1e-6, stop_below=-10 * AIM,
                           deadline=deadline + 1.0)  # a confirmed near-miss deserves its polish
            if v <= 0.0 and spec.violated_by(x, runtime.run(x)):
                return x
            if time.perf_counter() > deadline:
                return None
        first = False
    return None
