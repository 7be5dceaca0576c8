"""Dual certifications: a box J that holds every point of the domain classified as the label.

Every certification B lies inside J, so apothem(B) <= apothem(J) bounds what any search can
reach. A face f of J at step k is proven by an ``unsat`` class-membership query on the slab of
the domain beyond it (the closed slab from step k to the boundary): no class point lies there.
The boundary step needs no query (J never leaves the domain). A class point w (a validated
membership witness, or a point onnxruntime classifies as the label) forces the face out to
w; the witness nearest to the final face is kept as its tightness witness.

Class points are first looked for with onnxruntime alone (x with one coordinate moved), which
settles most faces of image classifiers without a single oracle call. A non-answer on a slab
counts as "maybe a class point there": the face moves out (sound, possibly loose).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from vnnbridge.box import Box
from vnnbridge.oracles.base import Verdict
from vnnbridge.search.base import BudgetExhausted, Prober, SearchResult, Witness

__all__ = ["search_dual_box", "search_dual_cube", "search_dual_faces"]

log = logging.getLogger(__name__)


def _slab(prober: Prober, face: int, k: int) -> Box:
    """The closed part of the domain beyond face ``face`` at step ``k``."""
    g = prober.grid
    lo, hi = prober.instance.domain.arrays()
    lo, hi = lo.copy(), hi.copy()
    i, side = divmod(face, 2)
    pos = g.position(face, k)
    if side:
        lo[i] = pos
    else:
        hi[i] = pos
    return Box.from_arrays(lo, hi)


def _cheap_lower(prober: Prober, face: int, start: int) -> tuple[int, Witness | None]:
    """The farthest step whose point ``x`` moved there along ``face`` onnxruntime classifies as the label."""
    g, inst = prober.grid, prober.instance
    i = face // 2
    reach = int(g.reach[face])
    best, witness = start, None
    for k in (reach, (start + reach) // 2):
        if k <= best:
            continue
        p = inst.x.copy()
        p[i] = g.position(face, k)
        if inst.classified(p):
            best, witness = k, Witness("member", p, face=face)
            break
    return best, witness


def _start_steps(prober: Prober, start: SearchResult | None) -> np.ndarray:
    """Steps J must reach: the certified box's faces (all its points are class points), else x."""
    g = prober.grid
    if start is not None and start.certified:
        return start.steps.copy()
    return np.zeros(2 * g.n, dtype=np.int64)


def _face(prober: Prober, face: int, lo: int, linear: bool) -> tuple[int, Witness | None, bool]:
    """The smallest proven step of J's face ``face``, at or beyond the necessary step ``lo``."""
    g = prober.grid
    reach = int(g.reach[face])
    lo, witness = _cheap_lower(prober, face, lo)
    hi = reach  # the boundary is always a valid face of J
    exact = True
    while lo < hi:
        k = lo if linear else (lo + hi) // 2
        try:
            res, call = prober.member(_slab(prober, face, k), f"dual face={face} step={k}")
        except BudgetExhausted:
            return reach, witness, False  # the boundary is always a valid face of J

        if res.verdict is Verdict.UNSAT:
            hi = k
        elif res.verdict is Verdict.SAT:
            w = np.asarray(res.witness, dtype=np.float64)
            i = face // 2
            lo = max(k + 1, g.include(face, float(w[i])))
            witness = Witness("member", w, face=face, call=call.index)
        else:
            lo, exact = k + 1, False
    return hi, witness, exact


def _faces_dual(prober: Prober, start: SearchResult | None, method: str, linear: bool) -> SearchResult:
    g = prober.grid
    need = _start_steps(prober, start)
    steps = np.zeros(2 * g.n, dtype=np.int64)
    witnesses: list[Witness] = []
    exact_all = True

    def one(face: int) -> tuple[int, tuple[int, Witness | None, bool]]:
        lo = int(need[face]) + (1 if (start is not None and start.certified) or prober.instance.classified(
            prober.instance.x) else 0)
        return face, _face(prober, face, min(lo, int(g.reach[face])), linear)

    faces = range(2 * g.n)
    if prober.options.jobs > 1:
        with ThreadPoolExecutor(max_workers=prober.options.jobs) as pool:
            answers = list(pool.map(one, faces))
    else:
        answers = [one(f) for f in faces]
    for face, (k, w, exact) in answers:
        steps[face] = k
        exact_all &= exact
        if w is not None:
            witnesses.append(w)
    res = SearchResult(method, True, g.box(steps), steps, None, witnesses=witnesses, exact=exact_all)
    return res


def search_dual_faces(prober: Prober, start: SearchResult | None = None) -> SearchResult:
    """Ours: for each of the 2n faces an independent bisection (parallel with ``jobs``)."""
    return _faces_dual(prober, start, "dual-faces", linear=False)


def search_dual_box(prober: Prober, start: SearchResult | None = None) -> SearchResult:
    """The paper's bottom-up BUS: each face moves out one step at a time until its slab is empty."""
    return _faces_dual(prober, start, "dual-box", linear=True)


def search_dual_cube(prober: Prober, start: SearchResult | None = None) -> SearchResult:
    """Bisection on the radius of a cube J: radius k holds when all 2n slabs beyond it are empty."""
    g, inst = prober.grid, prober.instance
    lo = (int(start.cube_steps) + 1 if start is not None and start.certified and start.cube_steps is not None
          else 1 if inst.classified(inst.x) else 0)
    witness: Witness | None = None
    # Free class points: x with one coordinate at the boundary.
    for face in range(2 * g.n):
        k, w = _cheap_lower(prober, face, lo)
        if w is not None and k > lo:
            lo, witness = k, w
    hi, exact = g.diameter, True
    lo = min(lo, hi)
    while lo < hi:
        k = (lo + hi) // 2
        found = None
        for face in range(2 * g.n):
            if g.reach[face] <= k:
                continue  # the cube already reaches the boundary there: nothing lies beyond it
            try:
                res, call = prober.member(_slab(prober, face, k), f"dual-cube k={k} face={face}")
            except BudgetExhausted:
                lo, exact = g.diameter, False  # give up: the whole domain is a valid (loose) dual
                break
            if res.verdict is Verdict.SAT:
                found = Witness("member", np.asarray(res.witness, dtype=np.float64), face=face, call=call.index)
                break
            if res.verdict is not Verdict.UNSAT:
                found, exact = Witness("member", inst.x, face=None), False
                break
        if lo >= g.diameter:
            hi = g.diameter
            break
        if found is None:
            hi = k
        else:
            if found.face is not None:
                witness = found
                lo = max(k + 1, g.cube_include(found.point))
            else:
                lo = k + 1
    steps = g.cube_steps(hi)
    result = SearchResult("dual-cube", True, g.box(steps), steps, None, cube_steps=hi, exact=exact)
    if witness is not None:
        result.witnesses.append(witness)
    return result
