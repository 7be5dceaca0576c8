"""The complete decision: an exact big-M MILP of the network over a box, solved by HiGHS.

Each unstable ReLU ``a = max(z, 0)`` with ``l < 0 < u`` gets one binary ``δ`` and the exact
encoding ``a >= z, a >= 0, a <= u·δ, a <= z - l·(1 - δ)``; stable units are linear. The
objective is the polytope's worst row ``t >= a_r·y - b_r``, minimised subject to ``t <= cutoff``
so that the branch and bound prunes every node whose relaxation already proves the row margin.
This module builds the encoding; `vnnbridge.engine.highs` solves it (HiGHS's MIP, or our
branch and bound over HiGHS LPs).
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from vnnbridge.engine.bounds import LayerBounds
from vnnbridge.engine.graph import LayerNet

__all__ = ["Encoding", "MilpOutcome", "MilpStatus", "encode", "milp_size", "solve_polytope"]

log = logging.getLogger(__name__)

# HiGHS ignores coefficients at or below this; `_drop_tiny` removes them soundly instead.
_SMALL = 1e-9


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


@dataclass(eq=False)
class Encoding:
    """The MILP of one polytope over one box, as HiGHS takes it (rows ``rlo <= A v <= rhi``)."""

    cost: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    a: sp.csr_array
    rlo: np.ndarray
    rhi: np.ndarray
    integrality: np.ndarray
    n0: int
    shift: float  # objective constant
    offsets: list[int]  # first column of x, then of each ReLU layer's outputs
    binaries: list[tuple[int, np.ndarray]]  # per ReLU layer: first δ column, the units it covers
    cutoff_row: int | None  # the objective row (single-row polytopes)
    cutoff_col: int | None  # the column t (several rows)
    n_rows_obj: int  # the objective rows, last in ``a``

    def set_cutoff(self, h: Any, cutoff: float) -> None:
        """Tighten the objective cutoff of a live HiGHS model."""
        if self.cutoff_row is not None:
            h.changeRowBounds(self.cutoff_row, -_inf(), cutoff - self.shift)
        else:
            h.changeColBounds(self.cutoff_col, -_inf(), cutoff)


def _inf() -> float:
    import highspy

    return float(highspy.kHighsInf)


def encode(net: LayerNet, bounds: LayerBounds, c: np.ndarray, d: np.ndarray, cutoff: float,
           inactive: list[np.ndarray] | None = None) -> Encoding:
    """The big-M MILP minimising ``max_r (c_r·y - d_r)`` over the box, capped at ``cutoff``.

    ``inactive`` (per ReLU layer, boolean) marks units fixed inactive by a branch-and-bound split:
    besides ``a = 0`` they get the row ``z <= 0``, so the MILP is the split domain exactly.
    """
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
    multi = len(d) > 1
    convex = [np.zeros_like(un) for un in unstable]
    if not multi and unstable:
        # Minimising a row whose weight on an unstable last-layer unit is >= 0 pushes that unit
        # down onto max(z, 0) by itself: its convex relaxation is exact and needs no binary.
        weight = (sp.csr_array(np.atleast_2d(c)) @ _sparse(net.affines[-1].op.matrix())).toarray()
        convex[-1] = unstable[-1] & (np.ravel(weight) >= 0)
        unstable[-1] = unstable[-1] & ~convex[-1]
    bin_off = []
    for un in unstable:
        bin_off.append(total)
        total += int(un.sum())
    t_col = total
    total += 1 if multi else 0

    blocks: list[sp.csr_array] = []
    row_lo: list[np.ndarray] = []
    row_hi: list[np.ndarray] = []

    for k, (relu, l, u) in enumerate(zip(net.relus, bounds.lower, bounds.upper)):
        aff = net.affines[k]
        m = _sparse(aff.op.matrix())
        prev_off, prev_n = offsets[k], (n0 if k == 0 else net.widths[k - 1])
        off = offsets[k + 1]
        active = (l >= 0) | ~relu.mask
        dead = relu.mask & (u <= 0)
        un = unstable[k]
        vlo = np.where(dead, 0.0, np.where(un | convex[k], 0.0, l))
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
        idx = np.nonzero(dead & inactive[k])[0] if inactive is not None else np.zeros(0, dtype=np.intp)
        if idx.size:  # z <= 0 as a - W a_prev >= b with a fixed at 0
            blocks.append(_place(-m[idx], idx.size, total, prev_off, off, idx, None, None))
            row_lo.append(bias[idx])
            row_hi.append(np.full(idx.size, np.inf))
        idx = np.nonzero(convex[k])[0]
        if idx.size:  # a - W a_prev >= b (and a >= 0 as a bound)
            blocks.append(_place(-m[idx], idx.size, total, prev_off, off, idx, None, None))
            row_lo.append(bias[idx])
            row_hi.append(np.full(idx.size, np.inf))
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
    lo_all, hi_all = np.concatenate(var_lo), np.concatenate(var_hi)
    rlo, rhi = np.concatenate(row_lo), np.concatenate(row_hi)
    a, rlo, rhi = _drop_tiny(a, rlo, rhi, lo_all, hi_all)
    return Encoding(objective, lo_all, hi_all, a, rlo, rhi, integrality, n0, shift, offsets,
                    [(bin_off[k], np.nonzero(un)[0]) for k, un in enumerate(unstable)],
                    None if multi else a.shape[0] - 1, t_col if multi else None, coef.shape[0])


def solve_polytope(net: LayerNet, bounds: LayerBounds, c: np.ndarray, d: np.ndarray, cutoff: float,
                   good: float, time_limit: float, method: str = "bab",
                   inactive: list[np.ndarray] | None = None) -> MilpOutcome:
    """Decide whether ``max_r (c_r·y - d_r) <= cutoff`` somewhere in the box.

    INFEASIBLE proves the minimum is above ``cutoff``; FEASIBLE comes with an input whose value
    is <= ``good`` when one exists (else the best one found, whose value is above ``good``).
    ``method`` is "bab" (own branch and bound over ReLU phases, HiGHS for the LPs) or "mip"
    (HiGHS's MIP solver on the same encoding). ``inactive``: see `encode`.
    """
    enc = encode(net, bounds, c, d, cutoff, inactive)
    deadline = time.perf_counter() + time_limit
    from vnnbridge.engine.highs import branch_and_bound, mip, reach

    if method == "mip":
        return mip(enc, time_limit)
    if method != "bab":
        raise ValueError(f"unknown MILP method {method!r}")
    return branch_and_bound(net, enc, good, deadline, reach(net, bounds, c))


def _drop_tiny(a: sp.csr_array, rlo: np.ndarray, rhi: np.ndarray, lo: np.ndarray,
               hi: np.ndarray) -> tuple[sp.csr_array, np.ndarray, np.ndarray]:
    """Remove coefficients HiGHS would silently ignore, widening each row by what they can add."""
    tiny = np.abs(a.data) <= _SMALL
    if not tiny.any():
        return a, rlo, rhi
    reach = np.maximum(np.abs(lo), np.abs(hi))
    reach = np.where(np.isfinite(reach), reach, 0.0)
    coo = a.tocoo()
    drop = np.abs(coo.data) <= _SMALL
    slack = np.zeros(a.shape[0])
    np.add.at(slack, coo.row[drop], np.abs(coo.data[drop]) * reach[coo.col[drop]])
    keep = ~drop
    a = sp.csr_array((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=a.shape)
    return a, rlo - slack, rhi + slack


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
