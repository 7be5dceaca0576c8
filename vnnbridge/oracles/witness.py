"""Never trust a witness: every `sat` is re-run with onnxruntime before anyone uses it.

A witness is first clipped into the queried box when it lies outside by at most
``CLIP_ATOL`` (tools print rounded decimals); farther out it is bogus. It must then violate
the property exactly (no tolerance on the outputs): some polytope of its case is met by the
onnxruntime output. A witness that fails this may get a short local repair (`repair`) inside
the box; if that fails too, the verdict becomes ERROR with the reason recorded.

Some tools say sat without a usable witness (nnenum writes ``violated`` and no counterexample).
Given a budget, `validated` then searches for a witness itself (`search_witness`): a
projected-gradient attack with many restarts, then the embedded oracle on the same query. A
witness found that way passes the same onnxruntime check and is recorded as "witness by
vnnbridge"; none found makes the verdict UNKNOWN with the reason (a sat that cannot be shown
is no sat). A bogus witness gets the same search; if it finds nothing, the verdict stays ERROR
(the tool gave a point that does not violate the property).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np

from vnnbridge.errors import BogusWitness
from vnnbridge.network import Network, load_network
from vnnbridge.oracles.base import OracleResult, Query, Verdict

__all__ = ["CLIP_ATOL", "RECOVERED", "confirm_witness", "search_witness", "validated"]

log = logging.getLogger(__name__)

# How far outside the queried box a printed witness may lie before it is bogus (the VNN-COMP
# scorer accepts 1e-4; we are stricter and then clip, so the stored witness is inside the box).
CLIP_ATOL = 1e-6
# How a witness found by vnnbridge (not by the tool) is marked in the result's reason.
RECOVERED = "witness by vnnbridge"
# Attack restarts and steps per case of the witness search.
_RESTARTS, _STEPS = 64, 100


def _violates(query: Query, x: np.ndarray, net: Network) -> bool:
    return query.spec.violated_by(x, net.run(x))


def confirm_witness(query: Query, witness: np.ndarray, net: Network | None = None,
                    repair: bool = True) -> np.ndarray:
    """The witness, clipped into a box of the query, checked with onnxruntime; raises BogusWitness."""
    net = net or load_network(query.onnx)
    x = np.asarray(witness, dtype=np.float64).ravel()
    if x.size != query.spec.inputs:
        raise BogusWitness(f"witness has {x.size} values, the query {query.spec.inputs} inputs")
    if not np.all(np.isfinite(x)):
        raise BogusWitness("witness has non-finite values")
    for case in query.spec.cases:
        if not case.box.contains(x, atol=CLIP_ATOL):
            continue
        clipped = case.box.clip(x)
        if _violates(query, clipped, net):
            return clipped
        if repair:
            fixed = _repair(query, case, clipped, net)
            if fixed is not None:
                log.info("witness repaired by a local search inside the box")
                return fixed
    if not any(c.box.contains(x, atol=CLIP_ATOL) for c in query.spec.cases):
        raise BogusWitness("witness lies outside every queried box")
    raise BogusWitness("the output at the witness does not violate the property (onnxruntime)")


def _repair(query: Query, case: Any, x: np.ndarray, net: Network) -> np.ndarray | None:
    """A few projected-gradient steps inside the box; None when they do not reach a violation."""
    from vnnbridge.oracles.repair import repair_witness  # torch lives there, imported lazily

    return repair_witness(query, case, x, net)


def search_witness(query: Query, budget: float) -> tuple[np.ndarray | None, str]:
    """A confirmed witness found by vnnbridge within ``budget`` seconds, or None and why not."""
    from vnnbridge.errors import VnnbridgeError
    from vnnbridge.oracles.embedded import EmbeddedOracle

    from vnnbridge.engine.attack import falsify

    deadline = time.perf_counter() + max(0.0, budget)
    net = load_network(query.onnx)
    try:
        x = falsify(query.onnx, spec=query.spec, budget=budget, restarts=_RESTARTS, steps=_STEPS, repeat=False)
    except VnnbridgeError as exc:  # a model the engine cannot read: no search possible
        return None, f"no search possible: {exc.message}"
    if x is not None:
        return confirm_witness(query, x, net, repair=False), "attack"
    left = deadline - time.perf_counter()
    if left <= 0.05:
        return None, f"the attack found none in {budget:.1f} s"
    try:
        answer = EmbeddedOracle().check(query, left)
    except VnnbridgeError as exc:
        return None, f"the attack found none, and the embedded oracle cannot run: {exc.message}"
    if answer.verdict is Verdict.SAT and answer.witness is not None:
        try:
            return confirm_witness(query, answer.witness, net), "embedded oracle"
        except BogusWitness as exc:
            return None, f"the embedded oracle's witness fails: {exc.message}"
    if answer.verdict is Verdict.UNSAT:
        return None, "the embedded oracle proves the query unsat"
    return None, f"neither the attack nor the embedded oracle ({answer.verdict.value}) found one"


def validated(result: OracleResult, query: Query, recover_budget: float | None = None) -> OracleResult:
    """``result`` with its SAT witness confirmed, else searched for (given ``recover_budget`` seconds).

    Without a budget, a sat without a confirmed witness becomes ERROR with the reason.
    """
    if result.verdict is not Verdict.SAT:
        return dataclasses.replace(result, witness=None) if result.witness is not None else result
    if result.witness is None:
        problem = "sat without a witness"
    else:
        try:
            return dataclasses.replace(result, witness=confirm_witness(query, result.witness))
        except BogusWitness as exc:
            log.warning("%s: bogus witness: %s", result.oracle, exc.message)
            problem = f"bogus witness: {exc.message}"
    if recover_budget is None or recover_budget <= 0:
        return dataclasses.replace(result, verdict=Verdict.ERROR, witness=None, reason=problem)
    start = time.perf_counter()
    x, how = search_witness(query, recover_budget)
    spent = time.perf_counter() - start
    seconds = result.seconds + spent
    if x is not None:
        log.info("%s: %s; %s (%s, %.1f s)", result.oracle, problem, RECOVERED, how, spent)
        return dataclasses.replace(result, witness=x, seconds=seconds,
                                   reason=f"{RECOVERED} ({how}; the tool's: {problem})")
    verdict = Verdict.UNKNOWN if result.witness is None else Verdict.ERROR
    return dataclasses.replace(result, verdict=verdict, witness=None, seconds=seconds,
                               reason=f"{problem}; vnnbridge found none in {spent:.1f} s: {how}")
