"""Spec -> VNN-LIB 1.0 text that every reference parser reads, with every number exact.

The subset: one declaration per line; input bounds as one comparison per assert
(``(assert (>= X_i lo))``, variable first, ``<=``/``>=`` only) when the spec has one input
box; every output disjunct inside ``(and ...)`` within a single ``(assert (or ...))``; for
several boxes each disjunct carries its box, as VNN-COMP files do; no comments, LF line ends,
a final newline. Numbers are written without exponent, in the shortest digits that read back
as the very same double (``-0.0``, subnormals and 1e300 included).
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

from vnnbridge.vnnlib.model import Polytope, Spec

__all__ = ["format_number", "write", "write_file"]


def _positional(r: str) -> str:
    """``repr`` text with an exponent -> the same digits without one."""
    mantissa, _, exp = r.partition("e")
    sign = "-" if mantissa.startswith("-") else ""
    mantissa = mantissa.lstrip("-")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    point = len(whole) + int(exp)
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}.0"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def format_number(x: float) -> str:
    """The shortest decimal text without exponent that parses back to exactly ``x``."""
    r = repr(float(x))
    if "e" in r:
        return _positional(r)
    if "n" in r:  # inf, nan
        raise ValueError(f"VNN-LIB numbers must be finite, got {x!r}")
    return r


def _numbers(values: Iterable[float]) -> list[str]:
    out = list(map(repr, values))
    probe = "".join(out)
    if "e" in probe or "n" in probe:
        out = [format_number(float(r)) if "e" in r or "n" in r else r for r in out]
    return out


@lru_cache(maxsize=32)
def _bounds_template(inputs: int) -> str:
    # One str.format call fills all 2n numbers: about 5x faster than an f-string per input.
    return "".join(f"(assert (>= X_{i} {{}}))\n(assert (<= X_{i} {{}}))\n" for i in range(inputs))


def _bounds(lower: Sequence[float], upper: Sequence[float]) -> str:
    values: list[str] = [""] * (2 * len(lower))
    values[0::2] = _numbers(lower)
    values[1::2] = _numbers(upper)
    return _bounds_template(len(lower)).format(*values)


@lru_cache(maxsize=32)
def _declarations(inputs: int, outputs: int) -> str:
    return "".join([*(f"(declare-const X_{i} Real)\n" for i in range(inputs)),
                    *(f"(declare-const Y_{j} Real)\n" for j in range(outputs))])


def _row(a: Sequence[float], b: float) -> str:
    """One output row ``a·y <= b`` in the simplest form tools read."""
    terms = [(j, c) for j, c in enumerate(a) if c != 0.0 or math.copysign(1.0, c) < 0.0]
    if len(terms) == 1:
        j, c = terms[0]
        if c == 1.0:
            return f"(<= Y_{j} {format_number(b)})"
        if c == -1.0:
            return f"(>= Y_{j} {format_number(-b)})"
    elif len(terms) == 2 and b == 0.0 and math.copysign(1.0, b) > 0.0:
        (i, ci), (j, cj) = terms
        if ci == -1.0 and cj == 1.0:
            i, j = j, i
            ci, cj = cj, ci
        if ci == 1.0 and cj == -1.0:
            # y_i - y_j <= 0, i.e. y_j >= y_i: the robustness query's form.
            return f"(>= Y_{j} Y_{i})"
    if not terms:
        return f"(<= 0.0 {format_number(b)})"
    parts = " ".join(f"(* {format_number(c)} Y_{j})" for j, c in terms)
    lhs = parts if len(terms) == 1 else f"(+ {parts})"
    return f"(<= {lhs} {format_number(b)})"


def _conjunction(poly: Polytope) -> str:
    return " ".join(_row(a, b) for a, b in zip(poly.a, poly.b))


def write(spec: Spec) -> str:
    """VNN-LIB 1.0 text for ``spec``; `parse` reads it back to an equal spec, bit for bit."""
    parts = [_declarations(spec.inputs, spec.outputs)]
    single = len(spec.cases) == 1 and all(p.b for p in spec.cases[0].polytopes)
    if single:
        case = spec.cases[0]
        parts.append(_bounds(case.box.lower, case.box.upper))
        polys = case.polytopes
        parts.append("(assert (or\n" + "".join(f"    (and {_conjunction(p)})\n" for p in polys) + "))\n")
    elif len(spec.cases) == 1 and len(spec.cases[0].polytopes) == 1:
        # One box, and its one polytope has no rows: every output is unsafe.
        parts.append(_bounds(spec.cases[0].box.lower, spec.cases[0].box.upper))
    else:
        parts.append("(assert (or\n")
        for case in spec.cases:
            lows, highs = _numbers(case.box.lower), _numbers(case.box.upper)
            box = " ".join([f"(>= X_{i} {lo}) (<= X_{i} {hi})" for i, (lo, hi) in enumerate(zip(lows, highs))])
            for poly in case.polytopes:
                rows = _conjunction(poly)
                parts.append(f"    (and {box}{' ' if rows else ''}{rows})\n")
        parts.append("))\n")
    return "".join(parts)


def write_file(spec: Spec, path: str | Path) -> Path:
    """Write ``spec`` as VNN-LIB 1.0 to ``path`` (``.gz`` compresses); return the path."""
    p = Path(path)
    text = write(spec)
    if p.name.endswith(".gz"):
        import gzip

        p.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    else:
        p.write_text(text, encoding="utf-8", newline="\n")
    return p
