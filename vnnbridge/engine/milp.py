"""The complete decision: an exact big-M MILP of the network over a box, solved by HiGHS.

Each unstable ReLU ``a = max(z, 0)`` with ``l < 0 < u`` gets one binary ``δ`` and the exact
encoding ``a >= z, a >= 0, a <= u·δ, a <= z - l·(1 - δ)``; stable units are linear. The
objective is the polytope's worst row ``t >= a_r·y - b_r``, minimised subject to ``t <= cutoff``
so that the branch and bound prunes every node whose relaxation already proves the row margin.
"""

from __future__ import annotations

import enum
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from vnnbridge.engine.bounds import LayerBounds, relaxation
from vnnbridge.engine.graph import LayerNet

__all__ = ["Encoding", "MilpOutcome", "MilpStatus", "encode", "milp_size", "solve_polytope"]

log = logging.getLogger(__name__)

# HiGHS ignores coefficients at or below this; `_drop_tiny` removes them soundly instead.
_SMALL = 1e-9
# One thread (the machine is shared), no log, and a light heuristic effort: the root cuts and
# heuristics dominated the run time on the reference networks while the trees stay small.
_OPTIONS: dict[str, object] = {"output_flag": False, "threads": 1, "presolve": "off"}
# A ReLU whose LP value is this close to max(z, 0) needs no branching.
_GAP = 1e-9


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
    if method == "mip":
        return _mip(enc, time_limit)
    if method != "bab":
        raise ValueError(f"unknown MILP method {method!r}")
    return _branch_and_bound(net, enc, good, deadline, _reach(net, bounds, c))


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


_BANNER_LOCK = threading.Lock()
_banner_done = False


def _new_highs() -> Any:
    """A HiGHS instance; the first one of the process is built with stdout silenced.

    HiGHS >= 1.16 prints a copyright banner to the C-level stdout when the first instance is
    constructed, before any option can turn output off. That would corrupt machine-readable
    stdout (``vnnbridge query --json``, ``verify``), so fd 1 points at /dev/null meanwhile.
    """
    global _banner_done
    import highspy

    with _BANNER_LOCK:
        if not _banner_done:
            sys.stdout.flush()
            saved, sink = os.dup(1), os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(sink, 1)
                first = highspy.Highs()
            finally:
                os.dup2(saved, 1)
                os.close(saved)
                os.close(sink)
            _banner_done = True
            return first
    return highspy.Highs()


def _model(enc: Encoding, integer: bool) -> Any:
    import highspy

    h = _new_highs()
    for key, value in _OPTIONS.items():
        h.setOptionValue(key, value)
    csc = sp.csc_array(enc.a)
    csc.sort_indices()
    inf = highspy.kHighsInf
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = enc.cost.size, enc.a.shape[0]
    lp.col_cost_ = enc.cost
    lp.col_lower_ = np.where(np.isfinite(enc.lo), enc.lo, -inf)
    lp.col_upper_ = np.where(np.isfinite(enc.hi), enc.hi, inf)
    lp.row_lower_ = np.where(np.isfinite(enc.rlo), enc.rlo, -inf)
    lp.row_upper_ = np.where(np.isfinite(enc.rhi), enc.rhi, inf)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = csc.indptr
    lp.a_matrix_.index_ = csc.indices
    lp.a_matrix_.value_ = csc.data
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = enc.cost.size, enc.a.shape[0]
    if integer:
        lp.integrality_ = [highspy.HighsVarType.kInteger if v else highspy.HighsVarType.kContinuous
                           for v in enc.integrality]
    h.passModel(lp)
    return h


def _mip(enc: Encoding, time_limit: float) -> MilpOutcome:
    import highspy

    h = _model(enc, integer=True)
    h.setOptionValue("time_limit", max(0.01, float(time_limit)))
    h.run()
    status = h.getModelStatus()
    ms = highspy.HighsModelStatus
    message = h.modelStatusToString(status)
    if status == ms.kInfeasible:
        return MilpOutcome(MilpStatus.INFEASIBLE, message=message)
    sol = h.getSolution()
    if sol.value_valid and status in (ms.kOptimal, ms.kTimeLimit, ms.kSolutionLimit, ms.kInterrupt):
        x = np.asarray(sol.col_value[:enc.n0], dtype=np.float64)
        return MilpOutcome(MilpStatus.FEASIBLE, x, float(h.getInfo().objective_function_value) + enc.shift, message)
    if status == ms.kTimeLimit:
        return MilpOutcome(MilpStatus.TIMEOUT, message=message)
    return MilpOutcome(MilpStatus.FAILED, message=message)


def _branch_and_bound(net: LayerNet, enc: Encoding, good: float, deadline: float,
                      reach: list[np.ndarray]) -> MilpOutcome:
    """Depth-first branch and bound over the δ columns, one warm-started LP per node.

    Fixing δ to 1 (0) turns the big-M rows into ``a = z >= 0`` (``a = 0 >= z``): the node is the
    sub-problem of that ReLU phase exactly. A node whose LP is infeasible is pruned (the cutoff
    row makes "bound above cutoff" infeasible); a node whose LP optimum has every unit on its
    ReLU (``a = max(z, 0)``) is a real network point.
    """
    import highspy

    ms = highspy.HighsModelStatus
    h = _model(enc, integer=False)
    # HiGHS's clock adds up over the runs of one model: one budget for all nodes.
    h.setOptionValue("time_limit", max(0.01, deadline - time.perf_counter()))
    cols = np.concatenate([first + np.arange(units.size) for first, units in enc.binaries]) \
        if enc.binaries else np.zeros(0, dtype=np.intp)
    cols = cols.astype(np.int32)
    n_bin = cols.size
    # Branch where the relaxation costs most: the gap times the unit's reach to the objective.
    weight = np.concatenate([reach[k][units] for k, (_, units) in enumerate(enc.binaries)]) \
        if enc.binaries else np.zeros(0)
    weight = np.maximum(weight, 1e-12)
    best: MilpOutcome | None = None
    stack: list[np.ndarray] = [np.full(n_bin, -1, dtype=np.int8)]  # -1 free, 0/1 fixed
    nodes = 0
    while stack:
        if time.perf_counter() > deadline:
            return best if best is not None else MilpOutcome(MilpStatus.TIMEOUT, message=f"{nodes} nodes")
        fix = stack.pop()
        nodes += 1
        if n_bin:
            lo = np.where(fix == 1, 1.0, 0.0)
            hi = np.where(fix == 0, 0.0, 1.0)
            h.changeColsBounds(n_bin, cols, lo, hi)
        h.run()
        status = h.getModelStatus()
        if status == ms.kInfeasible:
            continue
        if status != ms.kOptimal:
            if status == ms.kTimeLimit:
                return best if best is not None else MilpOutcome(MilpStatus.TIMEOUT, message=f"{nodes} nodes")
            return MilpOutcome(MilpStatus.FAILED, message=h.modelStatusToString(status))
        v = np.asarray(h.getSolution().col_value)
        gap, z_pos = _relu_gaps(net, enc, v)
        free = fix < 0
        score = np.where(free, gap * weight, -1.0)
        j = int(np.argmax(score)) if n_bin else -1
        if n_bin == 0 or score[j] <= _GAP:
            x = v[:enc.n0].copy()
            value = float(h.getInfo().objective_function_value) + enc.shift
            if best is None or value < (best.value or np.inf):
                best = MilpOutcome(MilpStatus.FEASIBLE, x, value, f"{nodes} nodes")
            if value <= good:
                return best
            enc.set_cutoff(h, good)  # from now on only a clearly violating point is news
            continue
        first, second = (1, 0) if z_pos[j] else (0, 1)
        for phase in (second, first):  # depth first into the phase the LP point is in
            child = fix.copy()
            child[j] = phase
            stack.append(child)
    if best is not None:
        return best
    return MilpOutcome(MilpStatus.INFEASIBLE, message=f"{nodes} nodes")


def _reach(net: LayerNet, bounds: LayerBounds, c: np.ndarray) -> list[np.ndarray]:
    """Per ReLU layer: how strongly each unit's output moves the objective rows (back-substitution
    through the relaxed network, the largest magnitude over rows)."""
    lam = np.atleast_2d(c)
    out: list[np.ndarray] = [np.zeros(0)] * len(net.relus)
    for k in range(len(net.relus), 0, -1):
        lam = net.affines[k].op.backward(lam)  # on the outputs of ReLU layer k - 1
        out[k - 1] = np.abs(lam).max(axis=0)
        sl, su, _ = relaxation(bounds.lower[k - 1], bounds.upper[k - 1], net.relus[k - 1])
        lam = np.maximum(lam, 0.0) * sl + np.minimum(lam, 0.0) * su
    return out


def _relu_gaps(net: LayerNet, enc: Encoding, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per δ column: how far the LP's ``a`` sits above ``max(z, 0)``, and whether ``z > 0``."""
    gaps, signs = [], []
    for k, (_first, units) in enumerate(enc.binaries):
        if not units.size:
            continue
        prev = v[enc.offsets[k]:enc.offsets[k] + (enc.n0 if k == 0 else net.widths[k - 1])]
        z = net.affines[k].op.forward(prev[None, :])[0][units] + net.affines[k].bias[units]
        a = v[enc.offsets[k + 1] + units]
        gaps.append(np.abs(a - np.maximum(z, 0.0)))
        signs.append(z > 0)
    if not gaps:
        return np.zeros(0), np.zeros(0, dtype=bool)
    return np.concatenate(gaps), np.concatenate(signs)


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
