"""What every search shares: the instance, the face grid, counted oracle calls and the result.

A search asks box questions through a `Prober`, which builds each query with `Query.build`
(so every call's VNN-LIB file and sha256 are known), counts and times it (`Counted`), and
records it as a `Call`. Only `Verdict.UNSAT` ever certifies a box. A `SAT` answer reaching a
search has already been re-run with onnxruntime by the registry's `Validating` wrapper; any
other answer (timeout, unknown, error, sat without a witness) is *not proven*: searches treat
it as "this box is not certified" and never use it to move towards "certified".
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from vnnbridge.box import Box
from vnnbridge.errors import InputError
from vnnbridge.network import Network, load_network
from vnnbridge.oracles.base import Oracle, OracleResult, Query, Verdict
from vnnbridge.vnnlib.model import membership_spec, robustness_spec

__all__ = [
    "BudgetExhausted",
    "Call",
    "Counted",
    "Grid",
    "Instance",
    "Prober",
    "SearchOptions",
    "SearchResult",
    "Witness",
    "classified_as",
    "faces_of",
    "grid_delta",
    "misclassified",
]

log = logging.getLogger(__name__)

# Faces are numbered 2*i (lower face of coordinate i) and 2*i + 1 (upper face).
LOWER, UPPER = 0, 1


def misclassified(y: np.ndarray, label: int, margin: float = 0.0) -> bool:
    """Whether some other logit is >= the label's logit minus ``margin`` (ties count against)."""
    v = np.asarray(y, dtype=np.float64).ravel()
    others = np.delete(v, label)
    return bool(np.any(others >= v[label] - margin))


def classified_as(y: np.ndarray, label: int) -> bool:
    """Whether the label's logit is >= every other logit (the membership query's sat side)."""
    v = np.asarray(y, dtype=np.float64).ravel()
    return bool(np.all(v[label] >= v))


def grid_delta(x: np.ndarray, delta: float | None, den: int = 255) -> float:
    """The grid step: ``delta`` when given, else 1/den when ``x`` lies on that grid (else InputError)."""
    if delta is not None:
        if not (math.isfinite(delta) and delta > 0):
            raise InputError(f"--delta must be a positive number, got {delta!r}")
        return float(delta)
    v = np.asarray(x, dtype=np.float64).ravel()
    if np.array_equal(np.round(v * den) / den, v):
        return 1.0 / den
    raise InputError(f"the input does not lie on the 1/{den} grid; give the precision with --delta")


@dataclass(frozen=True)
class Instance:
    """One certification problem: network, input point, label, domain, grid step and margin."""

    onnx: Path
    x: np.ndarray
    label: int
    domain: Box
    delta: float
    margin: float = 0.0
    network: Network | None = field(default=None, compare=False, repr=False)

    @classmethod
    def make(cls, onnx: str | Path, x: np.ndarray, label: int | None, domain: Box | None = None,
             delta: float | None = None, margin: float = 0.0) -> Instance:
        """Load the network, check shapes and domain; the label defaults to the prediction at x."""
        net = load_network(onnx)
        v = np.asarray(x, dtype=np.float64).ravel()
        if v.size != net.inputs:
            raise InputError(f"the input has {v.size} values, the network expects {net.inputs}")
        dom = domain or Box.from_arrays(np.zeros(v.size), np.ones(v.size))
        if dom.dim != v.size:
            raise InputError(f"the domain has {dom.dim} coordinates, the input {v.size}")
        if not dom.contains(v):
            raise InputError("the input lies outside the domain")
        predicted = net.predict(v)
        if label is None:
            label = predicted
        elif not 0 <= label < net.outputs:
            raise InputError(f"label {label} is not an output index (0..{net.outputs - 1})")
        elif label != predicted:
            log.warning("the network predicts %d at the input, not the given label %d", predicted, label)
        if margin < 0 or not math.isfinite(margin):
            raise InputError(f"--margin must be a finite number >= 0, got {margin!r}")
        return cls(Path(onnx), v, int(label), dom, grid_delta(v, delta), float(margin), net)

    @property
    def net(self) -> Network:
        """The loaded network."""
        return self.network if self.network is not None else load_network(self.onnx)

    @property
    def outputs(self) -> int:
        """Number of logits."""
        return self.net.outputs

    def misclassified(self, point: np.ndarray) -> bool:
        """Whether onnxruntime misclassifies ``point`` (with the margin)."""
        return misclassified(self.net.run(point), self.label, self.margin)

    def classified(self, point: np.ndarray) -> bool:
        """Whether onnxruntime puts ``point`` in the label's class (ties included)."""
        return classified_as(self.net.run(point), self.label)


class Grid:
    """Face positions on the delta grid: face f of coordinate i at step k lies k*delta off x, clipped to D.

    When delta is 1/den and x lies on that grid, positions are computed as (j -+ k)/den so
    that they are exactly the grid values a reader expects (3/255, not 4/255 - 1/255).
    """

    def __init__(self, x: np.ndarray, domain: Box, delta: float) -> None:
        self.x = np.asarray(x, dtype=np.float64).ravel()
        self.lo, self.hi = domain.arrays()
        self.delta = float(delta)
        self.n = self.x.size
        den = round(1.0 / delta)
        self.den = den if den > 0 and 1.0 / den == delta and np.array_equal(np.round(self.x * den) / den, self.x) \
            else None
        self.j = np.round(self.x * den).astype(np.int64) if self.den else None
        # reach[f]: the step at which face f lies on the domain boundary.
        self.reach = np.zeros(2 * self.n, dtype=np.int64)
        for i in range(self.n):
            self.reach[2 * i] = self._steps_to(i, LOWER, self.lo[i])
            self.reach[2 * i + 1] = self._steps_to(i, UPPER, self.hi[i])

    def _raw(self, i: int, side: int, k: int) -> float:
        if self.den is not None and self.j is not None:
            j = int(self.j[i]) + (k if side == UPPER else -k)
            return j / self.den
        return float(self.x[i] + k * self.delta) if side == UPPER else float(self.x[i] - k * self.delta)

    def _steps_to(self, i: int, side: int, value: float) -> int:
        """The smallest step whose raw position reaches ``value`` (on the outward side)."""
        gap = (value - self.x[i]) if side == UPPER else (self.x[i] - value)
        if gap <= 0:
            return 0
        k = max(0, math.ceil(gap / self.delta) - 1)
        while not self._reaches(i, side, k, value):
            k += 1
        while k > 0 and self._reaches(i, side, k - 1, value):
            k -= 1
        return k

    def _reaches(self, i: int, side: int, k: int, value: float) -> bool:
        raw = self._raw(i, side, k)
        return raw >= value if side == UPPER else raw <= value

    def position(self, face: int, k: int) -> float:
        """Where face ``face`` lies at step ``k`` (clipped to the domain)."""
        i, side = divmod(face, 2)
        if k >= self.reach[face]:
            return float(self.hi[i] if side == UPPER else self.lo[i])
        return self._raw(i, side, k)

    def include(self, face: int, value: float) -> int:
        """The smallest step at which face ``face`` has ``value`` on its inner side."""
        i, side = divmod(face, 2)
        return min(self._steps_to(i, side, value), int(self.reach[face]))

    def box(self, steps: np.ndarray) -> Box:
        """The box whose face f lies at step ``steps[f]``."""
        lower = [self.position(2 * i, int(steps[2 * i])) for i in range(self.n)]
        upper = [self.position(2 * i + 1, int(steps[2 * i + 1])) for i in range(self.n)]
        return Box(tuple(lower), tuple(upper))

    def cube_steps(self, k: int) -> np.ndarray:
        """Steps of the cube of radius k*delta (clipped to the domain)."""
        return np.minimum(np.full(2 * self.n, k, dtype=np.int64), self.reach)

    def cube(self, k: int) -> Box:
        """The cube of radius k*delta around x, clipped to the domain."""
        return self.box(self.cube_steps(k))

    @property
    def diameter(self) -> int:
        """The smallest cube step that covers the whole domain."""
        return int(self.reach.max()) if self.n else 0

    def cube_include(self, point: np.ndarray) -> int:
        """The smallest cube step whose cube contains ``point`` (a point of the domain)."""
        p = np.asarray(point, dtype=np.float64).ravel()
        best = 0
        for i in np.nonzero(p != self.x)[0]:
            face = 2 * int(i) + (UPPER if p[i] > self.x[i] else LOWER)
            best = max(best, self.include(face, float(p[i])))
        return best

    def box_include(self, point: np.ndarray) -> np.ndarray:
        """The smallest steps per face of a box that contains ``point``."""
        p = np.asarray(point, dtype=np.float64).ravel()
        steps = np.zeros(2 * self.n, dtype=np.int64)
        for i in np.nonzero(p != self.x)[0]:
            face = 2 * int(i) + (UPPER if p[i] > self.x[i] else LOWER)
            steps[face] = self.include(face, float(p[i]))
        return steps

    def steps_of(self, box: Box) -> np.ndarray:
        """The grid steps of a box whose faces lie on this grid (raises InputError otherwise)."""
        lo, hi = box.arrays()
        steps = np.zeros(2 * self.n, dtype=np.int64)
        for i in range(self.n):
            for side, v in ((LOWER, lo[i]), (UPPER, hi[i])):
                f = 2 * i + side
                k = self.include(f, float(v))
                if self.position(f, k) != v:
                    raise InputError(f"box face {f} at {v!r} is not on the delta grid around the input")
                steps[f] = k
        return steps


@dataclass(frozen=True)
class Call:
    """One oracle call as the certificate records it."""

    index: int
    purpose: str  # "robust" (is the box free of misclassified points?) or "member" (any class point?)
    note: str
    verdict: Verdict
    oracle: str
    sha256: str
    vnnlib: Path
    seconds: float
    reason: str = ""
    phase: str = ""  # the method (or dual) of ``A+B+...`` that asked
    faces_left: int | None = field(default=None, compare=False)  # open faces then (growing searches)

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {"index": self.index, "purpose": self.purpose, "note": self.note,
                "verdict": self.verdict.value, "oracle": self.oracle, "query_sha256": self.sha256,
                "query_file": str(self.vnnlib), "seconds": self.seconds, "reason": self.reason,
                "phase": self.phase}


@dataclass(frozen=True)
class Witness:
    """A validated point with what it shows: a blocked face, a cube bound or a class point beyond a dual face."""

    kind: str  # "face" (robust box can't grow at face), "cube" (no larger cube), "member" (dual tight)
    point: np.ndarray
    face: int | None = None
    call: int | None = None  # the oracle call it came from (None when found by onnxruntime alone)

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict (the point as exact floats)."""
        return {"kind": self.kind, "face": self.face, "call": self.call,
                "point": [float(v) for v in np.ravel(self.point)]}


class Counted:
    """An oracle wrapper that counts and times every call (thread-safe)."""

    def __init__(self, inner: Oracle) -> None:
        self.inner, self.name, self.calls, self.seconds = inner, inner.name, 0, 0.0
        self._lock = threading.Lock()

    def version(self) -> str:
        """The wrapped oracle's version."""
        return str(self.inner.version())

    def check(self, query: Query, timeout: float) -> OracleResult:
        """Ask the wrapped oracle, counting the call and its seconds."""
        start = time.perf_counter()
        try:
            return self.inner.check(query, timeout)
        finally:
            with self._lock:
                self.calls, self.seconds = self.calls + 1, self.seconds + time.perf_counter() - start


@dataclass
class SearchOptions:
    """Knobs shared by the searches; validated when a search starts."""

    timeout: float = 60.0  # per oracle call
    order: str = "dfs"  # greedy: face order
    step: str = "bisect"  # greedy: linear | bisect
    jobs: int = 1  # dual-faces: parallel calls
    max_calls: int = 100_000  # a safety budget per search

    def __post_init__(self) -> None:
        if self.order not in ("dfs", "bfs"):
            raise InputError(f"--order must be dfs or bfs, got {self.order!r}")
        if self.step not in ("linear", "bisect"):
            raise InputError(f"--step must be linear or bisect, got {self.step!r}")
        if not (self.timeout > 0 and self.jobs >= 1 and self.max_calls >= 1):
            raise InputError("--timeout, --jobs and the call budget must be positive")


class BudgetExhausted(Exception):
    """The search ran out of its call budget (internal: the search stops with what it has)."""


class Prober:
    """Asks box questions about one instance through a counted oracle and records every call."""

    def __init__(self, instance: Instance, oracle: Oracle, options: SearchOptions | None = None,
                 on_call: Callable[[Call], None] | None = None) -> None:
        self.instance = instance
        self.oracle = oracle if isinstance(oracle, Counted) else Counted(oracle)
        self.options = options or SearchOptions()
        self.grid = Grid(instance.x, instance.domain, instance.delta)
        self.calls: list[Call] = []
        self.on_call = on_call
        self._lock = threading.Lock()
        self._budget_from = 0
        self.phase = ""  # shown in progress displays and recorded with each call
        self.faces_left: int | None = None  # set by searches that grow faces, for progress displays

    def begin(self, phase: str = "") -> None:
        """Start a new search phase: the call budget counts from here."""
        self._budget_from = len(self.calls)
        self.phase, self.faces_left = phase, None

    def _ask(self, purpose: str, box: Box, note: str) -> tuple[OracleResult, Call]:
        if len(self.calls) - self._budget_from >= self.options.max_calls:
            raise BudgetExhausted(f"call budget of {self.options.max_calls} spent")
        inst = self.instance
        spec = (robustness_spec(box, inst.label, inst.outputs, inst.margin) if purpose == "robust"
                else membership_spec(box, inst.label, inst.outputs))
        query = Query.build(inst.onnx, spec)
        start = time.perf_counter()
        result = self.oracle.check(query, self.options.timeout)
        seconds = time.perf_counter() - start
        if result.verdict is Verdict.SAT and result.witness is None:
            # Never refine with an unconfirmed sat: it is "not proven", like a timeout.
            result = OracleResult(Verdict.ERROR, result.oracle, result.version, result.seconds,
                                  None, "sat without a witness")
        with self._lock:
            call = Call(len(self.calls), purpose, note, result.verdict, result.oracle or self.oracle.name,
                        query.sha256, query.vnnlib, seconds, result.reason, self.phase, self.faces_left)
            self.calls.append(call)
        log.debug("call %d %s %s: %s", call.index, purpose, note, result.verdict.value)
        if self.on_call is not None:
            self.on_call(call)
        return result, call

    def robust(self, box: Box, note: str = "") -> tuple[OracleResult, Call]:
        """Ask whether every point of ``box`` keeps the label (UNSAT = certified)."""
        return self._ask("robust", box, note)

    def member(self, box: Box, note: str = "") -> tuple[OracleResult, Call]:
        """Ask whether ``box`` holds a point of the label's class (UNSAT = none)."""
        return self._ask("member", box, note)

    def shrink_cube(self, point: np.ndarray) -> np.ndarray:
        """A misclassified point at least as close to x (in l-inf), by projecting onto smaller cubes.

        Uses onnxruntime only (no oracle call): a bisection over cube steps k of
        ``clip(point, cube(k))``; every candidate is itself re-run, so the result is a real witness.
        """
        g, best = self.grid, np.asarray(point, dtype=np.float64).ravel()
        lo_k, hi_k = -1, g.cube_include(best)
        while hi_k - lo_k > 1:
            mid = (lo_k + hi_k) // 2
            candidate = g.cube(mid).clip(best)
            if self.instance.misclassified(candidate):
                hi_k, best = mid, candidate
            else:
                lo_k = mid
        return best


@dataclass
class SearchResult:
    """What a search found: the final box, whether an UNSAT call certified it, witnesses, bounds."""

    method: str
    certified: bool
    box: Box
    steps: np.ndarray  # grid steps of the box's faces
    proof: Call | None = None  # the UNSAT call on exactly ``box``
    proof_vnnlib: Path | None = None
    witnesses: list[Witness] = field(default_factory=list)
    cube_steps: int | None = None  # for cube searches: r*/delta
    cube_upper: int | None = None  # the smallest cube step known not to be certified (witness or no answer)
    exact: bool = False  # cube searches: the upper bound came from a validated witness at r* + 1 step
    stuck_faces: list[int] = field(default_factory=list)  # faces that stopped on a non-answer
    open_faces: list[int] = field(default_factory=list)  # faces left open when the call budget ran out
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False  # the user stopped a later phase; this is the certified box before it

    def blocked(self) -> dict[int, Witness]:
        """The face witnesses by face."""
        return {w.face: w for w in self.witnesses if w.kind == "face" and w.face is not None}


def faces_of(n: int) -> Sequence[int]:
    """All 2n face numbers."""
    return range(2 * n)
