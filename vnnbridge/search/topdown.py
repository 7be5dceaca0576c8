"""Top-down and bisection searches over cubes, and the paper's top-down box search.

All work on the delta grid of `Grid` (a cube of step k has every face k*delta off x, clipped
to the domain). A non-answer (timeout, unknown, error) at step k counts as "k is not
certified" but gives no witness: the cube searches then treat k - 1 as the new upper end, so
their result stays sound and the result says whether its upper bound is exact (a validated
witness one step beyond r*) or only an oracle's silence.
"""

from __future__ import annotations

import logging

import numpy as np

from vnnbridge.oracles.base import Verdict
from vnnbridge.search.base import Call, Prober, SearchResult, Witness

__all__ = ["find_apothem", "search_box_topdown", "search_cube_bisect", "search_cube_topdown"]

log = logging.getLogger(__name__)


def _cube_result(prober: Prober, method: str, best: int, proof: Call | None, upper: int,
                 witness: Witness | None) -> SearchResult:
    g = prober.grid
    certified = proof is not None and best >= 0
    steps = g.cube_steps(best) if certified else np.zeros(2 * g.n, dtype=np.int64)
    exact = certified and witness is not None and g.cube_include(witness.point) == best + 1
    if not certified and witness is not None and g.cube_include(witness.point) == 0:
        exact = True  # x itself is misclassified: nothing can be certified
    res = SearchResult(method, certified, g.box(steps), steps, proof if certified else None,
                       cube_steps=best if certified else None, cube_upper=upper, exact=exact)
    if witness is not None:
        res.witnesses.append(witness)
    if certified and best >= g.diameter:
        res.exact = True  # the whole domain is certified
    return res


def search_cube_topdown(prober: Prober, start: SearchResult | None = None) -> SearchResult:
    """The paper's Cyclic-TDS: r from the diameter down; after a witness w, r <- ||w - x|| - delta."""
    g = prober.grid
    k, witness = g.diameter, None
    while k >= 0:
        res, call = prober.robust(g.cube(k), f"cube-topdown k={k}")
        if res.verdict is Verdict.UNSAT:
            return _cube_result(prober, "cube-topdown", k, call, k + 1, witness)
        if res.verdict is Verdict.SAT:
            witness = Witness("cube", res.witness, call=call.index)
            k = min(k, g.cube_include(res.witness)) - 1
        else:
            k -= 1
    return _cube_result(prober, "cube-topdown", -1, None, 0, witness)


def search_cube_bisect(prober: Prober, start: SearchResult | None = None) -> SearchResult:
    """The paper's dichotomic cube search: plain bisection on the grid, witnesses unused."""
    g = prober.grid
    lo, hi, proof, witness = -1, g.diameter, None, None
    while lo < hi:
        k = (lo + hi + 1) // 2
        res, call = prober.robust(g.cube(k), f"cube-bisect k={k}")
        if res.verdict is Verdict.UNSAT:
            lo, proof = k, call
        else:
            if res.verdict is Verdict.SAT and (witness is None or g.cube_include(res.witness) <= k):
                witness = Witness("cube", res.witness, call=call.index)
            hi = k - 1
    return _cube_result(prober, "cube-bisect", lo, proof, lo + 1, witness)


def find_apothem(prober: Prober, start: SearchResult | None = None) -> SearchResult:
    """The grid-exact optimal cube: bisection for the lower bound, witness distance for the upper.

    Each validated witness is first pulled towards x with onnxruntime alone
    (`Prober.shrink_cube`), so one sat answer usually cuts the interval far below its midpoint.
    """
    g = prober.grid
    lo, hi, proof, witness = -1, g.diameter, None, None
    while lo < hi:
        k = (lo + hi + 1) // 2
        res, call = prober.robust(g.cube(k), f"apothem k={k}")
        if res.verdict is Verdict.UNSAT:
            lo, proof = k, call
        elif res.verdict is Verdict.SAT:
            point = prober.shrink_cube(res.witness)
            reach = g.cube_include(point)
            if witness is None or reach <= g.cube_include(witness.point):
                witness = Witness("cube", point, call=call.index)
            hi = min(hi, reach - 1, k - 1)
        else:
            hi = k - 1
    return _cube_result(prober, "apothem", lo, proof, lo + 1, witness)


def search_box_topdown(prober: Prober, start: SearchResult | None = None) -> SearchResult:
    """The paper's TDS: from the whole domain, cut the face at the witness's farthest coordinate.

    The cut face moves to the last grid step that excludes the witness. A non-answer gives no
    witness; then every face with the largest step moves in by one step (a cube-like shrink).
    """
    g, inst = prober.grid, prober.instance
    steps = g.reach.copy()
    last_witness: Witness | None = None
    while True:
        res, call = prober.robust(g.box(steps), f"box-topdown open={int(np.count_nonzero(steps))}")
        if res.verdict is Verdict.UNSAT:
            return SearchResult("box-topdown", True, g.box(steps), steps, call)
        if res.verdict is Verdict.SAT:
            w = np.asarray(res.witness, dtype=np.float64)
            gap = np.abs(w - inst.x)
            i = int(np.argmax(gap))
            if gap[i] == 0:
                break  # the witness is x itself
            face = 2 * i + (1 if w[i] > inst.x[i] else 0)
            steps[face] = min(steps[face], g.include(face, float(w[i]))) - 1
            last_witness = Witness("cube", w, call=call.index)
        else:
            top = steps.max()
            if top == 0:
                break
            steps[steps == top] -= 1
        if steps.min() < 0:
            break
    zero = np.zeros(2 * g.n, dtype=np.int64)
    result = SearchResult("box-topdown", False, g.box(zero), zero)
    if last_witness is not None:
        result.witnesses.append(last_witness)
    return result
