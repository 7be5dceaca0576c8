"""What every search shares: the instance, the face grid, counted oracle calls and the result.

A search asks box questions through a `Prober`, which builds each query with `Query.build`
(so every call's VNN-LIB file and sha256 are known), counts and times it (`Counted`), and
records it as a `Call`. Only `Verdict.UNSAT` ever certifies a box. A `SAT` answer reaching a
search has already been re-run with onnxruntime by the registry's `Validating` wrapper; any
other answer (timeout, unknown, error, sat without a witness) is *not proven*: searches treat
it as "this box is not certified" and never use it to move towards "certified".
"""

from __future__ import annotations

import dataclasses
import enum
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
from vnnbridge.search.crossexam import DEFAULT_STEPS, Falsifier, counterexample_margin
from vnnbridge.vnnlib.model import membership_spec, robustness_spec

__all__ = [
    "BudgetExhausted",
    "Call",
    "Counted",
    "Grid",
    "Instance",
    "Order",
    "Prober",
    "Purpose",
    "Refutation",
    "SearchOptions",
    "SearchResult",
    "Status",
    "Step",
    "Witness",
    "WitnessKind",
    "classified_as",
    "faces_of",
    "grid_delta",
    "misclassified",
]

log = logging.getLogger(__name__)

class Purpose(enum.StrEnum):
    """What an oracle call asks."""

    ROBUST = "robust"  # is the box free of misclassified points? (UNSAT = certified)
    MEMBER = "member"  # does the box hold a point of the label's class? (the dual's question)
    CONFIRM = "confirm"  # a second oracle asked the final robustness query again


class WitnessKind(enum.StrEnum):
    """What a validated witness point shows."""

    FACE = "face"  # the robust box cannot grow at this face
    CUBE = "cube"  # no larger cube is robust
    MEMBER = "member"  # a class point just beyond a dual face (the dual is tight there)


class Order(enum.StrEnum):
    """Greedy face order."""

    DFS = "dfs"
    BFS = "bfs"


class Step(enum.StrEnum):
    """Greedy face step."""

    LINEAR = "linear"
    BISECT = "bisect"


class Status(enum.StrEnum):
    """A certification's outcome as the certificate and the summary name it."""

    CERTIFIED = "certified"
    TRIVIAL = "trivial"  # only x itself is certified: a counterexample lies one grid step away
    NOT_CERTIFIED = "not certified"


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
    purpose: Purpose
    note: str
    verdict: Verdict  # what the oracle said (a refuted UNSAT stays UNSAT here, with ``refuted_by``)
    oracle: str
    sha256: str
    vnnlib: Path
    seconds: float
    reason: str = ""
    refuted_by: str = ""  # the falsifier or confirming oracle that broke this UNSAT with a validated witness
    examine_seconds: float = 0.0  # time spent cross-examining this answer
    phase: str = ""  # the method (or dual) of ``A+B+...`` that asked
    faces_left: int | None = field(default=None, compare=False)  # open faces then (growing searches)

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        out: dict[str, object] = {
            "index": self.index, "purpose": Purpose(self.purpose).value, "note": self.note,
            "verdict": self.verdict.value, "oracle": self.oracle, "query_sha256": self.sha256,
            "query_file": str(self.vnnlib), "seconds": self.seconds, "reason": self.reason, "phase": self.phase}
        if self.refuted_by:
            out["refuted_by"] = self.refuted_by
        if self.examine_seconds:
            out["examine_seconds"] = self.examine_seconds
        return out


@dataclass(frozen=True)
class Refutation:
    """A wrong ``unsat``: the call, whose answer it was, what broke it, and the validated counterexample."""

    call: int
    oracle: str
    by: str
    point: np.ndarray
    margin: float  # best other logit minus the label's at the point (onnxruntime); >= -margin option

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict (the point as exact floats and their hex)."""
        flat = [float(v) for v in np.ravel(self.point)]
        return {"call": self.call, "oracle": self.oracle, "claimed": "unsat", "refuted_by": self.by,
                "counterexample_margin": self.margin, "point": flat, "point_hex": [v.hex() for v in flat]}


@dataclass(frozen=True)
class Witness:
    """A validated point with what it shows: a blocked face, a cube bound or a class point beyond a dual face."""

    kind: WitnessKind
    point: np.ndarray
    face: int | None = None
    call: int | None = None  # the oracle call it came from (None when found by onnxruntime alone)

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict (the point as exact floats)."""
        return {"kind": WitnessKind(self.kind).value, "face": self.face, "call": self.call,
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
    order: Order = Order.DFS  # greedy: face order
    step: Step = Step.BISECT  # greedy: linear | bisect
    jobs: int = 1  # dual-faces: parallel calls
    max_calls: int = 100_000  # a safety budget per search
    cross_examine: int | None = DEFAULT_STEPS  # attack steps per UNSAT answer; None: take UNSAT at its word

    def __post_init__(self) -> None:
        try:
            self.order, self.step = Order(self.order), Step(self.step)
        except ValueError as exc:
            raise InputError(f"--order must be dfs or bfs and --step linear or bisect ({exc})") from None
        if not (self.timeout > 0 and self.jobs >= 1 and self.max_calls >= 1):
            raise InputError("--timeout, --jobs and the call budget must be positive")
        if self.cross_examine is not None and self.cross_examine < 1:
            raise InputError(f"--cross-examine must be a positive number of steps or none, got {self.cross_examine}")


class BudgetExhausted(Exception):
    """The search ran out of its call budget (internal: the search stops with what it has)."""


class Prober:
    """Asks box questions about one instance through a counted oracle and records every call.

    Every ``unsat`` is cross-examined before a search sees it (unless ``cross_examine`` is
    None): a `Falsifier` independent of the oracle attacks the box, and a counterexample that
    onnxruntime confirms turns the answer into a `Refutation`; the search then gets ``sat`` with
    that witness. Definite answers are remembered per query, so a search that is run again
    (after a confirming oracle refuted its final box) asks the oracle only new questions.
    """

    def __init__(self, instance: Instance, oracle: Oracle, options: SearchOptions | None = None,
                 on_call: Callable[[Call], None] | None = None) -> None:
        self.instance = instance
        self.oracle = oracle if isinstance(oracle, Counted) else Counted(oracle)
        self.options = options or SearchOptions()
        self.grid = Grid(instance.x, instance.domain, instance.delta)
        self.calls: list[Call] = []
        self.refutations: list[Refutation] = []
        self.on_call = on_call
        self._lock = threading.Lock()
        self._budget_from = 0
        self._answers: dict[tuple[str, str], tuple[OracleResult, Call]] = {}
        steps = self.options.cross_examine
        self.falsifier = Falsifier(steps) if steps is not None else None
        self.unexamined = ""  # why UNSAT answers went unexamined although asked for ("" when examined)
        if self.falsifier is not None and not self.falsifier.supports(str(instance.onnx)):
            self.falsifier, self.unexamined = None, "the engine does not compile this network"
        self.phase = ""  # shown in progress displays and recorded with each call
        self.faces_left: int | None = None  # set by searches that grow faces, for progress displays

    def begin(self, phase: str = "") -> None:
        """Start a new search phase: the call budget counts from here."""
        self._budget_from = len(self.calls)
        self.phase, self.faces_left = phase, None

    def query(self, purpose: Purpose, box: Box) -> Query:
        """The query of a box question (its VNN-LIB file written to the cache)."""
        inst = self.instance
        spec = (membership_spec(box, inst.label, inst.outputs) if purpose == Purpose.MEMBER
                else robustness_spec(box, inst.label, inst.outputs, inst.margin))
        return Query.build(inst.onnx, spec)

    def _ask(self, purpose: Purpose, box: Box, note: str) -> tuple[OracleResult, Call]:
        query = self.query(purpose, box)
        with self._lock:
            known = self._answers.get((purpose, query.sha256))
        if known is not None:
            return known
        if len(self.calls) - self._budget_from >= self.options.max_calls:
            raise BudgetExhausted(f"call budget of {self.options.max_calls} spent")
        start = time.perf_counter()
        result = self.oracle.check(query, self.options.timeout)
        seconds = time.perf_counter() - start
        if result.verdict is Verdict.SAT and result.witness is None:
            # Never refine with an unconfirmed sat: it is "not proven", like a timeout.
            result = OracleResult(Verdict.ERROR, result.oracle, result.version, result.seconds,
                                  None, "sat without a witness")
        point, examine, by = None, 0.0, ""
        if result.verdict is Verdict.UNSAT and self.falsifier is not None:
            t0 = time.perf_counter()
            point = self.falsifier.refute(query, seconds=max(1.0, self.options.timeout))
            examine = time.perf_counter() - t0
            by = self.falsifier.name if point is not None else ""
        oracle = result.oracle or self.oracle.name
        with self._lock:
            call = Call(len(self.calls), purpose, note, result.verdict, oracle, query.sha256, query.vnnlib,
                        seconds, result.reason, by, examine, self.phase, self.faces_left)
            self.calls.append(call)
            if point is not None:
                result = self._refuted(call, by, point, result)
            if result.verdict in (Verdict.SAT, Verdict.UNSAT):
                self._answers[(purpose, query.sha256)] = (result, call)
        log.debug("call %d %s %s: %s%s", call.index, purpose, note, call.verdict.value,
                  " (refuted)" if point is not None else "")
        if self.on_call is not None:
            self.on_call(call)
        return result, call

    def _refuted(self, call: Call, by: str, point: np.ndarray, result: OracleResult) -> OracleResult:
        """Record a wrong UNSAT (under the lock) and the SAT answer the search gets instead."""
        y = self.instance.net.run(point)
        margin = counterexample_margin(y, self.instance.label)
        self.refutations.append(Refutation(call.index, call.oracle, by, point,
                                           -margin if call.purpose == Purpose.MEMBER else margin))
        log.warning("%s answered unsat on call %d, but %s found a counterexample (onnxruntime-confirmed)",
                    call.oracle, call.index, by)
        return OracleResult(Verdict.SAT, call.oracle, result.version, result.seconds, point,
                            f"unsat refuted by {by}")

    def attack(self, box: Box, spent: float) -> np.ndarray | None:
        """A counterexample in ``box`` that onnxruntime confirms, found by the falsifier (no oracle
        call), or None (always without a falsifier). It gets a quarter of what the oracle ``spent``
        on the box, at most a quarter of the call timeout, and one round at least."""
        if self.falsifier is None:
            return None
        seconds = min(0.25 * self.options.timeout, 0.25 * spent)
        return self.falsifier.refute(self.query(Purpose.ROBUST, box), seconds, repeat=True)

    def robust(self, box: Box, note: str = "") -> tuple[OracleResult, Call]:
        """Ask whether every point of ``box`` keeps the label (UNSAT = certified)."""
        return self._ask(Purpose.ROBUST, box, note)

    def member(self, box: Box, note: str = "") -> tuple[OracleResult, Call]:
        """Ask whether ``box`` holds a point of the label's class (UNSAT = none)."""
        return self._ask(Purpose.MEMBER, box, note)

    def confirm(self, box: Box, proof: Call, confirmer: Oracle) -> tuple[OracleResult, Call]:
        """Ask ``confirmer`` the robustness query of ``box`` (certified by ``proof``); recorded like any call.

        A validated ``sat`` refutes ``proof``: it is marked, and asking the box again gives that witness.
        """
        from vnnbridge.oracles.witness import validated

        query = self.query(Purpose.ROBUST, box)
        if query.sha256 != proof.sha256:
            raise ValueError("the proof call is not the query of this box")
        start = time.perf_counter()
        result = validated(confirmer.check(query, self.options.timeout), query)
        seconds = time.perf_counter() - start
        with self._lock:
            call = Call(len(self.calls), Purpose.CONFIRM, f"confirm call {proof.index}", result.verdict,
                        result.oracle or confirmer.name, query.sha256, query.vnnlib, seconds, result.reason,
                        phase="confirm")
            self.calls.append(call)
            if result.verdict is Verdict.SAT and result.witness is not None:
                self.calls[proof.index] = dataclasses.replace(proof, refuted_by=call.oracle)
                sat = self._refuted(self.calls[proof.index], call.oracle, result.witness, result)
                self._answers[(Purpose.ROBUST, query.sha256)] = (sat, self.calls[proof.index])
        if self.on_call is not None:
            self.on_call(call)
        return result, call

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
    confirmation: Call | None = None  # the confirming oracle's call on ``box`` (None: not asked)

    @property
    def confirmed(self) -> bool | None:
        """Whether a second oracle confirmed the box (None when none was asked)."""
        if self.confirmation is None:
            return None
        return self.confirmation.verdict is Verdict.UNSAT

    @property
    def status(self) -> Status:
        """certified, trivial (only x itself: the optimal cube has apothem 0) or not certified."""
        if not self.certified:
            return Status.NOT_CERTIFIED
        if self.cube_steps == 0 or not np.any(self.steps):
            return Status.TRIVIAL
        return Status.CERTIFIED

    def blocked(self) -> dict[int, Witness]:
        """The face witnesses by face."""
        return {w.face: w for w in self.witnesses if w.kind == WitnessKind.FACE and w.face is not None}


def faces_of(n: int) -> Sequence[int]:
    """All 2n face numbers."""
    return range(2 * n)
