"""Bottom-up searches: grow a certified box face by face until every face is blocked or on the boundary.

`search_greedy` is the inflated-explanation baseline: one face at a time (``dfs``) or one
probe per face per pass (``bfs``), each face moving ``linear``-ly or by bisection. `search_grow`
is ours: it moves *all* open faces at once and only splits on failure. A validated witness
w of a failed move lies beyond some moved faces; w is projected back onto the certified box on
every face but one (onnxruntime only), and each projection that is still misclassified caps
that one face for good. So one oracle call usually settles many faces, and a blocked face
always has a witness within delta beyond it (its maximality witness).

A face stops for good when it reaches the domain boundary, when a witness lies within one
step beyond it (blocked), or when the oracle gave no answer at one step beyond it (stuck:
not proven maximal, listed in ``SearchResult.stuck_faces``).
"""

from __future__ import annotations

import logging

import numpy as np

from vnnbridge.oracles.base import Verdict
from vnnbridge.search.base import BudgetExhausted, Call, Prober, SearchResult, Witness

__all__ = ["search_greedy", "search_grow"]

log = logging.getLogger(__name__)


class _Faces:
    """The state of a growing box: steps per face, caps, and the witnesses behind the caps."""

    def __init__(self, prober: Prober, start: SearchResult | None) -> None:
        self.prober, self.grid, self.inst = prober, prober.grid, prober.instance
        self.proof: Call | None = None
        if start is not None and start.certified:
            self.cur, self.proof = start.steps.copy(), start.proof
        else:
            self.cur = np.zeros(2 * self.grid.n, dtype=np.int64)
        self.cap = self.grid.reach.copy()
        self.witness: dict[int, Witness] = {}
        self.stuck: set[int] = set()
        self.unfinished = False  # the call budget ran out before every face stopped

    def ensure_start(self) -> bool:
        """Certify the starting box when no earlier search did (the point x, usually)."""
        if self.proof is not None:
            return True
        res, call = self.prober.robust(self.grid.box(self.cur), "start")
        if res.verdict is Verdict.UNSAT:
            self.proof = call
            return True
        return False

    def beyond(self, point: np.ndarray, face: int) -> bool:
        """Whether ``point`` lies outside the current box across ``face``."""
        i, side = divmod(face, 2)
        pos = self.grid.position(face, int(self.cur[face]))
        return bool(point[i] > pos) if side else bool(point[i] < pos)

    def project(self, point: np.ndarray, face: int) -> np.ndarray:
        """``point`` clipped into the current box on every coordinate but ``face``'s (kept on its side)."""
        box = self.grid.box(self.cur)
        lo, hi = box.arrays()
        i, side = divmod(face, 2)
        q = np.clip(point, lo, hi)
        q[i] = point[i]
        return q

    def corner(self, point: np.ndarray, face: int) -> np.ndarray:
        """The corner of the current box on ``point``'s side of x in every coordinate, ``face``'s kept.

        For a nearly linear network the corner in the direction of a witness is where the
        certified box is weakest, so that corner pushed across one face is a likely witness.
        """
        lo, hi = self.grid.box(self.cur).arrays()
        x = self.inst.x
        q = np.where(point > x, hi, np.where(point < x, lo, x))
        i = face // 2
        q[i] = point[i]
        return q

    def sweep(self, point: np.ndarray) -> int:
        """Block open faces with corner witnesses derived from ``point`` (onnxruntime only); returns how many."""
        g, found = self.grid, 0
        for face in self.open():
            i = face // 2
            cand = self.corner(point, face)
            cand[i] = g.position(face, int(self.cur[face]) + 1)
            if self.inst.misclassified(cand):
                self.cap_with(face, cand, None)
                found += 1
        return found

    def cap_with(self, face: int, point: np.ndarray, call: Call | None) -> None:
        """Cap ``face`` below a misclassified ``point`` that lies beyond it only, pulled in first.

        The pull-in is a bisection with onnxruntime over the steps between the face and the
        point: each candidate is re-run, so the stored witness is real.
        """
        g, i = self.grid, face // 2
        best = point.copy()
        lo_k, hi_k = int(self.cur[face]), g.include(face, float(point[i]))
        while hi_k - lo_k > 1:
            mid = (lo_k + hi_k) // 2
            cand = best.copy()
            cand[i] = g.position(face, mid)
            if self.inst.misclassified(cand):
                hi_k, best = mid, cand
            else:
                lo_k = mid
        if hi_k - 1 < self.cap[face]:
            self.cap[face] = hi_k - 1
            self.witness[face] = Witness("face", best, face=face, call=None if call is None else call.index)

    def stop(self, face: int) -> None:
        """The oracle gave no answer one step beyond ``face``: stop it there, unproven."""
        self.cap[face] = self.cur[face]
        self.stuck.add(face)
        self.witness.pop(face, None)

    def open(self) -> list[int]:
        """Faces that may still move."""
        return [int(f) for f in np.nonzero(self.cur < self.cap)[0]]

    def result(self, method: str, start_ok: bool) -> SearchResult:
        """The grown box with its proof and the maximality witnesses of its blocked faces."""
        g = self.grid
        if not start_ok:
            zero = np.zeros(2 * g.n, dtype=np.int64)
            return SearchResult(method, False, g.box(zero), zero)
        res = SearchResult(method, True, g.box(self.cur), self.cur.copy(), self.proof)
        for face, w in sorted(self.witness.items()):
            if self.cur[face] == self.cap[face] and self.cap[face] < g.reach[face]:
                res.witnesses.append(w)
        res.stuck_faces = sorted(self.stuck)
        if self.unfinished:
            res.open_faces = self.open()
            res.notes.append("call budget spent: the box is certified but not maximal")
        return res


def _probe_one(state: _Faces, face: int, target: int, method: str) -> None:
    """Move one face to ``target`` if the oracle certifies it; otherwise cap or stop the face."""
    steps = state.cur.copy()
    steps[face] = target
    res, call = state.prober.robust(state.grid.box(steps), f"{method} face={face} step={target}")
    if res.verdict is Verdict.UNSAT:
        state.cur, state.proof = steps, call
    elif res.verdict is Verdict.SAT:
        w = np.asarray(res.witness, dtype=np.float64)
        if not state.beyond(w, face):
            log.warning("call %d: a witness inside an already certified box; the oracle is inconsistent",
                        call.index)
            state.stop(face)
        else:
            state.cap_with(face, w, call)
    elif target == state.cur[face] + 1:
        state.stop(face)
    else:
        state.cap[face] = target - 1


def _next_target(state: _Faces, face: int, step: str) -> int:
    cur, cap = int(state.cur[face]), int(state.cap[face])
    return cur + 1 if step == "linear" else cur + (cap - cur + 1) // 2


def search_greedy(prober: Prober, start: SearchResult | None = None) -> SearchResult:
    """The baseline: grow one face per oracle call (``--order dfs|bfs``, ``--step linear|bisect``)."""
    state = _Faces(prober, start)
    ok = state.ensure_start()
    try:
        _greedy_loop(prober, state, ok)
    except BudgetExhausted as exc:
        log.warning("greedy: %s; the box so far is certified but not maximal", exc)
        state.unfinished = True
    return state.result("greedy", ok)


def _greedy_loop(prober: Prober, state: _Faces, ok: bool) -> None:
    opts = prober.options
    if ok:
        if opts.order == "dfs":
            for face in range(2 * prober.grid.n):
                while state.cur[face] < state.cap[face]:
                    _probe_one(state, face, _next_target(state, face, opts.step), "greedy")
        else:
            while open_faces := state.open():
                for face in open_faces:
                    if state.cur[face] < state.cap[face]:
                        _probe_one(state, face, _next_target(state, face, opts.step), "greedy")


def search_grow(prober: Prober, start: SearchResult | None = None) -> SearchResult:
    """Ours: move a whole group of open faces at once; on failure blame single faces, else halve the group.

    Each round tries every open face, with per-face step sizes that double after a success
    and shrink to what is left below a cap. A failed group whose witness cannot be pinned on
    one face is split into the faces it does not touch and two halves of those it touches
    (faces are numbered in input order, so halves are contiguous regions of an image).
    """
    state = _Faces(prober, start)
    ok = state.ensure_start()
    g, inst = prober.grid, prober.instance
    step = np.ones(2 * g.n, dtype=np.int64)

    def attempt(group: list[int]) -> None:
        group = [f for f in group if state.cur[f] < state.cap[f]]
        if not group:
            return
        target = state.cur.copy()
        idx = np.array(group)
        step[idx] = np.maximum(1, np.minimum(step[idx], state.cap[idx] - state.cur[idx]))
        target[idx] = state.cur[idx] + step[idx]
        res, call = prober.robust(g.box(target), f"grow faces={len(group)}")
        if res.verdict is Verdict.UNSAT:
            state.cur, state.proof = target, call
            step[idx] *= 2
            return
        if res.verdict is Verdict.SAT:
            w = np.asarray(res.witness, dtype=np.float64)
            touched = [f for f in group if state.beyond(w, f)]
            if not touched:
                log.warning("call %d: a witness inside an already certified box; the oracle is inconsistent",
                            call.index)
                for f in group:
                    state.stop(f)
                return
            blamed = []
            for f in touched:
                for q in (state.project(w, f), state.corner(w, f)):
                    if inst.misclassified(q):
                        state.cap_with(f, q, call)
                        blamed.append(f)
                        break
            if blamed:
                attempt([f for f in group if f not in blamed])
                return
            rest = [f for f in group if f not in touched]
            half = len(touched) // 2
            for part in (rest, touched[:half], touched[half:]):
                attempt(part)
            return
        # no answer: halve the group, and stop a single face at one step
        if len(group) == 1:
            f = group[0]
            if step[f] == 1:
                state.stop(f)
            step[f] = max(1, step[f] // 2)
            return
        step[idx] = np.maximum(1, step[idx] // 2)
        half = len(group) // 2
        attempt(group[:half])
        attempt(group[half:])

    if ok and start is not None:
        for w in start.witnesses:
            if w.kind == "cube":
                log.info("grow: %d faces blocked by corners of the cube witness", state.sweep(w.point))
    try:
        while ok and (open_faces := state.open()):
            attempt(open_faces)
    except BudgetExhausted as exc:
        log.warning("grow: %s; the box so far is certified but not maximal", exc)
        state.unfinished = True
    return state.result("grow", ok)
