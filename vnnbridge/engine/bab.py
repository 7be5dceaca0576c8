"""Branch and bound over ReLU phases with batched alpha/beta-CROWN bounds (`vnnbridge.engine.crown`).

A *domain* is the box with some ReLUs fixed (``split`` +1 / -1 per unit) and one polytope of
the property: the polytopes of a disjunction (a robustness query's other classes) are searched
together, so that one round serves all of them. Each round takes the ``batch`` open domains
with the worst bound, splits each on its chosen unit into two children, and bounds all children
in one batched optimisation warm-started from the parent's alpha and beta. A child whose bound
refutes its polytope (one row above ``b + tol``) is closed. The
minimising inputs of every bound are evaluated: a float64 violation goes to the caller's
``confirm`` (onnxruntime) and, failing that, to its ``polish`` attack.

The branching unit is the one with the largest BaBSR score (the relaxation's intercept cost
``-min(λ, 0)·(-l·u/(u-l))``). With ``candidates`` > 1, filtered smart branching: the top
units by that score are candidates, and the one whose two children have the best worse bound
under one CROWN pass wins. Measured on the MLPs near their apothem (where branching matters),
three candidates visited more domains than one and took longer (mnist-net_256x4 image 0 at
9/255: 4,749 domains, 10.9 s against 3,395, 7.0 s; image 3 at 12/255: 25.7 s against 19.4 s).

The last mile is exact: a domain with few unstable units left goes to the HiGHS MILP
(`vnnbridge.engine.milp.solve_polytope`) with its splits as bounds and rows, so the search
is complete; the MILP's answers are final (INFEASIBLE closes the domain).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from vnnbridge.engine.bounds import LayerBounds
from vnnbridge.engine.crown import backward_bound, clamp_splits, optimise
from vnnbridge.engine.graph import LayerNet
from vnnbridge.engine.milp import MilpStatus, solve_polytope
from vnnbridge.engine.torchnet import TorchNet

__all__ = ["BabOptions", "BabResult", "pad_polytopes", "verify_polytope", "verify_polytopes"]

log = logging.getLogger(__name__)


@dataclass
class BabOptions:
    """Knobs of the search (defaults measured on the mnistfc and conv networks)."""

    batch: int = 64  # parent domains per round
    root_iters: int = 30  # alpha-CROWN iterations at the root
    inter_iters: int = 20  # alpha-CROWN iterations on intermediate layers (once per box)
    iters: int = 8  # alpha/beta iterations per round
    candidates: int = 1  # filtered smart branching: candidates scored per domain (1 = BaBSR, measured best)
    lp_unstable: int = 12  # a domain with at most this many unstable units goes to the MILP
    max_domains: int = 200_000
    memory: float = 2e9  # bytes for the open domains' splits, alphas and betas (caps their number)
    method: str = "bab"  # the MILP's method for the last mile
    input_split: int = 8  # networks with at most this many inputs split inputs instead (`engine.inputsplit`)


@dataclass
class BabResult:
    """``status``: "unsat" (every domain closed), "sat" (``x`` confirmed), "unknown" or "timeout"."""

    status: str
    x: np.ndarray | None = None
    message: str = ""
    domains: int = 0
    stats: dict[str, float] = field(default_factory=dict)


@dataclass
class _Domains:
    split: list[Any]  # per layer (N, n_k) int8
    alpha: list[Any]  # per layer (N, m, n_k)
    beta: list[Any] | None
    margin: Any  # (N,) best row bound minus its threshold (> 0 closes)
    branch: Any  # (N, 2) layer and unit to split next
    poly: Any  # (N,) the polytope the domain belongs to

    def __len__(self) -> int:
        return int(self.margin.shape[0])

    def take(self, idx: Any) -> _Domains:
        return _Domains([s[idx] for s in self.split], [a[idx] for a in self.alpha],
                        None if self.beta is None else [b[idx] for b in self.beta], self.margin[idx],
                        self.branch[idx], self.poly[idx])

    @staticmethod
    def cat(parts: list[_Domains]) -> _Domains:
        import torch

        parts = [p for p in parts if len(p)]
        beta = None
        if any(p.beta is not None for p in parts):
            beta = [torch.cat([p.beta[j] if p.beta is not None else torch.zeros_like(p.alpha[j]) for p in parts])
                    for j in range(len(parts[0].split))]
        return _Domains([torch.cat([p.split[j] for p in parts]) for j in range(len(parts[0].split))],
                        [torch.cat([p.alpha[j] for p in parts]) for j in range(len(parts[0].split))],
                        beta, torch.cat([p.margin for p in parts]), torch.cat([p.branch for p in parts]),
                        torch.cat([p.poly for p in parts]))


def pad_polytopes(polys: list[tuple[np.ndarray, np.ndarray, np.ndarray]], outputs: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The polytopes ``(a, b, tol)`` as one batch: ``c`` (P, m, outputs), ``b`` and the refuting
    threshold ``b + tol`` (P, m), rows padded to the longest polytope with zero rows whose
    ``b`` and threshold are +inf (they never refute, and never count as violated by a point)."""
    rows = max(len(b) for _, b, _ in polys)
    c = np.zeros((len(polys), rows, outputs))
    b_all = np.full((len(polys), rows), np.inf)
    target = np.full((len(polys), rows), np.inf)
    for i, (a, b, t) in enumerate(polys):
        c[i, :len(b)], b_all[i, :len(b)], target[i, :len(b)] = a, b, np.asarray(b) + t
    return c, b_all, target


class _Search:
    def __init__(self, net: LayerNet, tn: TorchNet, lower: list[Any], upper: list[Any], lo: np.ndarray,
                 hi: np.ndarray, polys: list[tuple[np.ndarray, np.ndarray, np.ndarray]], deadline: float,
                 confirm: Callable[[np.ndarray], np.ndarray | None],
                 polish: Callable[[np.ndarray, int], np.ndarray | None], opts: BabOptions) -> None:
        self.net, self.tn, self.lower, self.upper = net, tn, lower, upper
        self.lo_np, self.hi_np = lo, hi
        self.lo, self.hi = tn.tensor(lo)[None, :], tn.tensor(hi)[None, :]
        self.polys = [(np.atleast_2d(a), np.asarray(b, float), np.asarray(t, float)) for a, b, t in polys]
        c, b_all, target = pad_polytopes(self.polys, net.outputs)
        self.c, self.b, self.target = tn.tensor(c), tn.tensor(b_all), tn.tensor(target)
        self.deadline, self.confirm, self.polish, self.o = deadline, confirm, polish, opts
        self.undecided: list[str] = []
        self.stats = {"rounds": 0, "bounded": 0, "milp": 0}
        self.best_violation = np.inf

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    # -- witnesses ----------------------------------------------------------------------------
    def check_points(self, x: Any, poly: Any) -> np.ndarray | None:
        """Evaluate the minimising inputs (B, m, n0) of domains of polytopes ``poly`` (B,) against
        their polytope: confirm the most violating one."""
        import torch

        with torch.no_grad():
            # centre ± radius can land an ulp outside the box: clip (the witness check is exact).
            pts = torch.minimum(torch.maximum(x.reshape(-1, x.shape[-1]), self.lo), self.hi)
            y = self.tn.forward(pts).reshape(x.shape[0], x.shape[1], -1)
            v = (torch.einsum("bpo,bro->bpr", y, self.c[poly]) - self.b[poly].unsqueeze(1)).max(-1).values
            i = int(torch.argmin(v))
            value = float(v.reshape(-1)[i])
        self.best_violation = min(value, self.best_violation)
        if value > 0.0:
            return None  # the screening attack already searched the box; bounds close the rest
        point = pts[i].cpu().numpy().astype(np.float64)
        found = self.confirm(point)
        return found if found is not None else self.polish(point[None, :], int(poly[i // x.shape[1]]))

    # -- branching ----------------------------------------------------------------------------
    def scores(self, split: list[Any], lams: list[Any]) -> Any:
        """BaBSR intercept scores (B, sum n_k); -inf on units that are not unstable."""
        import torch

        out = []
        for j in range(self.tn.depth):
            l, u = clamp_splits(self.lower[j], self.upper[j], split[j])
            unstable = self.tn.masks[j] & (l < 0) & (u > 0)
            tu = (-l * u / (u - l).where(unstable, u.new_ones(()))).where(unstable, u.new_zeros(()))
            lam = lams[j]
            s = ((-lam.clamp(max=0.0)) * tu.unsqueeze(-2)).sum(-2) + 1e-4 * (lam.abs() * tu.unsqueeze(-2)).sum(-2)
            out.append(s.where(unstable, torch.full_like(s, -torch.inf)))
        return torch.cat(out, dim=-1)

    def unstable_count(self, split: list[Any]) -> Any:
        total = 0
        for j in range(self.tn.depth):
            l, u = clamp_splits(self.lower[j], self.upper[j], split[j])
            total = total + (self.tn.masks[j] & (l < 0) & (u > 0)).sum(-1)
        return total

    def choose(self, split: list[Any], alpha: list[Any], beta: list[Any] | None, lams: list[Any], poly: Any) -> Any:
        """Per domain the (layer, unit) to split: the top BaBSR unit, or filtered smart branching
        over the top ``candidates`` units."""
        import torch

        sc = self.scores(split, lams)
        offsets = np.cumsum([0] + self.tn.widths)
        k = max(1, min(self.o.candidates, sc.shape[-1]))
        top = torch.topk(sc, k, dim=-1)
        cand = top.indices  # (B, k)
        if k > 1:
            n = cand.shape[0]
            flat = cand.reshape(-1)
            rep = lambda t: t.repeat_interleave(k, 0)  # noqa: E731 - one domain per candidate
            kids = []
            for side in (1, -1):
                sp_ = [rep(s).clone() for s in split]
                self._apply(sp_, flat, side, offsets)
                kids.append(sp_)
            both = [torch.cat([kids[0][j], kids[1][j]]) for j in range(self.tn.depth)]
            al = [torch.cat([rep(a), rep(a)]) for a in alpha]
            bt = None if beta is None else [torch.cat([rep(x), rep(x)]) for x in beta]
            twice = torch.cat([rep(poly), rep(poly)])
            with torch.no_grad():
                lb = backward_bound(self.tn, self.lower, self.upper, self.lo, self.hi, self.c[twice], alpha=al,
                                    split=both, beta=bt).lb
            m = (lb - self.target[twice]).max(-1).values
            worse = torch.minimum(m[:n * k], m[n * k:]).reshape(n, k)
            worse = worse.where(torch.isfinite(top.values), torch.full_like(worse, -torch.inf))
            pick = cand.gather(1, worse.argmax(-1, keepdim=True))[:, 0]
        else:
            pick = cand[:, 0]
        layer = torch.as_tensor(np.searchsorted(offsets, pick.cpu().numpy(), side="right") - 1,
                                device=pick.device)
        unit = pick - torch.as_tensor(offsets, device=pick.device)[layer]
        return torch.stack([layer, unit], dim=-1)

    @staticmethod
    def _apply(split: list[Any], flat: Any, side: int, offsets: np.ndarray) -> None:
        import torch

        layer = np.searchsorted(offsets, flat.cpu().numpy(), side="right") - 1
        for j in range(len(split)):
            rows = np.nonzero(layer == j)[0]
            if rows.size:
                r = torch.as_tensor(rows, device=flat.device)
                split[j][r, flat[r] - int(offsets[j])] = side

    # -- last mile ------------------------------------------------------------------------------
    def exact(self, split: list[Any], poly: int) -> tuple[str, np.ndarray | None]:
        """The MILP on one domain of polytope ``poly``: "closed", "sat" (with a confirmed point),
        "open" or "timeout"."""
        a, b, tol = self.polys[poly]
        lower, upper, inactive = [], [], []
        for j in range(self.tn.depth):
            s = split[j][None]
            l, u = clamp_splits(self.lower[j], self.upper[j], s)
            lower.append(l[0].cpu().numpy().astype(np.float64))
            upper.append(u[0].cpu().numpy().astype(np.float64))
            inactive.append((s[0] < 0).cpu().numpy())
        bounds = LayerBounds(self.lo_np, self.hi_np, lower, upper)
        band = float(np.max(tol))
        self.stats["milp"] += 1
        out = solve_polytope(self.net, bounds, a, b, band, -band, max(0.01, self.left()),
                             self.o.method, inactive)
        if out.status is MilpStatus.INFEASIBLE:
            return "closed", None
        if out.status is MilpStatus.TIMEOUT:
            return "timeout", None
        if out.status is MilpStatus.FAILED:
            self.undecided.append(f"HiGHS failed: {out.message}")
            return "open", None
        if out.x is None:
            self.undecided.append(f"HiGHS gave no point: {out.message}")
            return "open", None
        x = np.clip(out.x, self.lo_np, self.hi_np)
        found = self.confirm(x)
        if found is None:
            found = self.polish(x[None, :], poly)
        if found is not None:
            return "sat", found
        self.undecided.append(f"the optimum {out.value:.3g} of a domain lies within the numerical tolerance "
                              f"{band:.3g} and no float32 witness was found")
        return "open", None

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, alpha0: list[Any] | None) -> BabResult:
        import torch

        n0 = len(self.polys)  # one root domain per polytope
        with torch.no_grad():
            split0 = [torch.zeros((n0, w), dtype=torch.int8, device=self.tn.device) for w in self.tn.widths]
            poly0 = torch.arange(n0, device=self.tn.device)
        best, alpha, _, p = optimise(self.tn, self.lower, self.upper, self.lo, self.hi, self.c, self.target,
                                     alpha0, None, None, self.o.root_iters, deadline=self.deadline)
        self.stats["bounded"] += n0
        margin = (best - self.target).max(-1).values
        keep = margin <= 0
        if not bool(keep.any()):
            return self.done("unsat")
        found = self.check_points(p.x.expand(n0, -1, -1)[keep], poly0[keep])
        if found is not None:
            return self.done("sat", found)
        with torch.no_grad():
            idx = torch.nonzero(keep).flatten()
            split0 = [s[idx] for s in split0]
            alpha = [a_.expand(n0, -1, -1)[idx] for a_ in alpha]
            lams = [lm.expand(n0, -1, -1)[idx] for lm in p.lams]
            root = _Domains(split0, alpha, None, margin[idx], torch.zeros((idx.numel(), 2), dtype=torch.long),
                            poly0[idx])
            root.branch = self.choose(split0, alpha, None, lams, root.poly)
        closed = self.close_small(root)
        if isinstance(closed, BabResult):
            return closed
        doms = closed
        per_domain = sum(self.tn.widths) * (1 + 2 * self.c.shape[-2] * self.c.element_size())
        limit = max(self.o.batch, min(self.o.max_domains, int(self.o.memory // max(1, per_domain))))
        while len(doms):
            if self.left() <= 0:
                return self.done("timeout", message=f"{len(doms)} domains open")
            if len(doms) > limit:
                return self.done("unknown", message=f"more than {limit} open domains (memory cap)")
            self.stats["rounds"] += 1
            order = torch.argsort(doms.margin)
            n = min(self.o.batch, len(doms))
            parents, doms = doms.take(order[:n]), doms.take(order[n:])
            kids = self.children(parents)
            target = self.target[kids.poly]
            best, alpha, beta, p = optimise(self.tn, self.lower, self.upper, self.lo, self.hi, self.c[kids.poly],
                                            target, kids.alpha, kids.split, kids.beta, self.o.iters,
                                            deadline=self.deadline)
            self.stats["bounded"] += len(kids)
            margin = (best - target).max(-1).values
            keep = margin <= 0
            if bool(keep.any()):
                found = self.check_points(p.x.expand(keep.shape[0], -1, -1)[keep], kids.poly[keep])
                if found is not None:
                    return self.done("sat", found)
            with torch.no_grad():
                idx = torch.nonzero(keep).flatten()
                if idx.numel() == 0:
                    continue
                split = [s[idx] for s in kids.split]
                al = [a_[idx] for a_ in alpha]
                bt = [b_[idx] for b_ in beta] if beta is not None else None
                lams = [lm.expand(keep.shape[0], -1, -1)[idx] for lm in p.lams]  # the last may broadcast
                open_ = _Domains(split, al, bt, margin[idx], torch.zeros((idx.numel(), 2), dtype=torch.long),
                                 kids.poly[idx])
                open_.branch = self.choose(split, al, bt, lams, open_.poly)
            still = self.close_small(open_)
            if isinstance(still, BabResult):
                return still
            doms = _Domains.cat([doms, still]) if len(doms) else still
        if self.undecided:
            return self.done("unknown", message="; ".join(self.undecided[:3]))
        return self.done("unsat")

    def children(self, parents: _Domains) -> _Domains:
        import torch

        offsets = np.cumsum([0] + self.tn.widths)
        flat = torch.as_tensor(offsets, device=parents.branch.device)[parents.branch[:, 0]] + parents.branch[:, 1]
        sides = []
        for side in (1, -1):
            sp_ = [s.clone() for s in parents.split]
            self._apply(sp_, flat, side, offsets)
            sides.append(sp_)
        split = [torch.cat([sides[0][j], sides[1][j]]) for j in range(self.tn.depth)]
        alpha = [torch.cat([a, a]) for a in parents.alpha]
        beta = None if parents.beta is None else [torch.cat([b, b]) for b in parents.beta]
        return _Domains(split, alpha, beta, torch.cat([parents.margin, parents.margin]),
                        torch.cat([parents.branch, parents.branch]), torch.cat([parents.poly, parents.poly]))

    def close_small(self, doms: _Domains) -> _Domains | BabResult:
        """Hand the domains with few unstable units left to the exact MILP."""
        import torch

        small = self.unstable_count(doms.split) <= self.o.lp_unstable
        if not bool(small.any()):
            return doms
        for i in torch.nonzero(small).flatten().tolist():
            if self.left() <= 0:
                return self.done("timeout", message="in the MILP of a domain")
            state, x = self.exact([s[i] for s in doms.split], int(doms.poly[i]))
            if state == "sat":
                return self.done("sat", x)
            if state == "timeout":
                return self.done("timeout", message="the MILP of a domain ran out of time")
        return doms.take(torch.nonzero(~small).flatten())

    def done(self, status: str, x: np.ndarray | None = None, message: str = "") -> BabResult:
        return BabResult(status, x, message, int(self.stats["bounded"]), dict(self.stats))


def verify_polytopes(net: LayerNet, tn: TorchNet, lower: list[Any], upper: list[Any], lo: np.ndarray,
                     hi: np.ndarray, polys: list[tuple[np.ndarray, np.ndarray, np.ndarray]], deadline: float,
                     confirm: Callable[[np.ndarray], np.ndarray | None],
                     polish: Callable[[np.ndarray, int], np.ndarray | None], opts: BabOptions | None = None,
                     alpha0: list[Any] | None = None) -> BabResult:
    """Decide whether some input of the box has ``a @ y <= b`` (beyond the band ``tol``) for one
    of the polytopes ``(a, b, tol)`` (a disjunction, as a robustness property's classes).

    One search for all of them: each domain belongs to one polytope, and every round bounds the
    worst domains of all polytopes in one batch (the polytopes of a robustness query are refuted
    by similar splits, and a round costs about the same for 10 domains as for 100).
    ``lower``/``upper``: the box's pre-activation bounds ((1, n_k) tensors, see
    `vnnbridge.engine.crown.intermediate_bounds`); ``alpha0``: per layer (P, m, n_k) or None.
    ``unsat`` means every domain of every polytope was refuted with its margin ``tol``; ``sat``
    comes with a point ``confirm`` or ``polish(x0, polytope)`` accepted.
    """
    return _Search(net, tn, lower, upper, lo, hi, polys, deadline, confirm, polish, opts or BabOptions()).run(alpha0)


def verify_polytope(net: LayerNet, tn: TorchNet, lower: list[Any], upper: list[Any], lo: np.ndarray,
                    hi: np.ndarray, a: np.ndarray, b: np.ndarray, tol: np.ndarray, deadline: float,
                    confirm: Callable[[np.ndarray], np.ndarray | None],
                    polish: Callable[[np.ndarray], np.ndarray | None], opts: BabOptions | None = None,
                    alpha0: list[Any] | None = None) -> BabResult:
    """`verify_polytopes` for one polytope ``a @ y <= b`` (``polish`` takes the start points only)."""
    return verify_polytopes(net, tn, lower, upper, lo, hi, [(a, b, tol)], deadline, confirm,
                            lambda x0, _: polish(x0), opts, alpha0)
