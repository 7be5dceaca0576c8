"""The frozen spec model: what a VNN-LIB property means, in the form verifiers consume.

A `Spec` is a list of `Case`s. Each case is an input box with a disjunction of output
polytopes ``A·y <= b``. As in VNN-COMP, the file states the *unsafe* condition: the property
is violated (`sat`) iff some case has an ``x`` in its box whose output ``y`` meets all rows of
some polytope of that case. ``unsat`` means the property holds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from vnnbridge.box import Box

__all__ = ["Case", "Polytope", "Spec", "membership_spec", "robustness_spec", "spec_bits"]


@dataclass(frozen=True, slots=True)
class Polytope:
    """Rows ``a[k] · y <= b[k]``, all of which must hold (a conjunction)."""

    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.a) != len(self.b):
            raise ValueError(f"a polytope needs one bound per row: {len(self.a)} rows, {len(self.b)} bounds")
        if len({len(row) for row in self.a}) > 1:
            raise ValueError("polytope rows differ in length")

    @classmethod
    def from_arrays(cls, a: np.ndarray, b: np.ndarray) -> Polytope:
        """Build from a matrix and a vector."""
        a = np.asarray(a, dtype=np.float64)
        return cls(tuple(tuple(float(v) for v in row) for row in a.reshape(len(a), -1)),
                   tuple(float(v) for v in np.asarray(b, dtype=np.float64).ravel()))

    def arrays(self, outputs: int) -> tuple[np.ndarray, np.ndarray]:
        """The matrix (rows x outputs) and the bound vector."""
        a = np.array(self.a, dtype=np.float64).reshape(len(self.a), outputs)
        return a, np.array(self.b, dtype=np.float64)

    def met_by(self, y: Iterable[float], atol: float = 0.0) -> bool:
        """Whether the output ``y`` meets every row (each bound widened by ``atol``)."""
        v = np.asarray(y, dtype=np.float64).ravel()
        a, b = self.arrays(v.size)
        return bool(np.all(a @ v <= b + atol))


@dataclass(frozen=True, slots=True)
class Case:
    """An input box and the output polytopes whose union is unsafe for it."""

    box: Box
    polytopes: tuple[Polytope, ...]

    def __post_init__(self) -> None:
        if not self.polytopes:
            raise ValueError("a case needs at least one output polytope (an empty disjunction is false)")


@dataclass(frozen=True, slots=True)
class Spec:
    """A whole property: input and output counts and its cases."""

    inputs: int
    outputs: int
    cases: tuple[Case, ...]
    # Where each variable was first bounded, for error messages about the model (not compared).
    positions: Mapping[str, tuple[int, int]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.cases:
            raise ValueError("a spec needs at least one case")
        for case in self.cases:
            if case.box.dim != self.inputs:
                raise ValueError(f"a case box has {case.box.dim} inputs, the spec {self.inputs}")
            for poly in case.polytopes:
                if any(len(row) != self.outputs for row in poly.a):
                    raise ValueError(f"a polytope row does not have {self.outputs} output coefficients")

    def summary(self) -> dict[str, object]:
        """Counts as the VNN-COMP scorer's ``read_vnnlib_simple`` reports them."""
        return {
            "inputs": self.inputs,
            "outputs": self.outputs,
            "boxes": len(self.cases),
            "disjuncts_per_box": [len(c.polytopes) for c in self.cases],
            "rows": [[len(p.b) for p in c.polytopes] for c in self.cases],
        }

    def violated_by(self, x: Iterable[float], y: Iterable[float], atol: float = 0.0) -> bool:
        """Whether input ``x`` with output ``y`` is a counterexample (boxes and rows widened by atol)."""
        xv = np.asarray(x, dtype=np.float64).ravel()
        yv = np.asarray(y, dtype=np.float64).ravel()
        return any(case.box.contains(xv, atol) and any(p.met_by(yv, atol) for p in case.polytopes)
                   for case in self.cases)

    @property
    def single_box(self) -> Box:
        """The input box when the spec has exactly one case."""
        if len(self.cases) != 1:
            raise ValueError(f"the spec has {len(self.cases)} input boxes, not one")
        return self.cases[0].box


def _other_rows(label: int, outputs: int, sign: float) -> list[np.ndarray]:
    if not 0 <= label < outputs:
        raise ValueError(f"label {label} is not an output index (0..{outputs - 1})")
    rows = []
    for j in range(outputs):
        if j != label:
            row = np.zeros(outputs)
            row[label], row[j] = sign, -sign
            rows.append(row)
    return rows


def robustness_spec(box: Box, label: int, outputs: int, margin: float = 0.0) -> Spec:
    """The robustness query: ``sat`` iff some x in ``box`` has some other logit >= label's - margin.

    Ties count against robustness. Each other class is its own polytope (one row
    ``y_label - y_j <= margin``), the disjunction the VNN-COMP benchmarks use.
    """
    polys = tuple(Polytope.from_arrays(r[None, :], np.array([margin])) for r in _other_rows(label, outputs, 1.0))
    return Spec(box.dim, outputs, (Case(box, polys),))


def membership_spec(box: Box, label: int, outputs: int) -> Spec:
    """The class-membership query: ``sat`` iff some x in ``box`` has label's logit >= every other."""
    rows = _other_rows(label, outputs, -1.0)
    return Spec(box.dim, outputs, (Case(box, (Polytope.from_arrays(np.array(rows), np.zeros(len(rows))),)),))



def spec_bits(spec: Spec) -> list[bytes]:
    """Every float of a spec as its IEEE bits, for bit-exact comparison (``-0.0`` differs from ``0.0``)."""
    out = []
    for c in spec.cases:
        out.append(struct.pack(f"<{2 * c.box.dim}d", *c.box.lower, *c.box.upper))
        for p in c.polytopes:
            out += [struct.pack(f"<{len(r)}d", *r) for r in p.a]
            out.append(struct.pack(f"<{len(p.b)}d", *p.b))
    return out
