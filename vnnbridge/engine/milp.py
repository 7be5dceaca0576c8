"""The complete decision: an exact big-M MILP of the network over a box, solved by HiGHS.

Each unstable ReLU ``a = max(z, 0)`` with ``l < 0 < u`` gets one binary ``δ`` and the exact
encoding ``a >= z, a >= 0, a <= u·δ, a <= z - l·(1 - δ)``; stable units are linear. The
objective is the polytope's worst row ``t >= a_r·y - b_r``, minimised subject to ``t <= cutoff``
so that the branch and bound prunes every node whose relaxation already proves the row margin.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from vnnbridge.engine.bounds import LayerBounds
from vnnbridge.engine.graph import LayerNet

__all__ = ["MilpOutcome", "MilpStatus", "milp_size", "solve_polytope"]

log = logging.getLogger(__name__)


class MilpStatus(enum.Enum):
    """How the HiGHS run ended."""

    INFEASIBLE = "infeasible"  # no input reaches t <= cutoff: the polytope is refuted
    FEASIBLE = "feasible"  # a point with t <= cutoff (the minimiser when OPTIMAL)
    TIMEOUT = "timeout"
    FAILED = "failed"


@dataclass
class MilpOutcome:
    """A finished MILP: the status, the best input and its objective (float64, MILP arithmetic)."""

    status: MilpStatus
    x: np.ndarray | None = None
    value: float | None = None
    message: str = ""


def milp_size(net: LayerNet, bounds: LayerBounds) -> tuple[int, int]:
    """(binaries, nonzeros estimate) of the encoding, to decide whether it is worth building."""
    binaries = 0
    for l, u, relu in zip(bounds.lower, bounds.upper, net.relus):
        binaries += int(np.count_nonzero(relu.mask & (l < 0) & (u > 0)))
    widths = [net.inputs] + net.widths
    nnz = sum(a * b for a, b in zip(widths, widths[1:]))
    return binaries, nnz


def _sparse(m: object) -> sp.csr_array:
    return sp.csr_array(m)


def solve_polytope(net: LayerNet, bounds: LayerBounds, c: np.ndarray, d: np.ndarray,
                   cutoff: float, time_limit: float) -> MilpOutcome:
    """Minimise ``max_r (c_r·y - d_r)`` over the box subject to it being <= ``cutoff``."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    lo, hi = bounds.lo, bounds.hi
    n0 = lo.size
    var_lo: list[np.ndarray] = [lo]
    var_hi: list[np.ndarray] = [hi]
    offsets = [0]
    total = n0
    for w in net.widths:
        offsets.append(total)
        total += w
    # Binary columns come after all layer variables.
    unstable = [relu.mask & (l < 0) & (u > 0) for l, u, relu in zip(bounds.lower, bounds.upper, net.relus)]
    bin_off = []
    for un in unstable:
        bin_off.append(total)
        total += int(un.sum())
    multi = len(d) > 1
    t_col = total
    total += 1 if multi else 0

    blocks: list[sp.csr_array] = []
    row_lo: list[np.ndarray] = []
    row_hi: list[np.ndarray] = []

    for k, (relu, l, u) in enumerate(zip(net.relus, bounds.lower, bounds.upper)):
        aff = net.affines[k]
        m = _sparse(aff.op.matrix())
        n = relu.mask.size
        prev_off, prev_n = offsets[k], (n0 if k == 0 else net.widths[k - 1])
        off = offsets[k + 1]
        active = (l >= 0) | ~relu.mask
        dead = relu.mask & (u <= 0)
        un = unstable[k]
        vlo = np.where(dead, 0.0, np.where(un, 0.0, l))
        vhi = np.where(dead, 0.0, u)
        var_lo.append(vlo)
        var_hi.append(vhi)
        bias = aff.bias
        # Active (and pass-through) units: a - W a_prev = b.
        idx = np.nonzero(active)[0]
        if idx.size:
            blocks.append(_place(-m[idx], idx.size, total, prev_off, off, idx, None, None))
            row_lo.append(bias[idx])
            row_hi.append(bias[idx])
        idx = np.nonzero(un)[0]
        if idx.size:
            ks = np.arange(idx.size)
            mi = -m[idx]
            # a - W a_prev >= b
            blocks.append(_place(mi, idx.size, total, prev_off, off, idx, None, None))
            row_lo.append(bias[idx])
            row_hi.append(np.full(idx.size, np.inf))
            # a - W a_prev - l δ <= b - l
            blocks.append(_place(mi, idx.size, total, prev_off, off, idx, bin_off[k] + ks, -l[idx]))
            row_lo.append(np.full(idx.size, -np.inf))
            row_hi.append(bias[idx] - l[idx])
            # a - u δ <= 0
            blocks.append(_place(None, idx.size, total, prev_off, off, idx, bin_off[k] + ks, -u[idx]))
            row_lo.append(np.full(idx.size, -np.inf))
            row_hi.append(np.zeros(idx.size))
    for un in unstable:
        var_lo.append(np.zeros(int(un.sum())))
        var_hi.append(np.ones(int(un.sum())))
    last = net.affines[-1]
    m_last = _sparse(last.op.matrix())
    coef = _sparse(sp.csr_array(np.atleast_2d(c)) @ m_last)  # (rows, n_L)
    const = np.atleast_2d(c) @ last.bias - d
    prev_off = offsets[-1]
    prev_n = net.widths[-1] if net.widths else n0
    objective = np.zeros(total)
    if multi:
        var_lo.append(np.array([-np.inf]))
        var_hi.append(np.array([cutoff]))
        r = coef.shape[0]
        block = sp.hstack([sp.csr_array((r, prev_off)), coef, sp.csr_array((r, total - prev_off - prev_n))])
        tcol = sp.csr_array((-np.ones(r), (np.arange(r), np.full(r, t_col))), shape=(r, total))
        blocks.append(sp.csr_array(block + tcol))
        row_lo.append(np.full(r, -np.inf))
        row_hi.append(-const)
        objective[t_col] = 1.0
        shift = 0.0
    else:
        row = sp.hstack([sp.csr_array((1, prev_off)), coef, sp.csr_array((1, total - prev_off - prev_n))])
        blocks.append(sp.csr_array(row))
        row_lo.append(np.array([-np.inf]))
        row_hi.append(np.array([cutoff - const[0]]))
        objective[prev_off:prev_off + prev_n] = coef.toarray()[0]
        shift = float(const[0])
    a = sp.vstack(blocks, format="csr")
    integrality = np.zeros(total)
    for k, un in enumerate(unstable):
        integrality[bin_off[k]:bin_off[k] + int(un.sum())] = 1
    res = milp(objective, integrality=integrality,
               bounds=Bounds(np.concatenate(var_lo), np.concatenate(var_hi)),
               constraints=LinearConstraint(a, np.concatenate(row_lo), np.concatenate(row_hi)),
               options={"time_limit": max(0.01, time_limit), "presolve": True})
    log.debug("milp: status %s (%s), %d columns, %d binaries", res.status, res.message, total,
              int(integrality.sum()))
    if res.status == 2:
        return MilpOutcome(MilpStatus.INFEASIBLE, message=str(res.message))
    if res.x is not None and res.status in (0, 1):
        return MilpOutcome(MilpStatus.FEASIBLE, np.asarray(res.x[:n0]), float(res.fun) + shift, str(res.message))
    if res.status == 1:
        return MilpOutcome(MilpStatus.TIMEOUT, message=str(res.message))
    return MilpOutcome(MilpStatus.FAILED, message=str(res.message))


def _place(m: sp.csr_array | None, rows: int, total: int, prev_off: int, off: int, idx: np.ndarray,
           bin_cols: np.ndarray | None, bin_vals: np.ndarray | None) -> sp.csr_array:
    """One block of rows: ``m`` on the previous layer's columns, +1 on ``a[idx]``, binaries."""
    parts = []
    if m is not None:
        coo = sp.coo_array(m)
        parts.append((coo.data, coo.row, coo.col + prev_off))
    parts.append((np.ones(rows), np.arange(rows), off + idx))
    if bin_cols is not None:
        parts.append((bin_vals, np.arange(rows), bin_cols))
    data = np.concatenate([p[0] for p in parts])
    r = np.concatenate([p[1] for p in parts])
    cidx = np.concatenate([p[2] for p in parts])
    return sp.csr_array((data, (r, cidx)), shape=(rows, total))
