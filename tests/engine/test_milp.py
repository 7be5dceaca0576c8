"""The complete decision: branch and bound agrees with HiGHS's MIP and with the true minimum."""

from __future__ import annotations

import time

import numpy as np
import pytest

from vnnbridge.engine.bounds import layer_bounds
from vnnbridge.engine.graph import Affine, LayerNet, Relu
from vnnbridge.engine.milp import MilpStatus, solve_polytope
from vnnbridge.engine.ops import DenseOp


def _net(rng: np.random.Generator, widths: list[int], partial: bool = False) -> LayerNet:
    affines, relus = [], []
    for a, b in zip(widths, widths[1:]):
        affines.append(Affine(DenseOp(rng.normal(size=(b, a))), rng.normal(size=b) * 0.5))
    for w in widths[1:-1]:
        mask = np.ones(w, dtype=bool)
        if partial:
            mask[::3] = False  # some units pass through, as MaxPool's do
        relus.append(Relu(mask))
    return LayerNet((1, widths[0]), affines, relus)


def _true_min(net: LayerNet, lo: np.ndarray, hi: np.ndarray, c: np.ndarray, d: np.ndarray) -> float:
    """The minimum of max_r (c_r·y - d_r) by HiGHS's MIP without a cutoff (optimising)."""
    out = solve_polytope(net, layer_bounds(net, lo, hi), c, d, np.inf, -np.inf, 60, method="mip")
    assert out.status is MilpStatus.FEASIBLE
    return float(out.value)


@pytest.mark.parametrize("seed", range(12))
def test_branch_and_bound_decides_both_sides_of_the_minimum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    net = _net(rng, [3, 8, 6, 3], partial=seed % 3 == 0)
    lo = rng.uniform(-1, 0, 3)
    hi = lo + rng.uniform(0.2, 1.5, 3)
    rows = 1 + seed % 2
    c = rng.normal(size=(rows, 3))
    d = rng.normal(size=rows)
    best = _true_min(net, lo, hi, c, d)
    # No sampled point beats the optimum (the MIP is exact) ...
    xs = lo + rng.random((4000, 3)) * (hi - lo)
    sampled = np.max(net.forward(xs) @ c.T - d, axis=1)
    assert sampled.min() >= best - 1e-6
    bounds = layer_bounds(net, lo, hi)
    # ... branch and bound proves nothing lies below it ...
    above = solve_polytope(net, bounds, c, d, best - 1e-3, best - 1e-2, 60)
    assert above.status is MilpStatus.INFEASIBLE
    # ... and finds a real point just above it.
    below = solve_polytope(net, bounds, c, d, best + 1e-3, best + 1e-3, 60)
    assert below.status is MilpStatus.FEASIBLE
    value = float(np.max(net.forward(below.x) @ c.T - d))
    assert value <= best + 1e-3 + 1e-7
    assert np.all(below.x >= lo - 1e-9) and np.all(below.x <= hi + 1e-9)


def test_the_mip_method_agrees_on_a_wider_network() -> None:
    rng = np.random.default_rng(99)
    net = _net(rng, [12, 12, 12, 4])
    lo = rng.uniform(-1, 0, 12)
    hi = lo + 0.6
    c = np.array([[1.0, -1.0, 0.0, 0.0]])
    d = np.zeros(1)
    best = _true_min(net, lo, hi, c, d)
    bounds = layer_bounds(net, lo, hi)
    for cutoff in (best - 0.05, best + 0.05):
        bab = solve_polytope(net, bounds, c, d, cutoff, cutoff, 60)
        mip = solve_polytope(net, bounds, c, d, cutoff, cutoff, 60, method="mip")
        assert bab.status is mip.status


def test_time_limit_is_respected() -> None:
    rng = np.random.default_rng(5)
    net = _net(rng, [30, 40, 40, 40, 5])
    lo, hi = -np.ones(30), np.ones(30)
    c = np.array([[1.0, -1.0, 0, 0, 0]])
    # Everything is below the cutoff but nothing is "good": the search would visit the whole tree.
    start = time.perf_counter()
    out = solve_polytope(net, layer_bounds(net, lo, hi), c, np.zeros(1), 1e9, -1e9, 0.2)
    assert time.perf_counter() - start < 0.2 + 5.0  # generous: a deadline, not a speed claim
    assert out.status in (MilpStatus.TIMEOUT, MilpStatus.FEASIBLE)
    if out.status is MilpStatus.FEASIBLE:
        assert out.value > -1e9
