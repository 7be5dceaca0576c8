"""Never trust a witness: every `sat` is re-run with onnxruntime before anyone uses it.

A witness is first clipped into the queried box when it lies outside by at most
``CLIP_ATOL`` (tools print rounded decimals); farther out it is bogus. It must then violate
the property exactly (no tolerance on the outputs): some polytope of its case is met by the
onnxruntime output. A witness that fails this may get a short local repair (`repair`) inside
the box; if that fails too, the verdict becomes ERROR with the reason recorded.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from vnnbridge.errors import BogusWitness
from vnnbridge.network import Network, load_network
from vnnbridge.oracles.base import OracleResult, Query, Verdict

__all__ = ["CLIP_ATOL", "confirm_witness", "validated"]

log = logging.getLogger(__name__)

# How far outside the queried box a printed witness may lie before it is bogus (the VNN-COMP
# scorer accepts 1e-4; we are stricter and then clip, so the stored witness is inside the box).
CLIP_ATOL = 1e-6


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


def validated(result: OracleResult, query: Query) -> OracleResult:
    """``result`` with its SAT witness confirmed, or turned into ERROR with the reason."""
    if result.verdict is not Verdict.SAT:
        return dataclasses.replace(result, witness=None) if result.witness is not None else result
    if result.witness is None:
        return dataclasses.replace(result, verdict=Verdict.ERROR, reason="sat without a witness")
    try:
        x = confirm_witness(query, result.witness)
    except BogusWitness as exc:
        log.warning("%s: bogus witness: %s", result.oracle, exc.message)
        return dataclasses.replace(result, verdict=Verdict.ERROR, witness=None,
                                   reason=f"bogus witness: {exc.message}")
    return dataclasses.replace(result, witness=x)
