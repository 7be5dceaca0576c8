"""The embedded oracle: a sound and complete verifier for piecewise-linear ONNX networks.

Pipeline per case of the spec (cheapest first, each step only for what is still open):

1. the box centre, evaluated exactly as the witness check does (onnxruntime, float32);
2. sound bounds (`vnnbridge.engine.bounds`): interval, then CROWN back-substitution; a
   polytope is refuted when one of its rows ``a·y - b`` has a lower bound above the tolerance;
3. falsification (`vnnbridge.engine.attack`): batched projected sign-gradient descent;
4. the complete decision, per polytope still open, with the remaining time:
   * small networks (at most ``milp_binaries`` unstable ReLUs, e.g. the 784-32-10 paper
     networks): the exact big-M MILP (`vnnbridge.engine.milp`) solved by HiGHS, as before;
   * larger ones: branch and bound on torch (`vnnbridge.engine.bab`): intermediate bounds by
     CROWN without a coefficient cap, alpha-CROWN at the root, beta-CROWN split constraints in
     batched domains of all open polytopes together, BaBSR branching, and the same MILP for
     the last few unstable ReLUs of a domain (so the search stays complete).
   ``engine="milp"`` forces the first path (the engine before the torch bounds), ``"bab"`` the
   second; ``device`` ("cpu", "cuda") is where the torch bounds run.

Only a witness that onnxruntime confirms gives ``sat``. The spec is read from ``query.spec``
(the same spec that was written to ``query.vnnlib``).

Numerical tolerance. The bounds and the MILP compute in float64 with the float32 weights
(exactly representable), i.e. they are about the *exact-arithmetic* network, while the
witness check and the deployed model run onnxruntime in float32. ``unsat`` is therefore
said only when every row that refutes a polytope does so with a margin

    a·y - b  >  ATOL + RTOL * (sum_j |a_j| * max|y_j| + |b|)      (ATOL = 3e-5, RTOL = 1e-5)

over the whole box, with ``max|y_j|`` the interval bound of output j over the box. Measured
float32-vs-float64 differences of a robustness row ``y_c - y_j`` on the shipped networks
(60 points near test images each): at most 6.5e-6 absolute and 4e-6 relative to
``|y_c| + |y_j|``; HiGHS's feasibility tolerances (1e-7 on rows and bounds; HiGHS's silent
dropping of coefficients below 1e-9 is replaced by an explicit widening of the rows) add
less. The margin covers these with a factor of about five. It is *not* the worst-case
rounding bound (``n * 2^-24`` of the summed magnitudes, about 5e-5 relative for 784
inputs): ``unsat`` is a proof for the exact-arithmetic network and, as measured, for its
float32 evaluation. A query whose exact optimum lies inside the band (neither a witness that
onnxruntime confirms nor the margin) gets ``unknown`` with the reason stated instead of
burning the timeout, because no refinement can move it out of the band.

A final Softmax/LogSoftmax is stripped for properties it cannot change: LogSoftmax for rows
whose coefficients sum to zero (``a·logsoftmax(y) = a·y``), Softmax for rows
``α (y_i - y_j) <= 0`` (softmax is strictly monotone in the logit differences). Any other
property on such a network raises `ModelError` naming the node.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

import vnnbridge
from vnnbridge.engine.attack import Objective, pgd, start_points
from vnnbridge.engine.bab import BabOptions, BabResult, pad_polytopes, verify_polytopes
from vnnbridge.engine.bounds import LayerBounds, layer_bounds, output_bounds
from vnnbridge.engine.graph import SUPPORTED_OPS, LayerNet, load_layer_net
from vnnbridge.engine.milp import MilpStatus, milp_size, solve_polytope
from vnnbridge.errors import InputError, ModelError
from vnnbridge.network import Network, load_network
from vnnbridge.oracles.base import OracleResult, Query, Verdict
from vnnbridge.vnnlib.model import Case, Spec

__all__ = ["ATOL", "RTOL", "SUPPORTED_OPS", "EmbeddedOracle"]

log = logging.getLogger(__name__)

ATOL = 3e-5
RTOL = 1e-5


@dataclass
class _Open:
    """A case whose polytopes are not all refuted yet."""

    case: Case
    lo: np.ndarray
    hi: np.ndarray
    polys: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (a, b, tol) per open polytope
    bounds: LayerBounds
    order: list[float] = field(default_factory=list)  # best row lower bound per polytope


class EmbeddedOracle:
    """The built-in verifier: bounds, attack and an exact MILP (HiGHS), no external tool."""

    name = "embedded"

    def __init__(self, *, milp: bool = True, restarts: int = 8, steps: int = 30, seed: int = 0,
                 atol: float = ATOL, rtol: float = RTOL, max_binaries: int = 3000, method: str = "bab",
                 engine: str = "auto", device: str = "cpu", milp_binaries: int = 64,
                 bab: BabOptions | None = None) -> None:
        if restarts < 1 or steps < 0 or max_binaries < 0 or milp_binaries < 0:
            raise InputError("embedded oracle: restarts >= 1, steps >= 0 and max_binaries, milp_binaries >= 0 "
                             "are required")
        if not (atol >= 0 and rtol >= 0):
            raise InputError("embedded oracle: the tolerances must be >= 0")
        self.use_milp, self.restarts, self.steps, self.seed = milp, restarts, steps, seed
        if method not in ("bab", "mip"):
            raise InputError(f"embedded oracle: method must be 'bab' or 'mip', got {method!r}")
        if engine not in ("auto", "milp", "bab"):
            raise InputError(f"embedded oracle: engine must be 'auto', 'milp' or 'bab', got {engine!r}")
        if not (device == "cpu" or device.startswith("cuda")):
            raise InputError(f"embedded oracle: device must be 'cpu' or 'cuda[:N]', got {device!r}")
        self.atol, self.rtol, self.max_binaries, self.method = atol, rtol, max_binaries, method
        self.engine, self.device, self.milp_binaries = engine, device, milp_binaries
        self.bab = bab or BabOptions(method=method)

    def version(self) -> str:
        """The vnnbridge version and the HiGHS binding's."""
        return _version()

    def check(self, query: Query, timeout: float) -> OracleResult:
        """Decide ``query.spec`` on ``query.onnx`` within ``timeout`` seconds."""
        start = time.perf_counter()
        deadline = start + max(0.0, float(timeout))
        net = load_layer_net(query.onnx)
        if self.use_milp and self.engine != "milp" and sum(net.widths) > self.milp_binaries:
            _import_torch_soon()
        spec = query.spec
        if net.inputs != spec.inputs or net.outputs != spec.outputs:
            raise InputError(f"the spec has {spec.inputs} inputs and {spec.outputs} outputs, the network "
                             f"{net.inputs} and {net.outputs}", path=str(query.onnx))
        _check_tail(net, spec, str(query.onnx))
        runtime = load_network(query.onnx)
        rng = np.random.default_rng(self.seed)
        run = _Run(self, net, runtime, spec, rng, deadline)

        def result(verdict: Verdict, witness: np.ndarray | None = None, reason: str = "") -> OracleResult:
            return OracleResult(verdict, self.name, self.version(), time.perf_counter() - start,
                                witness, reason)

        opens: list[_Open] = []
        for case in spec.cases:
            found, pending = run.screen(case)
            if found is not None:
                return result(Verdict.SAT, found)
            if pending is not None:
                opens.append(pending)
        if not opens:
            return result(Verdict.UNSAT)
        reasons: list[str] = []
        for pending in opens:
            verdict, found, reason = run.decide(pending)
            if verdict is Verdict.SAT:
                return result(Verdict.SAT, found)
            if verdict is not Verdict.UNSAT:
                reasons.append(reason)
                if verdict is Verdict.TIMEOUT:
                    return result(Verdict.TIMEOUT, reason=reason)
        if reasons:
            return result(Verdict.UNKNOWN, reason="; ".join(reasons))
        return result(Verdict.UNSAT)


@lru_cache(maxsize=1)
def _import_torch_soon() -> None:
    """Import torch in a background thread while the numpy steps run (seconds saved on the first
    query that reaches branch and bound; Python's import lock makes a later import wait for it)."""
    import importlib
    import threading

    def work() -> None:
        try:
            importlib.import_module("torch")
        except ImportError:  # reported where torch is really needed
            pass

    threading.Thread(target=work, name="vnnbridge-import-torch", daemon=True).start()


@lru_cache(maxsize=1)
def _version() -> str:
    # importlib.metadata reads the package metadata from disk: milliseconds, so once only.
    from importlib.metadata import version

    return f"vnnbridge {vnnbridge.__version__} (highspy {version('highspy')})"


def _check_tail(net: LayerNet, spec: Spec, path: str) -> None:
    if net.tail is None:
        return
    for case in spec.cases:
        for poly in case.polytopes:
            a, b = poly.arrays(spec.outputs)
            for row, bound in zip(a, b):
                nz = np.nonzero(row)[0]
                if net.tail == "LogSoftmax":
                    ok = abs(float(row.sum())) <= 1e-12 * max(1.0, float(np.abs(row).sum()))
                else:
                    ok = nz.size == 0 or (nz.size == 2 and bound == 0.0 and row[nz[0]] == -row[nz[1]])
                if not ok:
                    raise ModelError(f"node {net.tail_node!r} ({net.tail}): the property compares outputs in a "
                                     f"way the final {net.tail} changes; remove the node from the model",
                                     path=path)
    log.info("final %s node %r ignored: the property is invariant under it", net.tail, net.tail_node)


class _Run:
    """The state of one `check` call."""

    def __init__(self, oracle: EmbeddedOracle, net: LayerNet, runtime: Network, spec: Spec,
                 rng: np.random.Generator, deadline: float) -> None:
        self.o, self.net, self.runtime, self.spec, self.rng = oracle, net, runtime, spec, rng
        self.deadline = deadline

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def confirm(self, x: np.ndarray) -> np.ndarray | None:
        """``x`` when onnxruntime (float32) says it violates the spec, else None."""
        y = self.runtime.run(x)
        return x if self.spec.violated_by(x, y) else None

    def attack(self, obj: Objective, lo: np.ndarray, hi: np.ndarray, x0: np.ndarray, steps: int,
               step0: float = 0.5, step_end: float = 0.005) -> np.ndarray | None:
        """PGD from ``x0``; the best point if onnxruntime confirms it."""
        target = -self.o.atol  # aim a little past the boundary so that float32 agrees
        x, v = pgd(self.net, obj, lo, hi, x0, steps, self.rng, step0, step_end, stop_below=target,
                   deadline=self.deadline)
        if v <= 0.0:
            found = self.confirm(x)
            if found is not None:
                return found
            # On the boundary in float64: push further inside the violating region.
            x, v = pgd(self.net, obj, lo, hi, x[None, :], steps, self.rng, 1e-3, 1e-6, stop_below=10 * target,
                       deadline=self.deadline + 1.0)  # a confirmed near-miss deserves its polish
            if v <= 0.0:
                return self.confirm(x)
        return None

    def screen(self, case: Case) -> tuple[np.ndarray | None, _Open | None]:
        """Centre, bounds and attack: a witness, or the case's open polytopes (None if refuted)."""
        lo, hi = case.box.arrays()
        centre = lo + (hi - lo) / 2.0
        polys = [p.arrays(self.spec.outputs) for p in case.polytopes]
        if any(len(b) == 0 for _, b in polys):  # an empty conjunction holds everywhere
            return self.confirm(centre), None
        loss, _ = Objective.from_polytopes(polys).values(self.net.forward(centre[None, :]))
        # onnxruntime only where float64 is near or past the boundary (it costs a millisecond).
        if loss[0] <= 10 * self.o.atol:
            found = self.confirm(centre)
            if found is not None:
                return found, None
        bounds = layer_bounds(self.net, lo, hi)
        c = np.vstack([a for a, _ in polys])
        d = np.concatenate([b for _, b in polys])
        lb, ymax = output_bounds(self.net, bounds, c)
        tol = self.o.atol + self.o.rtol * (np.abs(c) @ ymax + np.abs(d))
        open_polys, order = [], []
        r = 0
        for a, b in polys:
            k = len(b)
            margin = lb[r:r + k] - b
            if not np.any(margin > tol[r:r + k]):
                open_polys.append((a, b, tol[r:r + k]))
                order.append(float(np.max(margin)))
            r += k
        if not open_polys:
            return None, None
        obj = Objective.from_polytopes([(a, b) for a, b, _ in open_polys])
        x0 = start_points(lo, hi, self.o.restarts, self.rng)
        found = self.attack(obj, lo, hi, x0, self.o.steps)
        if found is not None:
            return found, None
        return None, _Open(case, lo, hi, open_polys, bounds, order)

    def decide(self, pending: _Open) -> tuple[Verdict, np.ndarray | None, str]:
        """The complete decision for one open case."""
        binaries, _ = milp_size(self.net, pending.bounds)
        if self.o.use_milp and binaries > 0 and (self.o.engine == "bab" or
                                                 (self.o.engine == "auto" and binaries > self.o.milp_binaries)):
            return self.decide_bab(pending)
        if not self.o.use_milp or binaries > self.o.max_binaries:
            return self.keep_attacking(pending, f"{binaries} unstable ReLUs: too many for the MILP")
        undecided = []
        for i in np.argsort(pending.order):
            a, b, tol = pending.polys[i]
            if self.left() <= 0:
                return Verdict.TIMEOUT, None, "ran out of time in the MILP"
            band = float(np.max(tol))
            out = solve_polytope(self.net, pending.bounds, a, b, band, -band, self.left(), self.o.method)
            if out.status is MilpStatus.INFEASIBLE:
                continue
            if out.status is MilpStatus.TIMEOUT:
                return Verdict.TIMEOUT, None, "the MILP ran out of time"
            if out.status is MilpStatus.FAILED:
                undecided.append(f"HiGHS failed: {out.message}")
                continue
            if out.x is None:
                undecided.append(f"HiGHS gave no point: {out.message}")
                continue
            x = np.clip(out.x, pending.lo, pending.hi)
            found = self.confirm(x)
            if found is None:
                obj = Objective.from_polytopes([(a, b)])
                found = self.attack(obj, pending.lo, pending.hi, x[None, :], max(10, self.o.steps),
                                    step0=1e-3, step_end=1e-7)
            if found is not None:
                return Verdict.SAT, found, ""
            undecided.append(f"the optimum {out.value:.3g} of a polytope lies within the numerical tolerance "
                             f"{float(np.max(tol)):.3g} and no float32 witness was found")
        if undecided:
            return Verdict.UNKNOWN, None, "; ".join(undecided)
        return Verdict.UNSAT, None, ""

    def decide_bab(self, pending: _Open) -> tuple[Verdict, np.ndarray | None, str]:
        """Branch and bound on torch bounds: on ReLU phases, one search for all open polytopes, or
        on the input box for networks with at most ``bab.input_split`` inputs, one polytope at a
        time (most promising first)."""
        from vnnbridge.engine.crown import intermediate_bounds, optimise
        from vnnbridge.engine.inputsplit import verify_input_split
        from vnnbridge.engine.torchnet import torch_net

        tn = torch_net(self.net, self.o.device)
        # Cheap first: CROWN intermediate bounds and alpha-CROWN on the output rows of every open
        # polytope at once (one domain per polytope, rows padded with never-refuting zeros).
        # Half the time left at most: on conv nets everything after depends on these bounds.
        lower, upper = intermediate_bounds(self.net, tn, pending.lo, pending.hi,
                                           deadline=time.perf_counter() + 0.5 * self.left(), base=pending.bounds)
        c, _, target = pad_polytopes(pending.polys, self.net.outputs)
        best, alpha, _, _ = optimise(tn, lower, upper, tn.tensor(pending.lo)[None], tn.tensor(pending.hi)[None],
                                     tn.tensor(c), tn.tensor(target), None, None, None, self.o.bab.root_iters,
                                     deadline=self.deadline)
        refuted = (best > tn.tensor(target)).any(-1).cpu().numpy()
        left = [i for i in np.argsort(pending.order) if not refuted[i]]
        if not left:
            return Verdict.UNSAT, None, ""
        # The hard ones: alpha-optimised intermediate bounds, then branch and bound.
        if self.o.bab.inter_iters:
            lower, upper = intermediate_bounds(self.net, tn, pending.lo, pending.hi, self.o.bab.inter_iters,
                                               deadline=time.perf_counter() + 0.25 * self.left(),
                                               init=(lower, upper))
        if self.left() <= 0:
            return Verdict.TIMEOUT, None, "ran out of time in branch and bound"
        objs = [Objective.from_polytopes([pending.polys[i][:2]]) for i in left]

        def polish(x0: np.ndarray, j: int) -> np.ndarray | None:
            return self.attack(objs[j], pending.lo, pending.hi, x0, max(10, self.o.steps), step0=0.1, step_end=1e-4)

        if self.net.inputs <= self.o.bab.input_split:
            undecided = []
            for j, i in enumerate(left):
                a, b, tol = pending.polys[i]
                out = verify_input_split(tn, pending.lo, pending.hi, a, b, tol, self.deadline, self.confirm,
                                         functools.partial(polish, j=j))
                verdict, found, reason = self._bab_verdict(out)
                if verdict in (Verdict.SAT, Verdict.TIMEOUT):
                    return verdict, found, reason
                if verdict is Verdict.UNKNOWN:
                    undecided.append(reason)
            if undecided:
                return Verdict.UNKNOWN, None, "; ".join(undecided)
            return Verdict.UNSAT, None, ""
        # One search for every open polytope, warm-started from the alphas of the pass above.
        idx = list(left)
        m = max(len(pending.polys[i][1]) for i in idx)  # the search pads rows to its own polytopes
        warm = [al[idx, :m].clone() for al in alpha]
        out = verify_polytopes(self.net, tn, lower, upper, pending.lo, pending.hi, [pending.polys[i] for i in idx],
                               self.deadline, self.confirm, polish, self.o.bab, warm)
        return self._bab_verdict(out)

    @staticmethod
    def _bab_verdict(out: BabResult) -> tuple[Verdict, np.ndarray | None, str]:
        log.debug("branch and bound: %s after %d domains %s", out.status, out.domains, out.stats)
        if out.status == "sat":
            return Verdict.SAT, out.x, ""
        if out.status == "timeout":
            return Verdict.TIMEOUT, None, f"branch and bound ran out of time ({out.message})"
        if out.status == "unknown":
            return Verdict.UNKNOWN, None, out.message
        return Verdict.UNSAT, None, ""

    def keep_attacking(self, pending: _Open, why: str) -> tuple[Verdict, np.ndarray | None, str]:
        """No complete decision available: random-restart attacks until the deadline."""
        obj = Objective.from_polytopes([(a, b) for a, b, _ in pending.polys])
        while self.left() > 0:
            x0 = start_points(pending.lo, pending.hi, self.o.restarts, self.rng,
                              centre=pending.lo + self.rng.random(pending.lo.size) * (pending.hi - pending.lo))
            found = self.attack(obj, pending.lo, pending.hi, x0, self.o.steps * 2)
            if found is not None:
                return Verdict.SAT, found, ""
        return Verdict.TIMEOUT, None, why
