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
from vnnbridge.oracles.base import Oracle
from vnnbridge.search.base import BudgetExhausted, Call, Instance, Prober, SearchOptions, SearchResult
from vnnbridge.search.bottomup import search_greedy, search_grow, search_slack
from vnnbridge.search.names import DEFAULT_DUAL, DEFAULT_METHOD
from vnnbridge.search.dual import search_dual_box, search_dual_cube, search_dual_faces
from vnnbridge.search.topdown import (find_apothem, search_box_topdown, search_cube_bisect, search_cube_topdown,
                                      search_edge, search_fill)

__all__ = ["CONTINUING", "DEFAULT_DUAL", "DEFAULT_METHOD", "DUALS", "METHODS", "certify", "parse_method", "run_dual",
           "run_method"]

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
            nxt.witnesses = [w for w in result.witnesses if w.kind == "cube"] + nxt.witnesses
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


def certify(instance: Instance, oracle: Oracle, method: str = DEFAULT_METHOD, dual: str | None = None,
            options: SearchOptions | None = None,
            on_call: Callable[[Call], None] | None = None) -> tuple[SearchResult, SearchResult | None, Prober]:
    """Search a certification of ``instance`` (and its dual); every call is in ``prober.calls``."""
    prober = Prober(instance, oracle, options, on_call)
    result = run_method(method, prober)
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
