"""Batched linear bounds on torch: CROWN, alpha-CROWN and beta-CROWN split constraints.

One backward pass bounds ``C @ y`` from below for a batch of *domains*: each domain is the
input box with some ReLUs fixed by branching (``split`` +1: ``z >= 0``, -1: ``z <= 0``). The
pre-activation bounds of every ReLU layer (``lower``/``upper``) are computed once over the
domain's box and are clamped by its splits, so a split unit is relaxed exactly.

* alpha: the lower line ``a >= alpha·z`` of an unstable ReLU is sound for any alpha in [0, 1];
  alpha (one per domain, row and unit) is optimised by projected gradient ascent on the bound.
* beta: a split ``s·z >= 0`` adds ``-beta·s·z`` (beta >= 0) to the bounded function, which
  never raises it inside the domain; optimised with alpha (Lagrangian of the split).

Every alpha in [0, 1] and beta >= 0 gives a sound bound, so each iterate's bound is sound and
the best one per (domain, row) is kept. Arithmetic follows `vnnbridge.engine.torchnet`
(float64): the bounds are about the exact-arithmetic network, like `vnnbridge.engine.bounds`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from vnnbridge.engine.bounds import LayerBounds, layer_bounds
from vnnbridge.engine.graph import LayerNet
from vnnbridge.engine.packing import Segments, pack
from vnnbridge.engine.torchnet import TorchNet

__all__ = ["Pass", "backward_bound", "clamp_splits", "intermediate_bounds", "interval_step", "optimise"]

# Rows of identity back-substituted at once when tightening a layer's bounds (memory cap).
_CHUNK_ENTRIES = 4_000_000


@dataclass
class Pass:
    """One backward pass: lower bounds (B, m), the minimising inputs (B, m, n0) and, per ReLU
    layer, the coefficients on its outputs before relaxation (B, m, n_k) for branching."""

    lb: Any
    x: Any
    lams: list[Any]


def clamp_splits(l: Any, u: Any, split: Any | None) -> tuple[Any, Any]:
    """The bounds of a domain: a split unit's bound on the wrong side of 0 becomes 0."""
    if split is None:
        return l, u
    return (l.where(split <= 0, l.clamp(min=0.0)), u.where(split >= 0, u.clamp(max=0.0)))


def backward_bound(tn: TorchNet, lower: list[Any], upper: list[Any], lo: Any, hi: Any, c: Any,
                   start: int | None = None, alpha: list[Any] | None = None, split: list[Any] | None = None,
                   beta: list[Any] | None = None, keep_lams: bool = False,
                   segments: Segments | None = None) -> Pass:
    """Lower bounds of ``c @ z_start`` (``z_start`` the input of ReLU layer ``start``, default
    the output) over each domain.

    ``lower``/``upper``: per ReLU layer (B or 1, n_k); ``lo``/``hi``: (B or 1, n0); ``c``:
    (B or 1, m, n_start). ``alpha``/``beta``: per layer (B, m, n_k) or None (CROWN's adaptive
    slope, no split multipliers); ``split``: per layer (B, n_k) in {-1, 0, 1} or None.
    ``segments``: rows packed with several units (`vnnbridge.engine.packing`); ``lb`` is then
    (B, m, slots), one bound per unit.
    """
    k = tn.depth if start is None else start

    def total(t: Any, level: int) -> Any:
        return t.sum(-1) if segments is None else segments.total(t, level)

    lam = c
    const = total(lam * tn.biases[k], k)
    lam = tn.ops[k].backward(lam)
    lams: list[Any] = [None] * k
    for j in range(k - 1, -1, -1):
        s = None if split is None else split[j]
        l, u = clamp_splits(lower[j], upper[j], s)
        mask = tn.masks[j]
        if keep_lams:
            lams[j] = lam
        active = (l >= 0) | ~mask
        unstable = mask & (l < 0) & (u > 0)
        den = (u - l).where(unstable, u.new_ones(()))
        su = (u / den).where(unstable, u.new_zeros(()))
        tu = (-l * su).where(unstable, u.new_zeros(()))
        if alpha is not None and alpha[j] is not None:
            sl = alpha[j].clamp(0.0, 1.0)
        else:
            sl = (u >= -l).to(lam.dtype).unsqueeze(-2)
        pos, neg = lam.clamp(min=0.0), lam.clamp(max=0.0)
        relaxed = pos * sl + neg * su.unsqueeze(-2)
        lam_z = lam.where(active.unsqueeze(-2), relaxed.where(unstable.unsqueeze(-2), lam.new_zeros(())))
        if beta is not None and beta[j] is not None and s is not None:
            lam_z = lam_z - beta[j].clamp(min=0.0) * s.to(lam.dtype).unsqueeze(-2)
        if segments is None:
            const = const + (neg * tu.unsqueeze(-2)).sum(-1) + (lam_z * tn.biases[j]).sum(-1)
        else:  # one scatter per layer
            const = const + segments.total(neg * tu.unsqueeze(-2) + lam_z * tn.biases[j], j)
        lam = tn.ops[j].backward(lam_z)
    centre = ((lo + hi) / 2.0).unsqueeze(-2)
    radius = ((hi - lo) / 2.0).unsqueeze(-2)
    if segments is None:
        lb = const + (lam * centre).sum(-1) - (lam.abs() * radius).sum(-1)
    else:
        lb = const + total(lam * centre - lam.abs() * radius, -1)
    x = centre - lam.sign() * radius
    return Pass(lb, x, lams)


def intermediate_bounds(net: LayerNet, tn: TorchNet, lo: np.ndarray, hi: np.ndarray, iters: int = 0,
                        budget: float = 2e8, work: float = 4e10, alpha_work: float = 1.6e11,
                        deadline: float = float("inf"),
                        init: tuple[list[Any], list[Any]] | None = None,
                        base: LayerBounds | None = None) -> tuple[list[Any], list[Any]]:
    """Pre-activation bounds of every ReLU layer over one box, as (1, n_k) tensors.

    Starts from `vnnbridge.engine.bounds.layer_bounds` (interval and CROWN where its
    coefficient cap allows) and, layer by layer, first carries the layer below's tightened
    bounds up by interval arithmetic, then back-substitutes the units still unstable through
    torch, in chunks: no coefficient cap, conv layers included, and units with disjoint windows
    packed into shared rows (`vnnbridge.engine.packing`: the same bounds for a fraction of the
    work on conv and pooling layers). A layer is skipped (keeps its interval bounds) when that
    would cost more than ``work`` multiply-adds or the ``deadline`` (perf_counter) has passed.
    With ``iters`` the unstable units' bounds are then alpha-optimised (alpha per unit and
    side), where it pays: while the alpha tensors of a layer stay under ``budget`` entries and
    its ``iters`` passes (unpacked, with gradients) under ``alpha_work`` multiply-adds (measured
    on fmnist_cnn_c32-c64-fc128, 10 images: with ``alpha_work`` 8e9, which skips its two pooling
    layers after conv2, 3 of the first 6 apothems came out a step lower and no search was
    faster), and while two iterations fit before the ``deadline`` at the rate the layer's
    back-substitution measured (one pass on a wide conv layer takes seconds, and the deadline
    is only checked between iterations).
    ``init``: bounds an earlier call computed on the same box; its back-substitution is not
    repeated, only the alpha optimisation runs. ``base``: ``layer_bounds(net, lo, hi)`` when the
    caller has it already.
    """

    import torch

    tlo, thi = tn.tensor(lo)[None, :], tn.tensor(hi)[None, :]
    if init is None:
        base = base or layer_bounds(net, lo, hi)
        lower = [tn.tensor(l)[None, :] for l in base.lower]
        upper = [tn.tensor(u)[None, :] for u in base.upper]
    else:
        lower, upper = [l.clone() for l in init[0]], [u.clone() for u in init[1]]
    with torch.no_grad():
        for k in range(1, tn.depth):
            _carry_up(tn, lower, upper, k)
            if init is None and time.perf_counter() < deadline:
                _back_substitute(net, tn, lower, upper, tlo, thi, k, work, deadline)
            if iters and time.perf_counter() < deadline:
                _tighten(tn, lower, upper, tlo, thi, k, iters, budget, alpha_work, deadline)
    return lower, upper


def interval_step(tn: TorchNet, k: int, lower: Any, upper: Any) -> tuple[Any, Any]:
    """Interval bounds of ReLU layer ``k``'s input from layer ``k - 1``'s input bounds (for
    ``k = 0``: from the input box), batched over the leading dimension."""
    import torch

    if k > 0:
        m = tn.masks[k - 1]
        lower, upper = torch.where(m, lower.clamp(min=0.0), lower), torch.where(m, upper.clamp(min=0.0), upper)
    mid = tn.ops[k].forward((lower + upper) / 2.0) + tn.biases[k]
    rad = tn.ops[k].abs_forward((upper - lower) / 2.0)
    return mid - rad, mid + rad


def _carry_up(tn: TorchNet, lower: list[Any], upper: list[Any], k: int) -> None:
    """Layer ``k``'s bounds tightened, in place, by interval arithmetic from layer ``k - 1``'s."""
    import torch

    l, u = interval_step(tn, k, lower[k - 1], upper[k - 1])
    lower[k] = torch.maximum(lower[k], l)
    upper[k] = torch.minimum(upper[k], u)


def _back_substitute(net: LayerNet, tn: TorchNet, lower: list[Any], upper: list[Any], lo: Any, hi: Any,
                     k: int, work: float, deadline: float) -> None:
    """CROWN on the unstable units of layer ``k``, both sides, in place (packed where it pays)."""
    import torch

    l, u = lower[k], upper[k]
    idx = torch.nonzero(tn.masks[k] & (l[0] < 0) & (u[0] > 0)).flatten()
    if idx.numel() == 0:
        return
    packing = pack(net, k, idx.cpu().numpy())
    rows = idx.numel() if packing is None else packing.rows
    if 2 * rows * tn.back_cost(k) > work:
        return
    n = tn.widths[k]
    if packing is None:
        chunk = max(1, _CHUNK_ENTRIES // (2 * max([net.inputs] + tn.widths[:k + 1])))
    else:
        chunk = max(1, _CHUNK_ENTRIES // (2 * (net.inputs + sum(tn.widths[:k + 1]))))
    t0, done = time.perf_counter(), 0
    for s in range(0, rows, chunk):
        if time.perf_counter() > deadline:
            break
        done += min(chunk, rows - s)
        if packing is None:
            units = idx[s:s + chunk]
            where = torch.arange(units.numel(), device=tn.device)
            segments = None
        else:
            table = packing.table[s:s + chunk]
            slot = table >= 0
            units = torch.from_numpy(packing.index[table[slot]]).to(tn.device)
            where = torch.from_numpy(np.nonzero(slot)[0]).to(tn.device)
            segments = packing.segments(s, s + chunk, torch, tn.device)
        r = int(where.max()) + 1
        eye = torch.zeros((2 * r, n), dtype=tn.dtype, device=tn.device)
        eye[where, units] = 1.0
        eye[where + r, units] = -1.0
        got = backward_bound(tn, lower, upper, lo, hi, eye[None], start=k, segments=segments).lb[0]
        if packing is not None:
            got = torch.cat([got[:r][slot], got[r:][slot]])  # one bound per unit, units' order
            where = torch.arange(units.numel(), device=tn.device)
            r = units.numel()
        lower[k][0, units] = torch.maximum(l[0, units], got[where])
        upper[k][0, units] = torch.minimum(u[0, units], -got[where + r])
    if done:
        tn.seconds_per_mac = (time.perf_counter() - t0) / (2 * done * tn.back_cost(k))


def _tighten(tn: TorchNet, lower: list[Any], upper: list[Any], lo: Any, hi: Any, k: int, iters: int,
             budget: float, work: float, deadline: float = float("inf")) -> None:
    """alpha-CROWN on the still unstable units of layer ``k`` (both sides), in place."""
    import torch

    l, u = lower[k], upper[k]
    idx = torch.nonzero(tn.masks[k] & (l[0] < 0) & (u[0] > 0)).flatten()
    rows = idx.numel()
    if rows == 0 or 2 * rows * sum(tn.widths[:k]) > budget or 2 * rows * tn.back_cost(k) * iters > work:
        return
    # One iteration (a pass with gradients, its backward, Adam) costs about three plain passes;
    # the deadline is only checked between iterations, so a layer without time for two is skipped
    # (Convnet_maxpool at 6/255: one alpha pass on a pooling layer made a 20 s call take 29 s).
    if 2 * 3 * 2 * rows * tn.back_cost(k) * tn.seconds_per_mac > deadline - time.perf_counter():
        return
    eye = torch.zeros((2 * rows, tn.widths[k]), dtype=tn.dtype, device=tn.device)
    r = torch.arange(rows, device=tn.device)
    eye[r, idx] = 1.0
    eye[r + rows, idx] = -1.0
    with torch.enable_grad():
        best, *_ = optimise(tn, lower, upper, lo, hi, eye[None], torch.full((2 * rows,), torch.inf,
                            dtype=tn.dtype, device=tn.device), None, None, None, iters, start=k,
                            deadline=deadline)
    lower[k][0, idx] = torch.maximum(l[0, idx], best[0, :rows])
    upper[k][0, idx] = torch.minimum(u[0, idx], -best[0, rows:])


def optimise(tn: TorchNet, lower: list[Any], upper: list[Any], lo: Any, hi: Any, c: Any, target: Any,
             alpha: list[Any] | None, split: list[Any] | None, beta: list[Any] | None, iters: int,
             lr_alpha: float = 0.1, lr_beta: float = 0.05, start: int | None = None,
             deadline: float = float("inf")) -> tuple[Any, list[Any], list[Any] | None, Pass]:
    """Projected gradient ascent on alpha (and beta where there are splits).

    At most ``iters`` steps, fewer once ``deadline`` (perf_counter) has passed: every iterate's
    bound is sound, so stopping early only loosens it (one iteration on a wide conv network
    takes seconds, and the oracle must answer on time).
    ``target`` (m,) is the row threshold: a domain is done once one of its rows' bound exceeds
    it (the polytope ``c @ y <= target`` is refuted), and stops driving the optimisation.
    Returns the best bound per (domain, row) over all iterates, the final alpha and beta, and
    the last pass (with its coefficients and minimising inputs) for branching and attacks.
    """
    import torch

    sizes = [c.shape[0], lo.shape[0]] + [t.shape[0] for t in (split or []) + (alpha or []) if t is not None]
    b = max(sizes)  # the number of domains (other tensors broadcast from 1)
    m = c.shape[-2]
    k = tn.depth if start is None else start
    if alpha is None:
        alpha = [None] * k
    alpha = [(_initial_alpha(lower[j], upper[j], b, m) if a is None else a).detach().clone().requires_grad_(True)
             for j, a in enumerate(alpha[:k])]
    params = [(a, lr_alpha) for a in alpha]
    if split is not None:
        beta = [(torch.zeros((b, m, tn.widths[j]), dtype=tn.dtype, device=tn.device) if bt is None else bt)
                .detach().clone().requires_grad_(True) for j, bt in enumerate(beta or [None] * tn.depth)]
        params += [(bt, lr_beta) for bt in beta]
    else:
        beta = None
    opt = _Adam(params)
    best = None
    last = None
    took = 0.0  # the last iteration's seconds: one that would end past the deadline is not begun
    for it in range(iters + 1):
        t0 = time.perf_counter()
        final = it == iters or t0 + took > deadline
        with torch.set_grad_enabled(not final):
            p = backward_bound(tn, lower, upper, lo, hi, c, start=start, alpha=alpha, split=split, beta=beta,
                               keep_lams=final)
        lb = p.lb.detach()
        best = lb if best is None else torch.maximum(best, lb)
        if final:
            last = p
            break
        open_ = ~(best > target).any(-1)  # domains not yet refuted
        if not bool(open_.any()):
            with torch.no_grad():
                last = backward_bound(tn, lower, upper, lo, hi, c, start=start, alpha=alpha, split=split,
                                      beta=beta, keep_lams=True)
            break
        loss = -(p.lb * open_.unsqueeze(-1)).sum()
        grads = torch.autograd.grad(loss, [t for t, _ in params])
        with torch.no_grad():
            opt.step(grads)
            for a in alpha:
                a.clamp_(0.0, 1.0)
            for bt in beta or []:
                bt.clamp_(min=0.0)
        took = time.perf_counter() - t0
    assert last is not None and best is not None
    return best, [a.detach() for a in alpha], None if beta is None else [bt.detach() for bt in beta], last


class _Adam:
    """Adam on a few tensors (torch.optim would import torch's compiler stack: seconds)."""

    def __init__(self, params: list[tuple[Any, float]], b1: float = 0.9, b2: float = 0.999,
                 eps: float = 1e-8) -> None:
        import torch

        self.params, self.b1, self.b2, self.eps, self.t = params, b1, b2, eps, 0
        self.m = [torch.zeros_like(p) for p, _ in params]
        self.v = [torch.zeros_like(p) for p, _ in params]

    def step(self, grads: tuple[Any, ...]) -> None:
        self.t += 1
        c1, c2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        for (p, lr), g, m, v in zip(self.params, grads, self.m, self.v):
            m.mul_(self.b1).add_(g, alpha=1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            p.sub_(lr * (m / c1) / ((v / c2).sqrt() + self.eps))


def _initial_alpha(l: Any, u: Any, b: int, m: int) -> Any:
    """CROWN's adaptive slope, one per (domain, row, unit)."""
    sl = (u >= -l).to(l.dtype)
    return sl.expand(b, -1).unsqueeze(1).expand(b, m, -1)
