"""Sound bounds over an input box: interval arithmetic and CROWN-style linear back-substitution.

All arithmetic is float64 on the float32 weights (exactly representable), so the bounds are
those of the exact-arithmetic network; `vnnbridge.oracles.embedded` adds the tolerance that
covers float32 evaluation. Each ReLU is relaxed by the triangle's upper line and, below, by
the line of slope 0 or 1 closer to it (the adaptive choice of CROWN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vnnbridge.engine.graph import Affine, LayerNet, Relu

__all__ = ["LayerBounds", "layer_bounds", "output_bounds", "relaxation"]

# Back-substitute a layer's bounds only while the coefficient matrices stay this small
# (entries); wider conv layers fall back to interval bounds from the layer before.
_CROWN_LIMIT = 30_000_000


@dataclass
class LayerBounds:
    """Pre-activation bounds of every ReLU layer for one input box."""

    lo: np.ndarray
    hi: np.ndarray
    lower: list[np.ndarray]
    upper: list[np.ndarray]


def relaxation(lower: np.ndarray, upper: np.ndarray, relu: Relu) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slopes (lower, upper) and upper intercept of the linear relaxation of ``relu``."""
    active = (lower >= 0) | ~relu.mask
    unstable = ~active & (upper > 0)
    den = np.where(unstable, upper - lower, 1.0)
    su = np.where(active, 1.0, np.where(unstable, upper / den, 0.0))
    tu = np.where(unstable, -lower * upper / den, 0.0)
    sl = np.where(active, 1.0, np.where(unstable & (upper >= -lower), 1.0, 0.0))
    return sl, su, tu


def _interval(aff: Affine, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = (lo + hi) / 2.0
    r = (hi - lo) / 2.0
    mid = aff.op.forward(c[None, :])[0] + aff.bias
    rad = aff.op.abs_forward(r[None, :])[0]
    return mid - rad, mid + rad


def _activate(lower: np.ndarray, upper: np.ndarray, relu: Relu) -> tuple[np.ndarray, np.ndarray]:
    return (np.where(relu.mask, np.maximum(lower, 0.0), lower),
            np.where(relu.mask, np.maximum(upper, 0.0), upper))


def _back(net: LayerNet, relax: list[tuple[np.ndarray, np.ndarray, np.ndarray]], k: int,
          lam: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Lower bounds of ``lam @ z_k`` over the box (``z_k`` = input of ReLU k, or the output)."""
    const = np.zeros(lam.shape[0])
    j = k
    while True:
        aff = net.affines[j]
        const += lam @ aff.bias
        lam = aff.op.backward(lam)
        if j == 0:
            break
        sl, su, tu = relax[j - 1]
        pos = np.maximum(lam, 0.0)
        neg = np.minimum(lam, 0.0)
        const += neg @ tu
        lam = pos * sl + neg * su
        j -= 1
    c = (lo + hi) / 2.0
    r = (hi - lo) / 2.0
    return const + lam @ c - np.abs(lam) @ r


def _crown_cost(net: LayerNet, k: int, rows: int) -> int:
    widths = [net.affines[0].op.in_size] + net.widths[:k]
    return rows * max(widths)


def layer_bounds(net: LayerNet, lo: np.ndarray, hi: np.ndarray, crown: bool = True) -> LayerBounds:
    """Interval bounds, tightened by back-substitution where affordable, for every ReLU input."""
    lower: list[np.ndarray] = []
    upper: list[np.ndarray] = []
    relax: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    a_lo, a_hi = lo, hi
    for k, relu in enumerate(net.relus):
        l, u = _interval(net.affines[k], a_lo, a_hi)
        n = l.size
        if crown and k > 0 and _crown_cost(net, k, 2 * n) <= _CROWN_LIMIT:
            eye = np.eye(n)
            both = _back(net, relax, k, np.vstack([eye, -eye]), lo, hi)
            l = np.maximum(l, both[:n])
            u = np.minimum(u, -both[n:])
        lower.append(l)
        upper.append(u)
        relax.append(relaxation(l, u, relu))
        a_lo, a_hi = _activate(l, u, relu)
    return LayerBounds(lo, hi, lower, upper)


def output_bounds(net: LayerNet, bounds: LayerBounds, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower bounds of the rows of ``c @ y`` (back-substitution) and interval bounds of ``y``."""
    relax = [relaxation(l, u, r) for l, u, r in zip(bounds.lower, bounds.upper, net.relus)]
    lb = _back(net, relax, len(net.relus), np.atleast_2d(c), bounds.lo, bounds.hi)
    if net.relus:
        a_lo, a_hi = _activate(bounds.lower[-1], bounds.upper[-1], net.relus[-1])
    else:
        a_lo, a_hi = bounds.lo, bounds.hi
    y_lo, y_hi = _interval(net.affines[-1], a_lo, a_hi)
    return lb, np.maximum(np.abs(y_lo), np.abs(y_hi))
