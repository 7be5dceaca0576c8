"""Top-down and bisection searches over cubes, and the paper's top-down box search.

All work on the delta grid of `Grid` (a cube of step k has every face k*delta off x, clipped
to the domain). A non-answer (timeout, unknown, error) at step k counts as "k is not
certified" but gives no witness: the cube searches then treat k - 1 as the new upper end, so
their result stays sound and the result says whether its upper bound is exact (a validated
witness one step beyond r*) or only an oracle's silence.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from vnnbridge.oracles.base import Verdict
from vnnbridge.search.base import Call, Grid, Prober, SearchResult, Witness, WitnessKind

__all__ = ["bisect_family", "edge_steps", "find_apothem", "search_box_topdown", "search_cube_bisect",
           "search_cube_topdown", "search_edge", "search_fill"]

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
    k = g.diameter
    witness: Witness | None = None
    while k >= 0:
        res, call = prober.robust(g.cube(k), f"cube-topdown k={k}")
        if res.verdict is Verdict.UNSAT:
            return _cube_result(prober, "cube-topdown", k, call, k + 1, witness)
        if res.verdict is Verdict.SAT and res.witness is not None:  # the prober never lets a bare sat through
            witness = Witness(WitnessKind.CUBE, res.witness, call=call.index)
            k = min(k, g.cube_include(res.witness)) - 1
        else:
            k -= 1
    return _cube_result(prober, "cube-topdown", -1, None, 0, witness)


def search_cube_bisect(prober: Prober, start: SearchResult | None = None) -> SearchResult:
    """The paper's dichotomic cube search: plain bisection on the grid, witnesses unused."""
    g = prober.grid
    lo, hi = -1, g.diameter
    proof: Call | None = None
    witness: Witness | None = None
    while lo < hi:
        k = (lo + hi + 1) // 2
        res, call = prober.robust(g.cube(k), f"cube-bisect k={k}")
        if res.verdict is Verdict.UNSAT:
            lo, proof = k, call
        else:
            if (res.verdict is Verdict.SAT and res.witness is not None
                    and (witness is None or g.cube_include(res.witness) <= k)):
                witness = Witness(WitnessKind.CUBE, res.witness, call=call.index)
            hi = k - 1
    return _cube_result(prober, "cube-bisect", lo, proof, lo + 1, witness)


def bisect_family(prober: Prober, family: Callable[[int], np.ndarray], top: int, note: str,
                  base: Call | None = None) -> tuple[int, Call | None, Witness | None]:
    """The largest t in [0, top] whose box ``family(t)`` (nested, growing in t) the oracle certifies.

    Bisection gives the lower bound; each validated witness w gives the upper bound
    "t_w - 1", where t_w is the smallest t whose box holds w, after w is first pulled into
    smaller boxes of the family with onnxruntime alone (``clip(w, family(t))``, every candidate
    re-run). The first two such bounds are tried at once (a pulled-in witness is often tight,
    and then one ``unsat`` ends the search), so the search takes at most about
    log2(top) + 3 calls. When ``base`` is given, ``family(0)`` is already certified by that call.
    Returns (t*, the unsat call at t*, the witness nearest beyond it); t* = -1 when nothing holds.
    """
    g, inst = prober.grid, prober.instance
    lo, hi, proof = (0, top, base) if base is not None else (-1, top, None)
    witness: Witness | None = None

    def holds(t: int, point: np.ndarray) -> bool:
        return g.box(family(t)).contains(point)

    def smallest_holding(point: np.ndarray, upto: int) -> int:
        a, b = -1, upto  # family(b) holds the point
        while b - a > 1:
            mid = (a + b) // 2
            if holds(mid, point):
                b = mid
            else:
                a = mid
        return b

    guesses, guess = 2, False  # the first witnesses are often tight: try their bound at once
    while lo < hi:
        k = hi if guess else (lo + hi + 1) // 2
        guess = False
        res, call = prober.robust(g.box(family(k)), f"{note} t={k}")
        found = None
        if res.verdict not in (Verdict.UNSAT, Verdict.SAT):
            # No answer is no bound, but a counterexample still is one, and the oracle's own attack
            # may have been short (measured: mnistconvSmallRELUDiffAI image 0 at 41/255, a timeout
            # of the embedded oracle at 20 s, broken by the falsifier in 1 s).
            found = prober.attack(g.box(family(k)), call.seconds)
        if res.verdict is Verdict.UNSAT:
            lo, proof = k, call
        elif res.verdict is Verdict.SAT or found is not None:
            point = np.asarray(res.witness if found is None else found, dtype=np.float64)
            a, b = max(lo, -1), smallest_holding(point, k)
            while b - a > 1:  # pull the witness in with onnxruntime alone
                mid = (a + b) // 2
                cand = g.box(family(mid)).clip(point)
                if inst.misclassified(cand):
                    b, point = mid, cand
                else:
                    a = mid
            if witness is None or b <= smallest_holding(witness.point, top):
                witness = Witness(WitnessKind.CUBE, point, call=call.index if found is None else None)
            if b - 1 < k - 1 and guesses > 0 and b - 1 > lo:
                guesses, guess = guesses - 1, True
            hi = min(hi, b - 1, k - 1)
        else:
            hi = k - 1
    return lo, proof, witness


def find_apothem(prober: Prober, start: SearchResult | None = None) -> SearchResult:
    """The grid-exact optimal cube: bisection for the lower bound, witness distance for the upper.

    Each validated witness is first pulled towards x with onnxruntime alone, so one sat
    answer usually cuts the interval far below its midpoint.
    """
    g = prober.grid
    best, proof, witness = bisect_family(prober, g.cube_steps, g.diameter, "apothem")
    return _cube_result(prober, "apothem", best, proof, best + 1, witness)


def edge_steps(grid: Grid, t: int) -> np.ndarray:
    """Steps of the box of side 2t steps around x, shifted (not clipped) into the domain where it can be.

    A coordinate whose lower face reaches the boundary after r < t steps gets its upper face
    moved 2t - r steps instead, so every edge is 2t steps long (or the whole domain).
    """
    lo_reach, hi_reach = grid.reach[0::2], grid.reach[1::2]
    lower = np.minimum(np.maximum(t, 2 * t - hi_reach), lo_reach)
    upper = np.minimum(np.maximum(t, 2 * t - lo_reach), hi_reach)
    out = np.empty(2 * grid.n, dtype=np.int64)
    out[0::2], out[1::2] = lower, upper
    return out


def search_edge(prober: Prober, start: SearchResult | None = None) -> SearchResult:
    """The largest box of side 2t steps around x, shifted into the domain: the best minimum edge of its kind.

    A cube gives coordinates pinned to the domain boundary (a black pixel) only half the edge
    of the others; this family gives every coordinate the same edge 2t, at the price of a
    smaller apothem than the optimal cube's. Same bisection as ``apothem``.
    """
    g = prober.grid
    best, proof, witness = bisect_family(prober, lambda t: edge_steps(g, t), g.diameter, "edge")
    certified = proof is not None and best >= 0
    steps = edge_steps(g, best) if certified else np.zeros(2 * g.n, dtype=np.int64)
    return SearchResult("edge", certified, g.box(steps), steps, proof if certified else None)


def _free_faces(prober: Prober, start: SearchResult) -> np.ndarray:
    """Faces that the start's nearest cube witness does not cross (all faces when there is none)."""
    g = prober.grid
    cube = [w for w in start.witnesses if w.kind == WitnessKind.CUBE]
    free = np.ones(2 * g.n, dtype=bool)
    if cube:
        w = cube[-1].point
        for f in range(2 * g.n):
            i, side = divmod(f, 2)
            pos = g.position(f, int(start.steps[f]))
            free[f] = not ((w[i] > pos) if side else (w[i] < pos))
    return free


def search_fill(prober: Prober, start: SearchResult | None = None) -> SearchResult:
    """Ours: move every face the cube witness does not cross t steps further, t as large as certified.

    The witness one step beyond the optimal cube shows the direction the network is weak in;
    the faces on the other sides can usually move a lot together. One bisection on t, so a
    handful of calls, before the face-by-face ``grow``.
    """
    g = prober.grid
    if start is None or not start.certified:
        start = find_apothem(prober)
        if not start.certified:
            return start
    base, free = start.steps.copy(), _free_faces(prober, start)

    def family(t: int) -> np.ndarray:
        return np.minimum(np.where(free, base + t, base), g.reach)

    best, proof, _ = bisect_family(prober, family, g.diameter, "fill", base=start.proof)
    steps = family(best)
    return SearchResult("fill", True, g.box(steps), steps, proof if best > 0 else start.proof,
                        cube_steps=start.cube_steps, cube_upper=start.cube_upper, exact=start.exact,
                        witnesses=[w for w in start.witnesses if w.kind == WitnessKind.CUBE])


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
            last_witness = Witness(WitnessKind.CUBE, w, call=call.index)
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
