"""Spec -> VNN-LIB text. PLACEHOLDER: the VNN-LIB issue replaces this with the exact writer."""

from __future__ import annotations

from vnnbridge.vnnlib.model import Spec

__all__ = ["write"]


def _num(x: float) -> str:
    return repr(float(x))


def write(spec: Spec) -> str:
    """VNN-LIB 1.0 text for ``spec`` (placeholder, single case only)."""
    case = spec.single_box and spec.cases[0]
    lines = [f"(declare-const X_{i} Real)" for i in range(spec.inputs)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(spec.outputs)]
    for i, (lo, hi) in enumerate(zip(case.box.lower, case.box.upper)):
        lines += [f"(assert (>= X_{i} {_num(lo)}))", f"(assert (<= X_{i} {_num(hi)}))"]
    disj = []
    for poly in case.polytopes:
        rows = []
        for a, b in zip(poly.a, poly.b):
            terms = " ".join(f"(* {_num(c)} Y_{j})" for j, c in enumerate(a) if c != 0.0)
            rows.append(f"(<= (+ {terms}) {_num(b)})")
        disj.append("(and " + " ".join(rows) + ")")
    lines.append("(assert (or " + " ".join(disj) + "))")
    return "\n".join(lines) + "\n"
