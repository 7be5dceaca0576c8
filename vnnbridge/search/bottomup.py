"""Bottom-up searches: grow a certified box face by face until every face is blocked or on the boundary.

`search_greedy` is the inflated-explanation baseline: one face at a time (``dfs``) or one
probe per face per pass (``bfs``), each face moving ``linear``-ly or by bisection. `search_grow`
is ours: it moves *all* open faces at once and only splits on failure. A validated witness
w of a failed move lies beyond some moved faces; w is projected back onto the certified box on
every face but one (onnxruntime only), and each projection that is still misclassified caps
that one face for good. So one oracle call usually settles many faces, and a blocked face
always has a witness within delta beyond it (its maximality witness). `search_slack` (also
ours) moves the faces along a linearisation of the logit margin (numpy gradients) and blocks
faces with points that a batched attack finds and onnxruntime confirms, without oracle calls.

A face stops for good when it reaches the domain boundary, when a witness lies within one
step beyond it (blocked), or when the oracle gave no answer at one step beyond it (stuck:
not proven maximal, listed in ``SearchResult.stuck_faces``).
"""

from __future__ import annotations

import logging

import numpy as np

from vnnbridge.engine.attack import Objective, _gradients, pgd, start_points
from vnnbridge.engine.graph import LayerNet, load_layer_net
from vnnbridge.errors import VnnbridgeError
from vnnbridge.oracles.base import Verdict
from vnnbridge.search.base import BudgetExhausted, Call, Prober, SearchResult, Witness

__all__ = ["search_greedy", "search_grow", "search_slack"]

log = logging.getLogger(__name__)


SAFE_SIDE_COST = 0.5  # the share of |gradient| charged for moving a face that raises the margin
GIVE_UP_AFTER = 3  # slack: consecutive non-answers after which the open faces are left open
BLOCK_REACH = 4.0  # attack a face when BLOCK_REACH times its linear one-step cost reaches the margin


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
        self.gave_up = ""  # why a search left faces open before its budget ran out

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
        """Faces that may still move (their count goes to the prober, for progress displays)."""
        faces = [int(f) for f in np.nonzero(self.cur < self.cap)[0]]
        self.prober.faces_left = len(faces)
        return faces

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
        elif self.gave_up and self.open():
            res.open_faces = self.open()
            res.notes.append(self.gave_up)
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
    if ok and start is not None:
        for w in start.witnesses:
            if w.kind == "cube":
                log.info("grow: %d faces blocked by corners of the cube witness", state.sweep(w.point))
    _grow_loop(prober, state, ok, "grow")
    return state.result("grow", ok)


def _grow_loop(prober: Prober, state: _Faces, ok: bool, name: str) -> None:
    """Group moves of the open faces until each is blocked, on the boundary, stuck or the budget is spent."""
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

    try:
        while ok and (open_faces := state.open()):
            attempt(open_faces)
    except BudgetExhausted as exc:
        log.warning("%s: %s; the box so far is certified but not maximal", name, exc)
        state.unfinished = True


def _weak_point(net: LayerNet, label: int, lo: np.ndarray, hi: np.ndarray, x: np.ndarray,
                rng: np.random.Generator, seeds: list[np.ndarray] | None = None, starts: int = 4,
                steps: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """A point of the box with a small label margin (sign-gradient attack, numpy only) and the margin's gradient there."""
    c = _margin_rows(net, label)
    obj = Objective(c, np.zeros(len(c)), np.arange(len(c), dtype=np.intp))
    # Start at the sign-gradient corner seen from x, then random points.
    y = net.forward(x[None, :])[0]
    row = int(np.argmin(c @ y))
    _, grad = _gradients(net, x[None, :], c[row][None, :])
    corner = np.where(grad[0] > 0, lo, np.where(grad[0] < 0, hi, x))
    x0 = start_points(lo, hi, starts, rng, centre=corner)
    if seeds:  # earlier witnesses, clipped in: the oracle's attack found its way there once
        x0 = np.vstack([x0, np.clip(np.array(seeds[-4:]), lo, hi)])
    p, _ = pgd(net, obj, lo, hi, x0, steps, rng)
    y = net.forward(p[None, :])[0]
    row = int(np.argmin(c @ y))
    _, grad = _gradients(net, p[None, :], c[row][None, :])
    return p, grad[0]


def _margin_rows(net: LayerNet, label: int) -> np.ndarray:
    """Rows c with c·y = y_label - y_j, one per other class j."""
    others = [j for j in range(net.outputs) if j != label]
    c = np.zeros((len(others), net.outputs))
    c[:, label] = 1.0
    c[np.arange(len(others)), others] = -1.0
    return c


def _attack_faces(state: _Faces, net: LayerNet, faces: list[int], starts: np.ndarray,
                  steps: int = 20) -> list[np.ndarray | None]:
    """Per face, a point misclassified by onnxruntime within one step beyond it (or None); no oracle call.

    One batched sign-gradient descent on the label margin, row k inside the current box grown
    by one step at ``faces[k]`` alone, with the coordinate held beyond that face.
    """
    if not faces:
        return []
    g, inst = state.grid, state.inst
    lo0, hi0 = g.box(state.cur).arrays()
    lo = np.repeat(lo0[None, :], len(faces), axis=0)
    hi = np.repeat(hi0[None, :], len(faces), axis=0)
    for k, f in enumerate(faces):
        i, side = divmod(f, 2)
        out = g.position(f, int(state.cur[f]) + 1)
        # only the slab beyond the face: a witness inside the certified box cannot exist
        lo[k, i], hi[k, i] = (hi0[i], out) if side else (out, lo0[i])
    c = _margin_rows(net, inst.label)
    x = np.clip(starts, lo, hi)
    width = hi - lo
    for t in range(steps):
        y = net.forward(x)
        rows = np.argmin(y @ c.T, axis=1)
        _, grad = _gradients(net, x, c[rows])
        frac = 0.5 * (0.01 / 0.5) ** (t / max(1, steps - 1))
        x = np.clip(x - frac * width * np.sign(grad), lo, hi)
    found: list[np.ndarray | None] = []
    for k in range(len(faces)):
        found.append(x[k].copy() if inst.misclassified(x[k]) else None)
    return found


def search_slack(prober: Prober, start: SearchResult | None = None) -> SearchResult:
    """Ours: spend the box's logit slack along a linearisation; block faces with onnxruntime-only witnesses.

    Each round attacks the certified box with the numpy engine (sign-gradient descent from the
    gradient corner, random points and the last oracle witnesses) for a weak point p, with
    margin m (onnxruntime) and gradient g there. Faces whose one-step cost |g_i|·delta is within
    a factor `BLOCK_REACH` of m are attacked in one batch, each inside the box grown one step
    at that face only; a point that onnxruntime misclassifies blocks the face (no oracle call).
    The open faces then get one proposal, checked by one oracle call: each shares ``frac * m``
    at its linear cost per step (faces on the margin-raising side at `SAFE_SIDE_COST` of it,
    capped at ``reach`` steps), after onnxruntime found no point against the proposal. An
    ``unsat`` moves the box and doubles ``frac`` (up to 1/2); a ``sat`` witness is attacked face
    by face as above, and it and a non-answer halve ``frac``. After `GIVE_UP_AFTER`
    non-answers in a row the box's margin is inside the oracle's tolerance: the search stops and
    lists the faces still open (not maximal). When ``frac`` runs out, `search_grow`'s loop
    finishes the open faces under the same rules.
    """
    state = _Faces(prober, start)
    ok = state.ensure_start()
    g, inst = prober.grid, prober.instance
    try:
        net = load_layer_net(inst.onnx)
    except VnnbridgeError as exc:  # an op the numpy engine lacks: plain growth still works
        log.info("slack: no gradient model (%s); growing without it", exc)
        _grow_loop(prober, state, ok, "slack")
        return state.result("slack", ok)
    frac, reach = 0.5, int(g.diameter)
    rng, silent = np.random.default_rng(0), 0
    seeds: list[np.ndarray] = [w.point for w in (start.witnesses if start is not None else []) if w.kind == "cube"]
    try:
        while ok and state.open() and frac > 1e-3:
            lo, hi = g.box(state.cur).arrays()
            corner, grad = _weak_point(net, inst.label, lo, hi, inst.x, rng, seeds)
            y = inst.net.run(corner)
            margin = float(y[inst.label] - np.max(np.delete(y, inst.label))) - inst.margin
            blocked = 0
            # Only a face whose one step can eat most of the margin is worth an attack.
            faces = [f for f in state.open() if BLOCK_REACH * abs(grad[f // 2]) * g.delta >= margin]
            for face, point in zip(faces, _attack_faces(state, net, faces, np.repeat(corner[None, :], len(faces), 0))):
                if point is not None:
                    state.cap_with(face, point, None)
                    blocked += 1
            open_faces = np.array(state.open(), dtype=np.int64)
            log.info("slack: margin %.4g at the weak corner, %d faces blocked by it, %d open",
                     margin, blocked, open_faces.size)
            if open_faces.size == 0 or margin <= 0:
                break
            while True:  # shrink the proposal until onnxruntime finds no point against it
                target = _proposal(state, open_faces, grad, frac * margin, g.delta, reach)
                t_lo, t_hi = g.box(target).arrays()
                if not inst.misclassified(_weak_point(net, inst.label, t_lo, t_hi, inst.x, rng, seeds)[0]) or frac <= 1e-3:
                    break
                frac, reach = frac / 2, max(1, reach // 2)
            if np.array_equal(target, state.cur) or frac <= 1e-3:
                break
            res, call = prober.robust(g.box(target), f"slack frac={frac:g}")
            log.info("slack: %d faces moved %d steps in all: %s", int(np.sum(target > state.cur)),
                     int(np.sum(target - state.cur)), res.verdict.value)
            silent = 0 if res.verdict in (Verdict.UNSAT, Verdict.SAT) else silent + 1
            if silent >= GIVE_UP_AFTER:
                state.gave_up = (f"{silent} non-answers in a row near the box (its margin is about {margin:.2g}): "
                                 "the box is certified but not maximal")
                return state.result("slack", ok)
            if res.verdict is Verdict.UNSAT:
                state.cur, state.proof = target, call
                frac, reach = min(0.5, frac * 2), min(int(g.diameter), reach * 2)
                continue
            frac, reach = frac / 2, max(1, reach // 2)
            if res.verdict is Verdict.SAT:
                w = np.asarray(res.witness, dtype=np.float64)
                seeds.append(w)
                crossed = [int(f) for f in open_faces if target[f] > state.cur[f] and state.beyond(w, int(f))]
                starts = np.repeat(w[None, :], len(crossed), 0)
                for f, point in zip(crossed, _attack_faces(state, net, crossed, starts)):
                    if point is not None:
                        state.cap_with(f, point, call)
    except BudgetExhausted as exc:
        log.warning("slack: %s; the box so far is certified but not maximal", exc)
        state.unfinished = True
        return state.result("slack", ok)
    _grow_loop(prober, state, ok, "slack")
    return state.result("slack", ok)


def _proposal(state: _Faces, open_faces: np.ndarray, grad: np.ndarray, budget: float, delta: float,
              reach: int) -> np.ndarray:
    """Steps for the next try: safe faces up to ``reach`` steps, unsafe ones cheapest first within ``budget``."""
    target = state.cur.copy()
    coord, side = open_faces // 2, open_faces % 2
    # Moving the upper face raises x_i: it costs when the margin falls with x_i (grad < 0).
    cost = np.where(side == 1, -grad[coord], grad[coord]) * delta
    # ReLUs turn: a face on the safe side of one gradient still costs something elsewhere.
    cost = np.maximum(cost, SAFE_SIDE_COST * np.abs(grad[coord]) * delta)
    room = state.cap[open_faces] - state.cur[open_faces]
    safe = cost <= 0
    target[open_faces[safe]] += np.minimum(room[safe], reach)
    unsafe = np.nonzero(~safe)[0]
    order = unsafe[np.argsort(cost[unsafe], kind="stable")]
    left = budget
    share = budget / max(1, order.size)
    for k in order:  # an equal share of the slack each, cheapest first, then what is left over
        steps = int(min(room[k], max(0.0, share) // cost[k]))
        if steps:
            target[open_faces[k]] += steps
            left -= steps * cost[k]
    for k in order:
        if left < cost[k]:
            break
        if target[open_faces[k]] < state.cap[open_faces[k]]:
            target[open_faces[k]] += 1
            left -= cost[k]
    return target

