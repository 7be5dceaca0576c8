"""Method names, compositions ``A+B`` (B continues from A's certified box) and one entry point.

``apothem`` is the default: the grid-exact optimal cube in about log2(diameter/delta) calls;
``apothem+grow`` grows it to a box that is maximal face by face, at many more calls (see
docs/certify.md for the measurements behind this choice); ``apothem+slack`` grows it along
the gradient of the logit margin instead, with far larger boxes per call.
"""

from __future__ import annotations

import logging
from typing import Callable

from vnnbridge.errors import InputError
from vnnbridge.oracles.base import Oracle, Verdict
from vnnbridge.search.base import BudgetExhausted, Call, Instance, Prober, SearchOptions, SearchResult, WitnessKind
from vnnbridge.search.bottomup import search_greedy, search_grow, search_slack
from vnnbridge.search.names import DEFAULT_DUAL, DEFAULT_METHOD
from vnnbridge.search.dual import search_dual_box, search_dual_cube, search_dual_faces
from vnnbridge.search.topdown import (find_apothem, search_box_topdown, search_cube_bisect, search_cube_topdown,
                                      search_edge, search_fill)

__all__ = ["CONTINUING", "DEFAULT_DUAL", "DEFAULT_METHOD", "DUALS", "METHODS", "certify", "confirm_result",
           "parse_method", "run_dual", "run_method"]

log = logging.getLogger(__name__)

Search = Callable[[Prober, SearchResult | None], SearchResult]

METHODS: dict[str, Search] = {
    "cube-topdown": search_cube_topdown,
    "cube-bisect": search_cube_bisect,
    "apothem": find_apothem,
    "box-topdown": search_box_topdown,
    "greedy": search_greedy,
    "grow": search_grow,
    "slack": search_slack,
    "fill": search_fill,
    "edge": search_edge,
}
# Methods that can continue from an earlier certified box (the B of ``A+B``).
CONTINUING = frozenset({"greedy", "grow", "slack", "fill"})
DUALS: dict[str, Search] = {
    "dual-faces": search_dual_faces,
    "dual-box": search_dual_box,
    "dual-cube": search_dual_cube,
}


def parse_method(name: str) -> list[str]:
    """The parts of ``A+B+...``, each a known method; B and later must be able to continue."""
    parts = [p.strip() for p in name.split("+")]
    for i, part in enumerate(parts):
        if part not in METHODS:
            raise InputError(f"unknown method {part!r}; known: {', '.join(sorted(METHODS))} and A+B compositions")
        if i > 0 and part not in CONTINUING:
            raise InputError(f"{part!r} cannot continue from another method's box; "
                             f"after '+' use one of {', '.join(sorted(CONTINUING))}")
    return parts


def run_method(name: str, prober: Prober) -> SearchResult:
    """Run method ``name`` (``A`` or ``A+B+...``) with ``prober``; keep the last certified result.

    A search that runs out of its call budget ends with the best result found so far. An
    interrupt (Ctrl-C) during a later phase keeps the certified box of the phase before it, so
    that no certified work is lost; the result says so (``interrupted``).
    """
    result: SearchResult | None = None
    for part in parse_method(name):
        prober.begin(part)
        try:
            nxt = METHODS[part](prober, result)
        except BudgetExhausted as exc:
            log.warning("%s: %s; keeping the result so far", part, exc)
            break
        except KeyboardInterrupt:
            if result is None or not result.certified:
                raise
            log.warning("%s: interrupted; keeping the certified box found before it", part)
            result.interrupted = True
            result.notes.append(f"interrupted during {part}: the box is the certified result before it")
            break
        if result is not None and result.certified and not nxt.certified:
            break  # never trade a certified box for an uncertified one
        if result is not None and nxt.cube_steps is None:
            nxt.cube_steps, nxt.cube_upper, nxt.exact = result.cube_steps, result.cube_upper, result.exact
            nxt.witnesses = [w for w in result.witnesses if w.kind == WitnessKind.CUBE] + nxt.witnesses
        result = nxt
    if result is None:
        raise InputError(f"method {name!r} ran out of its call budget before its first answer")
    result.method = name
    return result


def run_dual(name: str, prober: Prober, start: SearchResult | None) -> SearchResult:
    """Run dual method ``name`` (optionally knowing a certified box inside the answer)."""
    if name not in DUALS:
        raise InputError(f"unknown dual {name!r}; known: {', '.join(sorted(DUALS))}")
    prober.begin(name)
    return DUALS[name](prober, start)


# A confirming oracle that keeps refuting the final box makes the search run again each time;
# after this many refutations the last box is kept, certified by the main oracle only (unconfirmed).
MAX_CONFIRM_ROUNDS = 20


def confirm_result(method: str, prober: Prober, result: SearchResult, confirmer: Oracle) -> SearchResult:
    """Ask ``confirmer`` about the final certified box; a validated ``sat`` refutes it and the search goes on.

    The search is run again with the refuted answer replaced by the confirmer's witness (all
    other answers are remembered, so only new boxes cost calls). A confirmer's timeout,
    unknown or error leaves the box certified by the main oracle, marked unconfirmed.
    """
    for _ in range(MAX_CONFIRM_ROUNDS):
        if not result.certified or result.proof is None or result.interrupted:
            return result
        res, call = prober.confirm(result.box, result.proof, confirmer)
        if res.verdict is not Verdict.SAT:
            result.confirmation = call
            if res.verdict is not Verdict.UNSAT:
                result.notes.append(f"unconfirmed: {call.oracle} answered {res.verdict.value}"
                                    + (f" ({res.reason})" if res.reason else ""))
            return result
        log.warning("%s refuted the final box of %s; searching on", call.oracle, method)
        result = run_method(method, prober)
    if result.certified:
        result.notes.append(f"unconfirmed: the confirming oracle refuted {MAX_CONFIRM_ROUNDS} final boxes; "
                            "the last one was not asked")
    return result


def certify(instance: Instance, oracle: Oracle, method: str = DEFAULT_METHOD, dual: str | None = None,
            options: SearchOptions | None = None, on_call: Callable[[Call], None] | None = None,
            confirmer: Oracle | None = None) -> tuple[SearchResult, SearchResult | None, Prober]:
    """Search a certification of ``instance`` (and its dual); every call is in ``prober.calls``.

    With ``confirmer``, the final box must also be ``unsat`` for that oracle (see `confirm_result`).
    """
    prober = Prober(instance, oracle, options, on_call)
    result = run_method(method, prober)
    if confirmer is not None:
        try:
            result = confirm_result(method, prober, result, confirmer)
        except KeyboardInterrupt:
            if not result.certified or result.proof is None or prober.calls[result.proof.index].refuted_by:
                raise  # a refuted box is no result to keep
            result.interrupted = True
            result.notes.append("interrupted while confirming: the box is unconfirmed")
    dual_result = None
    if dual and not result.certified and instance.misclassified(instance.x):
        # x itself is misclassified (a --label other than the prediction, or a --margin x does not
        # meet): no box around x can be certified, so there is nothing for a dual to bound.
        result.notes.append("the input itself is misclassified for this label: no box can be certified, no dual")
    elif dual and not result.interrupted:
        try:
            dual_result = run_dual(dual, prober, result if result.certified else None)
        except KeyboardInterrupt:
            if not result.certified:
                raise
            result.interrupted = True
            result.notes.append(f"interrupted during {dual}: no dual computed")
    return result, dual_result, prober
