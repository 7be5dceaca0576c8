"""Formulas in disjunctive normal form, and their assembly into a `Spec` as VNN-COMP counts it.

Both parsers (VNN-LIB 1.0 and 2.0) reduce every asserted formula to a list of
`Conjunction`s (a DNF). A conjunction holds input bounds and output rows ``a·y <= b``.
`SpecBuilder` then follows the VNN-COMP scorer's ``read_vnnlib_simple``: the asserts of a
file are conjoined (several ``(assert (or ...))`` are cross-multiplied, plain asserts go into
every disjunct), repeated bounds on one input intersect, rows keep the order of the file, and
disjuncts with identical input boxes share one `Case`.
"""

from __future__ import annotations

import logging
import math
import operator
import struct
from fractions import Fraction
from itertools import product
from typing import Callable, Mapping

from vnnbridge.box import Box
from vnnbridge.errors import SpecError
from vnnbridge.vnnlib.model import Case, Polytope, Spec

__all__ = [
    "INPUT",
    "MAX_DISJUNCTS",
    "OUTPUT",
    "Conjunction",
    "Linear",
    "SpecBuilder",
    "compare",
    "conjoin",
    "disjoin",
]

log = logging.getLogger(__name__)

# Variable kinds used as the first element of a `Linear` key ``(kind, flat index)``.
INPUT, OUTPUT = 0, 1

# Largest DNF a file may expand to: beyond this, normalising would exhaust memory instead of
# failing with a message.
MAX_DISJUNCTS = 1 << 20

_INF = math.inf
Where = tuple[int | None, int | None]


def _error(message: str, where: Where) -> SpecError:
    return SpecError(message, line=where[0], column=where[1])


class Conjunction:
    """Input bounds (by flat index) and output rows that must all hold."""

    __slots__ = ("lo", "hi", "rows", "line", "column")

    def __init__(self, line: int | None = None, column: int | None = None) -> None:
        self.lo: dict[int, float] = {}
        self.hi: dict[int, float] = {}
        # Each row is (sparse coefficients {output index: a_j}, b), meaning sum a_j*y_j <= b.
        self.rows: list[tuple[dict[int, float], float]] = []
        self.line, self.column = line, column

    def lower(self, i: int, v: float) -> None:
        """Add ``x_i >= v`` (the larger lower bound wins; on a tie the newer one, as the scorer)."""
        old = self.lo.get(i)
        self.lo[i] = old if old is not None and old > v else v

    def upper(self, i: int, v: float) -> None:
        """Add ``x_i <= v``."""
        old = self.hi.get(i)
        self.hi[i] = old if old is not None and old < v else v

    def absorb(self, other: Conjunction) -> None:
        """Conjoin ``other`` into this one, in place (its atoms come after ours)."""
        if not self.lo:
            self.lo = dict(other.lo)
        else:
            for i, v in other.lo.items():
                self.lower(i, v)
        if not self.hi:
            self.hi = dict(other.hi)
        else:
            for i, v in other.hi.items():
                self.upper(i, v)
        self.rows.extend(other.rows)
        if self.line is None:
            self.line, self.column = other.line, other.column

    def merged(self, other: Conjunction) -> Conjunction:
        """A new conjunction of this one and ``other``."""
        new = Conjunction(self.line, self.column)
        new.lo, new.hi, new.rows = dict(self.lo), dict(self.hi), list(self.rows)
        new.absorb(other)
        if other.line is not None:
            # Errors found later (an empty range) are most likely caused by the later atoms.
            new.line, new.column = other.line, other.column
        return new


def conjoin(parts: list[list[Conjunction]], where: Where = (None, None)) -> list[Conjunction]:
    """The DNF of the conjunction of DNFs (their cross product, in order)."""
    if not parts:
        return [Conjunction(*where)]
    size = math.prod(len(p) for p in parts)
    if size > MAX_DISJUNCTS:
        raise _error(f"expected at most {MAX_DISJUNCTS} disjuncts in disjunctive normal form, found {size} "
                     f"for this formula", where)
    result = parts[0]
    for part in parts[1:]:
        result = [a.merged(b) for a in result for b in part]
    return result


def disjoin(parts: list[list[Conjunction]], where: Where = (None, None)) -> list[Conjunction]:
    """The DNF of the disjunction of DNFs."""
    if not parts:
        raise _error("expected at least one disjunct in (or ...), found an empty disjunction "
                     "(which is false)", where)
    if len(parts) == 1:
        return parts[0]
    result = [c for p in parts for c in p]
    if len(result) > MAX_DISJUNCTS:
        raise _error(f"expected at most {MAX_DISJUNCTS} disjuncts in disjunctive normal form, found "
                     f"{len(result)} in this disjunction", where)
    return result


class Linear:
    """A linear term ``sum coeffs[key] * var + const``; ``const`` is None when no constant was written.

    Keys are ``(INPUT | OUTPUT, flat index)``. Keeping "no constant" apart from 0.0 lets
    ``(>= Y_0 0.0)`` give the bound -0.0 exactly as the scorer computes it.
    """

    __slots__ = ("coeffs", "const")

    def __init__(self, coeffs: dict[tuple[int, int], float] | None = None, const: float | None = None) -> None:
        self.coeffs = coeffs if coeffs is not None else {}
        self.const = const

    def negated(self) -> Linear:
        """``-self``."""
        return Linear({k: -v for k, v in self.coeffs.items()}, None if self.const is None else -self.const)

    def plus(self, other: Linear) -> Linear:
        """``self + other`` (a variable seen first keeps its coefficient bit for bit)."""
        coeffs = dict(self.coeffs)
        for k, v in other.coeffs.items():
            coeffs[k] = coeffs[k] + v if k in coeffs else v
        if self.const is None:
            const = other.const
        elif other.const is None:
            const = self.const
        else:
            const = self.const + other.const
        return Linear(coeffs, const)

    def is_constant(self) -> bool:
        """Whether no variable occurs."""
        return not self.coeffs

    def scaled(self, c: float) -> Linear:
        """``c * self``."""
        return Linear({k: c * v for k, v in self.coeffs.items()}, None if self.const is None else c * self.const)


def _exact_quotient(b: float, c: float) -> float | None:
    """``b / c`` when it is exact (so a bound ``c*x <= b`` moves to ``x`` without rounding)."""
    q = b / c
    if not math.isfinite(q):
        return None
    if c in (1.0, -1.0) or Fraction(q) * Fraction(c) == Fraction(b):
        return q
    return None


def compare(conj: Conjunction, op: str, lhs: Linear, rhs: Linear, where: Where,
            name: Callable[[int, int], str]) -> None:
    """Add the atom ``lhs op rhs`` (op one of <=, >=, ==; strict ones mapped before) to ``conj``."""
    if op == "==":
        compare(conj, "<=", lhs, rhs, where, name)
        compare(conj, ">=", lhs, rhs, where, name)
        return
    if op == ">=":
        lhs, rhs = rhs, lhs
    # Now lhs <= rhs, i.e. (lhs - rhs) <= (rhs.const - lhs.const).
    coeffs = dict(lhs.coeffs)
    for k, v in rhs.coeffs.items():
        coeffs[k] = coeffs[k] - v if k in coeffs else -v
    if lhs.const is None:
        bound = 0.0 if rhs.const is None else rhs.const
    elif rhs.const is None:
        bound = -lhs.const
    else:
        bound = rhs.const - lhs.const
    inputs = [k for k in coeffs if k[0] == INPUT]
    if not inputs:
        conj.rows.append(({k[1]: v for k, v in coeffs.items()}, bound))
        return
    if len(coeffs) > 1:
        names = ", ".join(name(*k) for k in coeffs)
        raise _error(f"expected a bound on one input variable (a box), found a linear constraint over {names}",
                     where)
    key = inputs[0]
    c = coeffs[key]
    if c == 0.0:
        raise _error(f"expected a bound on {name(*key)}, found a coefficient of zero", where)
    q = _exact_quotient(bound, c)
    if q is None:
        raise _error(f"expected a bound on {name(*key)} that is exact in binary floating point, "
                     f"found {c!r} * {name(*key)} <= {bound!r}", where)
    if c > 0:
        conj.upper(key[1], q)
    else:
        conj.lower(key[1], q)


class SpecBuilder:
    """Collects asserted DNFs in file order and assembles them into a `Spec`."""

    def __init__(self, name: Callable[[int, int], str],
                 declared_at: Callable[[int, int], Where] = lambda kind, i: (None, None)) -> None:
        self.name, self.declared_at = name, declared_at
        # One entry per assert, except that runs of single-disjunct asserts share one conjunction.
        self.segments: list[list[Conjunction]] = []
        self._plain: Conjunction | None = None  # the open run of single-disjunct asserts

    def plain(self, line: int | None = None, column: int | None = None) -> Conjunction:
        """The conjunction that collects the current run of single-disjunct asserts."""
        if self._plain is None:
            self._plain = Conjunction(line, column)
            self.segments.append([self._plain])
        return self._plain

    def add(self, dnf: list[Conjunction], where: Where = (None, None)) -> None:
        """Conjoin one asserted formula."""
        if len(dnf) == 1:
            self.plain(*where).absorb(dnf[0])
            return
        self._plain = None
        size = math.prod(len(s) for s in self.segments) * len(dnf)
        if size > MAX_DISJUNCTS:
            raise _error(f"expected at most {MAX_DISJUNCTS} disjuncts in disjunctive normal form, found {size} "
                         f"(several (assert (or ...)) are cross-multiplied)", where)
        self.segments.append(dnf)

    def build(self, inputs: int, outputs: int, positions: Mapping[str, tuple[int, int]] | None = None) -> Spec:
        """The spec: one `Case` per distinct input box, its polytopes in file order."""
        segments = self.segments or [[Conjunction()]]
        pack = struct.Struct(f"<{2 * inputs}d").pack
        groups: dict[bytes, tuple[list[float], list[float], list[Polytope]]] = {}
        # The box of a disjunct depends only on its conjunctions that bound inputs; a plain
        # 784-input box combined with 9 output disjuncts is built once, not 9 times.
        boxes: dict[tuple[int, ...], tuple[list[float], list[float], bytes]] = {}
        for combo in product(*segments):
            bounded = [c for c in combo if c.lo or c.hi]
            ident = tuple(map(id, bounded))
            box = boxes.get(ident)
            if box is None:
                lo, hi = self._box(bounded, inputs)
                box = boxes[ident] = (lo, hi, pack(*lo, *hi))
            entry = groups.get(box[2])
            if entry is None:
                entry = groups[box[2]] = (box[0], box[1], [])
            rows = combo[0].rows if len(combo) == 1 else [r for c in combo for r in c.rows]
            entry[2].append(self._polytope(rows, outputs))
        cases = tuple(Case(Box(tuple(lo), tuple(hi)), tuple(polys)) for lo, hi, polys in groups.values())
        return Spec(inputs, outputs, cases, positions if positions is not None else {})

    def _box(self, bounded: list[Conjunction], inputs: int) -> tuple[list[float], list[float]]:
        lo = [-_INF] * inputs
        hi = [_INF] * inputs
        if bounded:
            first = bounded[0]
            if len(first.lo) == inputs and len(first.hi) == inputs:
                # Every input bounded (keys are indices, so all of 0..n-1 are there): C-level.
                lo = list(map(first.lo.__getitem__, range(inputs)))
                hi = list(map(first.hi.__getitem__, range(inputs)))
            else:
                for i, v in first.lo.items():
                    lo[i] = v
                for i, v in first.hi.items():
                    hi[i] = v
            for conj in bounded[1:]:
                # Intersect; on a tie the later bound wins, as in the scorer.
                for i, v in conj.lo.items():
                    if not lo[i] > v:
                        lo[i] = v
                for i, v in conj.hi.items():
                    if not hi[i] < v:
                        hi[i] = v
        if -_INF in lo or _INF in hi:
            i = next(i for i in range(inputs) if lo[i] == -_INF or hi[i] == _INF)
            side = "lower" if lo[i] == -_INF else "upper"
            raise _error(f"expected a lower and an upper bound on input {self.name(INPUT, i)}, "
                         f"found no {side} bound", self.declared_at(INPUT, i))
        if any(map(operator.gt, lo, hi)):
            i = next(i for i in range(inputs) if lo[i] > hi[i])
            last = bounded[-1]
            exc = _error(f"expected lower <= upper for input {self.name(INPUT, i)}, found the empty range "
                         f"[{lo[i]!r}, {hi[i]!r}]", (last.line, last.column))
            # Lets a parser that still has the text point at the bound that emptied the range.
            exc.empty_range = (self.name(INPUT, i), lo[i], hi[i])  # type: ignore[attr-defined]
            raise exc
        return lo, hi

    @staticmethod
    def _polytope(rows: list[tuple[dict[int, float], float]], outputs: int) -> Polytope:
        a = []
        for coeffs, _ in rows:
            row = [0.0] * outputs
            for j, c in coeffs.items():
                row[j] = c
            a.append(tuple(row))
        return Polytope(tuple(a), tuple(b for _, b in rows))

