"""Branch and bound on the input box, for networks with few inputs (ACAS Xu-like controllers).

With a handful of inputs, halving the box along one coordinate shrinks the bounds of every
neuron at once, so splitting inputs refutes sooner than splitting ReLUs (alpha-beta-CROWN and
nnenum do the same on such networks). Each round bounds a batch of boxes together on torch:
CROWN intermediate bounds per box (all layers, batched), then alpha-CROWN on the polytope's rows.
A box is closed when one row's bound exceeds its threshold by the tolerance band; the bounds'
minimising inputs and the box centres are checked for a violation (onnxruntime confirms, PGD
polishes). An open box is halved on the coordinate whose two halves leave the least open margin
under one CROWN pass (every coordinate is tried: there are few). A polytope of several rows also
gets their average as a row (a box across the rows' crossing is refuted by no single row).

Sound for the same reasons as `vnnbridge.engine.bab` (float64 bounds, every alpha in [0, 1]);
complete up to the band: a box whose bound and best point both lie within the band of the
threshold (the optimum is there, up to float noise), or that was halved ``max_depth`` times, is
not split further and makes the answer ``unknown`` unless a witness turns up elsewhere.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from vnnbridge.engine.bab import BabResult
from vnnbridge.engine.crown import backward_bound, interval_step, optimise
from vnnbridge.engine.torchnet import TorchNet

__all__ = ["box_bounds", "verify_input_split"]


def box_bounds(tn: TorchNet, lo: Any, hi: Any) -> tuple[list[Any], list[Any]]:
    """Pre-activation bounds of every ReLU layer for a batch of boxes (B, n0): (B, n_k) each;
    interval bounds from the layer below intersected with CROWN's, as in
    `vnnbridge.engine.bounds.layer_bounds` for one box (tested against it)."""
    import torch

    lower: list[Any] = []
    upper: list[Any] = []
    with torch.no_grad():
        for k, n in enumerate(tn.widths):
            il, iu = interval_step(tn, k, lower[k - 1] if k else lo, upper[k - 1] if k else hi)
            eye = torch.eye(n, dtype=tn.dtype, device=tn.device)
            lb = backward_bound(tn, lower, upper, lo, hi, torch.cat([eye, -eye])[None], start=k).lb
            lower.append(torch.maximum(il, lb[:, :n]))
            upper.append(torch.minimum(iu, -lb[:, n:]))
    return lower, upper


def verify_input_split(tn: TorchNet, lo: np.ndarray, hi: np.ndarray, a: np.ndarray, b: np.ndarray,
                       tol: np.ndarray, deadline: float, confirm: Callable[[np.ndarray], np.ndarray | None],
                       polish: Callable[[np.ndarray], np.ndarray | None], batch: int = 512, iters: int = 5,
                       max_boxes: int = 1_000_000, max_depth: int = 60) -> BabResult:
    """Decide whether some input of the box has ``a @ y <= b`` (beyond the band ``tol``) by
    splitting the input box; ``unsat``, ``sat`` (with a confirmed point), ``unknown`` or ``timeout``."""
    import torch

    a = np.atleast_2d(a)
    b, tol = np.asarray(b, dtype=np.float64), np.asarray(tol, dtype=np.float64)
    rows = a.shape[0]
    b_t = tn.tensor(b)
    if rows > 1:
        # A violating point satisfies every row, so also their average: one more row that can
        # refute a box where each row alone is undecided (a box across the rows' crossing).
        a = np.vstack([a, a.mean(0)])
        b, tol = np.append(b, b.mean()), np.append(tol, tol.max())
    c = tn.tensor(a)[None]
    target = tn.tensor(b + tol)
    tol_t = tn.tensor(tol)
    undecided = 0
    los, his = tn.tensor(lo)[None, :], tn.tensor(hi)[None, :]
    depth = torch.zeros(1, dtype=torch.long, device=tn.device)
    stats: dict[str, float] = {"rounds": 0, "bounded": 0, "milp": 0}
    while los.shape[0]:
        if time.perf_counter() > deadline:
            return BabResult("timeout", None, f"{los.shape[0]} input boxes open", int(stats["bounded"]), stats)
        if los.shape[0] > max_boxes:
            return BabResult("unknown", None, f"more than {max_boxes} open input boxes", int(stats["bounded"]), stats)
        stats["rounds"] += 1
        n = min(batch, los.shape[0])
        blo, bhi, bdepth = los[:n], his[:n], depth[:n]
        los, his, depth = los[n:], his[n:], depth[n:]
        lower, upper = box_bounds(tn, blo, bhi)
        best, _, _, p = optimise(tn, lower, upper, blo, bhi, c, target, None, None, None, iters, deadline=deadline)
        stats["bounded"] += n
        open_ = ~(best > target).any(-1)
        if not bool(open_.any()):
            continue
        blo, bhi, bdepth = blo[open_], bhi[open_], bdepth[open_]
        with torch.no_grad():
            pts = torch.cat([p.x[open_].reshape(-1, blo.shape[-1]), (blo + bhi) / 2.0])
            lows = torch.cat([blo.repeat_interleave(c.shape[-2], 0), blo])
            highs = torch.cat([bhi.repeat_interleave(c.shape[-2], 0), bhi])
            pts = torch.minimum(torch.maximum(pts, lows), highs)
            v = ((tn.forward(pts) @ c[0, :rows].T) - b_t).max(-1).values
            i = int(torch.argmin(v))
            k = blo.shape[0]
            v_box = torch.minimum(v[:-k].reshape(k, -1).min(-1).values, v[-k:])  # best point per box
        if float(v[i]) <= 0.0:
            point = pts[i].cpu().numpy().astype(np.float64)
            found = confirm(point)
            if found is None:
                found = polish(point[None, :])
            if found is not None:
                return BabResult("sat", found, "", int(stats["bounded"]), stats)
        # A box whose bound and best point both lie within the band of the threshold holds the
        # optimum up to float noise: splitting it only multiplies boxes. It stays undecided.
        in_band = (best[open_] > target - 2.0 * tol_t).any(-1) & (v_box <= tol_t.max())
        stuck = in_band | (bdepth >= max_depth)
        if bool(stuck.any()):
            undecided += int(stuck.sum())
            blo, bhi, bdepth = blo[~stuck], bhi[~stuck], bdepth[~stuck]
            if blo.shape[0] == 0:
                continue
        dim = _choose(tn, blo, bhi, c, target, batch)
        with torch.no_grad():
            box = torch.arange(blo.shape[0], device=tn.device)
            mid = (blo[box, dim] + bhi[box, dim]) / 2.0
            left_hi, right_lo = bhi.clone(), blo.clone()
            left_hi[box, dim] = mid
            right_lo[box, dim] = mid
            los = torch.cat([los, blo, right_lo])
            his = torch.cat([his, left_hi, bhi])
            depth = torch.cat([depth, bdepth + 1, bdepth + 1])
    if undecided:
        return BabResult("unknown", None, f"{undecided} input boxes undecided: the optimum lies within the "
                         "tolerance band and no float32 witness was found", int(stats["bounded"]), stats)
    return BabResult("unsat", None, "", int(stats["bounded"]), stats)


def _choose(tn: TorchNet, lo: Any, hi: Any, c: Any, target: Any, batch: int) -> Any:
    """Per box the coordinate to halve: the one whose worse half has the best CROWN bound
    (every coordinate is tried: there are few). Scoring by the bound's input coefficients alone
    misses coordinates that only the relaxation's slack depends on, and never splits them."""
    import torch

    n, d = lo.shape
    out = []
    with torch.no_grad():
        step = max(1, batch // (2 * d))
        for s in range(0, n, step):
            blo, bhi = lo[s:s + step], hi[s:s + step]
            k = blo.shape[0]
            mid = (blo + bhi) / 2.0
            eye = torch.eye(d, dtype=torch.bool, device=tn.device)
            # children: box i, coordinate j, side 0 (lower half) / 1 (upper half)
            clo = blo[:, None, :].expand(k, d, d)
            chi = bhi[:, None, :].expand(k, d, d)
            upper_half_lo = torch.where(eye, mid[:, None, :], clo)
            lower_half_hi = torch.where(eye, mid[:, None, :], chi)
            kid_lo = torch.cat([clo, upper_half_lo], 1).reshape(-1, d)
            kid_hi = torch.cat([lower_half_hi, chi], 1).reshape(-1, d)
            lower, upper = box_bounds(tn, kid_lo, kid_hi)
            lb = backward_bound(tn, lower, upper, kid_lo, kid_hi, c).lb
            margin = (lb - target).max(-1).values.reshape(k, 2, d)
            out.append((margin[:, 0].clamp(max=0.0) + margin[:, 1].clamp(max=0.0)).argmax(-1))
    return torch.cat(out)
