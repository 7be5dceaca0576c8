"""VNN-LIB text -> `Spec`: an LALR parser for VNN-LIB 1.0 with the transformer inside it.

The grammar is ``grammars/vnnlib.lark``. Runs of declarations and of simple asserts,
comparisons, simple conjunctions and disjunctions of them are single terminals (see the
grammar's header) that the callbacks below split with one regular expression each; anything
that does not fit goes through the general rules, with the same results and messages.
Files that start with ``(vnnlib-version <2.x>)`` go to `vnnbridge.vnnlib.vnnlib2`.
Every error is a `SpecError` (or `SpecSyntaxError`) whose ``located()`` reads
``FILE:LINE:COL: what was expected, what was found``.
"""

from __future__ import annotations

import gzip
import logging
import math
import re
import threading
from functools import lru_cache
from importlib import resources
from itertools import compress, repeat
from operator import is_not, not_
from pathlib import Path
from typing import Any, Iterator, Mapping

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternRE, TerminalDef

from vnnbridge.errors import InputError, SpecError, SpecSyntaxError
from vnnbridge.vnnlib.dnf import (INPUT, OUTPUT, Conjunction, Linear, SpecBuilder, compare, conjoin,
                                  disjoin)
from vnnbridge.vnnlib.model import Spec

__all__ = ["grammar_text", "is_vnnlib2", "parse", "parse_file", "read_text", "syntax_error"]

log = logging.getLogger(__name__)

# As the grammar's NUMBER and SYMBOL, atomic so that long literals never backtrack.
_NUM = r"[+-]?(?>\d+(?:\.\d*)?|\.\d+)(?>[eE][+-]?\d+)?"
_SYM = r"[A-Za-z_][A-Za-z0-9_.\-]*+"
_OPND = rf"(?:{_SYM}|{_NUM})"
_NUMBER = re.compile(_NUM)
_SYMBOL = re.compile(_SYM)
# One comparison inside a whole-shape terminal: operator and operands. Operands are only "no
# space, no parenthesis" here, which is cheaper to scan; every operand that is not a declared
# variable is checked against _NUMBER/_SYMBOL before use.
_CMP = re.compile(r"\(\s*([<>]=?)\s*([^\s();]++)\s+([^\s();]++)\s*\)")
_DECL_SPLIT = re.compile(rf"\(\s*declare-const\s+({_SYM})\s+Real\s*\)")
_OR_HEAD = re.compile(r"\(\s*or")
# A DISJ token is split into chunks of about this many characters, at conjunction starts, so
# that the items found at once stay small next to a 100 MB text.
_CHUNK = 1 << 20
_VAR = re.compile(r"([XY])_(0|[1-9][0-9]*)")
_LOOKS_VAR = re.compile(r"[XY]_[0-9]+")
_V2_HEAD = re.compile(r"(?:\s|;[^\n]*)*\(\s*vnnlib-version\b")
_NONFINITE_WORDS = {"inf", "infinity", "nan", "+inf", "-inf"}
_INFS = (math.inf, -math.inf)

# Human names of the grammar's terminals, for "expected ..." messages.
_EXPECTED = {
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "COMMA": "','",
    "SYMBOL": "a variable", "NAME": "a name", "NUMBER": "a number", "INT": "an integer",
    "REL": "a comparison operator (<=, >=, <, >)", "AND": "'and'", "OR": "'or'", "ASSERT": "'assert'",
    "DECLARE_CONST": "'declare-const'", "PLUS": "'+'", "MINUS": "'-'", "TIMES": "'*'",
    "$END": "end of file", "VERSION": "a version like <2.0>", "ONNX_NAME": "a quoted ONNX name",
    "INITIALIZED": "'initialized'", "EQUIVALENCE": "'equal-to' or 'isomorphic-to'",
    "VNNLIB_VERSION": "'vnnlib-version'", "DECLARE_NETWORK": "'declare-network'",
    "DECLARE_INPUT": "'declare-input'", "DECLARE_HIDDEN": "'declare-hidden'",
    "DECLARE_OUTPUT": "'declare-output'",
}
# Whole-shape terminals: always accompanied by '(' in an expected set, so not worth naming.
_SHAPES = {"DECLS", "ASSERTS", "CMP", "CONJ", "DISJ"}


def grammar_text(name: str) -> str:
    """The text of a grammar file shipped as ``vnnbridge.grammars`` (checkout or wheel)."""
    try:
        return (resources.files("vnnbridge.grammars") / name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        # A checkout used without installing: the folder sits beside the package.
        return (Path(__file__).resolve().parents[2] / "grammars" / name).read_text(encoding="utf-8")


def is_vnnlib2(text: str) -> bool:
    """Whether ``text`` starts (after comments) with a VNN-LIB 2 version header."""
    return _V2_HEAD.match(text) is not None


def _where_in(tok: Token, offset: int) -> tuple[int, int]:
    """Line and column of ``offset`` characters into ``tok``."""
    newlines = tok.count("\n", 0, offset)
    if not newlines:
        return tok.line, tok.column + offset
    return tok.line + newlines, offset - tok.rfind("\n", 0, offset)


class _Cursor:
    """Line and column of increasing offsets into one token, in time linear in its length."""

    def __init__(self, tok: Token) -> None:
        self.tok, self.offset, self.line, self.line_start = tok, 0, tok.line, -tok.column + 1

    def at(self, offset: int) -> tuple[int, int]:
        """Line and column ``offset`` characters into the token (offsets must not decrease)."""
        tok = self.tok
        newlines = tok.count("\n", self.offset, offset)
        if newlines:
            self.line += newlines
            self.line_start = tok.rfind("\n", self.offset, offset) + 1
        self.offset = offset
        return self.line, offset - self.line_start + 1


def _show(text: str, limit: int = 40) -> str:
    text = " ".join(str(text).split())
    return repr(text if len(text) <= limit else text[:limit] + "...")


def syntax_error(exc: UnexpectedInput, text: str, path: str | None) -> SpecSyntaxError:
    """Turn lark's exception into a one-line located `SpecSyntaxError`."""
    line, column = exc.line, exc.column
    if isinstance(exc, UnexpectedCharacters):
        found = _show(re.compile(r"[^\s()\[\]]+|\S").match(text, exc.pos_in_stream).group(0))
        expected = exc.allowed or set()
    elif isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        found = _show(exc.token)
        expected = exc.accepts or exc.expected
    else:  # end of input
        found = "end of file"
        expected = getattr(exc, "accepts", None) or exc.expected or set()
        line = text.count("\n") + 1
        column = len(text) - text.rfind("\n")
    names = sorted({_EXPECTED.get(e, e) for e in expected if e not in _SHAPES})
    if not names:
        wanted = "something else"
    elif len(names) == 1:
        wanted = names[0]
    else:
        wanted = ", ".join(names[:-1]) + " or " + names[-1]
    return SpecSyntaxError(f"expected {wanted}, found {found}", path=path,
                           line=line if line and line > 0 else None,
                           column=column if column and column > 0 else None)


@lru_cache(maxsize=64)
def _alternating(n: int, first: str) -> tuple[str, ...]:
    """``(first, other, first, other, ...)`` of length n, for comparing a column of operators."""
    other = "<=" if first == ">=" else ">="
    return (first, other) * (n // 2)


class _NotAShape(Exception):
    """A whole-shape token holds something that is no operand; the general rules must say what."""


class _Places(Mapping[str, tuple[int, int]]):
    """Where each variable was declared, worked out on first use (most parses never need it)."""

    def __init__(self) -> None:
        self.known: dict[str, tuple[int, int]] = {}
        self.unplaced: list[Token] = []  # runs of declarations read in bulk

    def _all(self) -> dict[str, tuple[int, int]]:
        for tok in self.unplaced:
            cursor = _Cursor(tok)
            for m in _DECL_SPLIT.finditer(tok):
                self.known[m.group(1)] = cursor.at(m.start(1))
        self.unplaced.clear()
        return self.known

    def __getitem__(self, name: str) -> tuple[int, int]:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


class _State:
    """What one parse has seen so far: declarations, and the asserts in a `SpecBuilder`."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.vars: dict[str, tuple[int, int]] = {}
        self.inputs: dict[str, int] = {}  # the inputs among vars: name -> index
        # Declarations read in bulk keep their token; their positions are worked out only when
        # a message or the spec asks for them (most parses never need one).
        self.positions = _Places()
        self.builder = SpecBuilder(self.name, self.declared_at)
        self.strict = 0

    @staticmethod
    def name(kind: int, i: int) -> str:
        """The 1.0 name of a variable."""
        return f"{'XY'[kind]}_{i}"

    def indices(self, kind: int) -> set[int]:
        """The declared indices of one kind of variable."""
        return {i for k, i in self.vars.values() if k == kind}

    def declared_at(self, kind: int, i: int) -> tuple[int | None, int | None]:
        """Where a variable was declared."""
        return self.positions.get(self.name(kind, i), (None, None))

    def declare_all(self, tok: Token, names: list[str]) -> bool:
        """Record a run of well-formed declarations at once; False when one needs a message."""
        if not all(map(_VAR.fullmatch, names)):
            return False
        new = {n: (INPUT if n[0] == "X" else OUTPUT, int(n[2:])) for n in names}
        if len(new) != len(names) or not new.keys().isdisjoint(self.vars):
            return False
        self.vars.update(new)
        self.inputs.update((n, i) for n, (k, i) in new.items() if k == INPUT)
        self.positions.unplaced.append(tok)
        return True

    def declare(self, name: str, sort: str, line: int, column: int, sort_at: tuple[int, int]) -> None:
        """Record ``(declare-const name sort)``."""
        m = _VAR.fullmatch(name)
        if not m:
            raise SpecError(f"expected a variable named X_<i> (an input) or Y_<j> (an output), found {name!r}",
                            line=line, column=column)
        if sort != "Real":
            raise SpecError(f"expected the sort Real for {name}, found {sort!r}", line=sort_at[0], column=sort_at[1])
        kind = INPUT if m.group(1) == "X" else OUTPUT
        i = int(m.group(2))
        if name in self.vars:
            first = self.positions[name]
            raise SpecError(f"expected one declaration of {name}, found a second one (the first is at line "
                            f"{first[0]})", line=line, column=column)
        self.vars[name] = (kind, i)
        if kind == INPUT:
            self.inputs[name] = i
        self.positions.known[name] = (line, column)

    def warn_strict(self, op: str, where: tuple[int, int]) -> str:
        """Map a strict comparison to the non-strict one (the closure), warning once per file."""
        self.strict += 1
        if self.strict == 1:
            log.warning("%s:%d:%d: strict '%s' read as non-strict '%s=' (further ones are not reported)",
                        self.path or "<text>", where[0], where[1], op, op)
        return op + "="

    def number(self, text: str) -> float:
        """The value of an operand that is not a declared variable (`_NotAShape` if it is no operand)."""
        if _NUMBER.fullmatch(text) is None:
            if _SYMBOL.fullmatch(text) is None:
                raise _NotAShape(text)
            if text.lower() in _NONFINITE_WORDS:
                raise SpecError(f"expected a finite number, found {text!r}")
            if _LOOKS_VAR.fullmatch(text):
                kind = INPUT if text[0] == "X" else OUTPUT
                declared = sorted(self.indices(kind))
                have = (f"{self.name(kind, declared[0])} .. {self.name(kind, declared[-1])} are declared"
                        if declared else f"no {'input' if kind == INPUT else 'output'} is declared")
                raise SpecError(f"expected a declared variable, found {text} ({have})")
            raise SpecError(f"expected a declared variable or a number, found {text!r}")
        v = float(text)
        if v in _INFS:
            raise SpecError(f"expected a finite number, found {text!r} (it overflows a double)")
        return v

    def atom(self, conj: Conjunction, op: str, a: str, b: str, where: tuple[int, int]) -> None:
        """Add the comparison ``(op a b)`` of two operands (variables or numbers) to ``conj``."""
        if len(op) == 1:
            op = self.warn_strict(op, where)
        va = self.vars.get(a)
        vb = self.vars.get(b)
        if va is not None and vb is None:
            v = self.number(b)
            kind, i = va
            if kind == INPUT:
                if op == "<=":
                    conj.upper(i, v)
                else:
                    conj.lower(i, v)
            elif op == "<=":
                conj.rows.append(({i: 1.0}, v))
            else:
                conj.rows.append(({i: -1.0}, -v))
        elif va is None and vb is not None:
            # ``(<= c V)`` is ``(>= V c)``: one code path for both orders.
            self.atom(conj, ">=" if op == "<=" else "<=", b, a, where)
        else:
            lhs = Linear({va: 1.0}) if va is not None else Linear(None, self.number(a))
            rhs = Linear({vb: 1.0}) if vb is not None else Linear(None, self.number(b))
            compare(conj, op, lhs, rhs, (None, None), self.name)

    def finish(self) -> Spec:
        """The spec of everything parsed."""
        counts = []
        for kind, word in ((INPUT, "input"), (OUTPUT, "output")):
            found = self.indices(kind)
            if not found:
                raise SpecError(f"expected at least one declared {word} variable "
                                f"({self.name(kind, 0)}), found none", line=1, column=1)
            n = len(found)
            if max(found) != n - 1:
                missing = min(set(range(n)) - found)
                after = min(i for i in found if i > missing)
                line, column = self.declared_at(kind, after)
                raise SpecError(f"expected {self.name(kind, 0)} .. {self.name(kind, max(found))} declared without "
                                f"gaps, found no declaration of {self.name(kind, missing)}", line=line, column=column)
            counts.append(n)
        return self.builder.build(counts[0], counts[1], self.positions)


def _located(exc: SpecError, where: tuple[int, int]) -> SpecError:
    if exc.line is None:
        exc.line, exc.column = where
    return exc


class _ToSpec(Transformer):
    """The callbacks that LALR calls on each reduction; formulas become DNFs (lists of `Conjunction`)."""

    state: Any = None

    def _general(self, tok: Token, start: str) -> Any:
        """Parse a shape token again with the general rules (exact results and messages)."""
        # Padding puts the token at its own line and column, so positions come out right.
        text = "\n" * (tok.line - 1) + " " * (tok.column - 1) + tok
        try:
            return _general_parser().parse(text, start=start)
        except UnexpectedInput as exc:
            # Translated here: the outer parser would replace the state this message needs.
            raise syntax_error(exc, text, None) from None

    def declare_fast(self, c: list[Token]) -> None:
        tok = c[0]
        found = _DECL_SPLIT.findall(tok)
        if len(found) != tok.count("("):
            self._general(tok, "start")
            return
        if self.state.declare_all(tok, found):
            return
        cursor = _Cursor(tok)
        for m in _DECL_SPLIT.finditer(tok):
            line, column = cursor.at(m.start(1))
            self.state.declare(m.group(1), "Real", line, column, (line, column))

    def declare(self, c: list[Token]) -> None:
        _, name, sort = c
        self.state.declare(str(name), str(sort), name.line, name.column, (sort.line, sort.column))

    def _fill(self, conj: Conjunction, tok: Token, items: list[tuple[str, str, str]], where: tuple[int, int]) -> None:
        """Add the comparisons ``items`` (the ``_CMP`` matches in ``tok[where[0]:where[1]]``) to ``conj``."""
        if len(items) < 8 or not self._fill_bulk(conj, tok, items, where):
            self._fill_loop(conj, tok, items, where)

    def _locate(self, tok: Token, where: tuple[int, int], k: int) -> tuple[int, int]:
        """Line and column of comparison ``k`` (see `_fill`)."""
        for n, m in enumerate(_CMP.finditer(tok, *where)):
            if n == k:
                return _where_in(tok, m.start())
        return (tok.line, tok.column)

    def _where(self, tok: Token, where: tuple[int, int], k: int, op: str) -> tuple[int, int]:
        """Where comparison ``k`` is, when a strict operator needs its (first) warning."""
        if len(op) == 2 or self.state.strict:
            return (tok.line, tok.column)  # not reported: a warning is given once per file
        return self._locate(tok, where, k)

    def _fill_bulk(self, conj: Conjunction, tok: Token, items: list[tuple[str, str, str]],
                   where: tuple[int, int]) -> bool:
        """`_fill` for the common shape, a run of ``(<= X_i number)``/``(>= X_i number)`` with few others.

        Works on whole columns with C-level map/compress/dict, about 3x faster than the loop.
        Returns False, having changed nothing, when some comparison needs the loop: a strict
        operator, an operand that is not a finite number, a variable bounded twice (the tie
        rule), an input anywhere else.
        """
        st = self.state
        inputs = st.inputs
        ops, names, nums = zip(*items)
        idx = list(map(inputs.get, names))
        if None not in idx:
            others: list[int] = []
            xs_idx, xs_ops, xs_nums = idx, ops, nums
        else:
            first = idx.index(None)
            if idx.count(None) == len(idx) - first:
                # Output rows after the input bounds (the usual layout): slices, no compress.
                others = list(range(first, len(idx)))
                xs_idx, xs_ops, xs_nums = idx[:first], ops[:first], nums[:first]
            else:
                isx = list(map(is_not, idx, repeat(None)))
                others = list(compress(range(len(idx)), map(not_, isx)))
                xs_idx, xs_ops, xs_nums = (list(compress(idx, isx)), tuple(compress(ops, isx)),
                                           list(compress(nums, isx)))
            if any(names[k] in inputs or nums[k] in inputs for k in others):
                return False
        try:
            vals = list(map(float, xs_nums))
        except ValueError:
            return False
        # float() also reads "1_0", "inf" and "nan", which are no VNN-LIB numbers. (A sum that
        # overflows only sends a valid conjunction to the loop.)
        if not math.isfinite(sum(vals)) or "_" in "".join(xs_nums):
            return False
        n = len(xs_ops)
        n_upper, n_lower = xs_ops.count("<="), xs_ops.count(">=")
        if n_upper + n_lower != n:
            return False
        if n and n % 2 == 0 and xs_ops == _alternating(n, xs_ops[0]):
            # (>= X_i lo) (<= X_i hi) pairs, as VNN-COMP files and our writer lay them out.
            a, b = (xs_idx[0::2], vals[0::2]), (xs_idx[1::2], vals[1::2])
            (lo_idx, lo_vals), (hi_idx, hi_vals) = (a, b) if xs_ops[0] == ">=" else (b, a)
            new_hi = dict(zip(hi_idx, hi_vals))
            new_lo = dict(zip(lo_idx, lo_vals))
        else:
            upper = list(map("<=".__eq__, xs_ops))
            new_hi = dict(zip(compress(xs_idx, upper), compress(vals, upper)))
            lower = list(map(not_, upper))
            new_lo = dict(zip(compress(xs_idx, lower), compress(vals, lower)))
        if len(new_hi) != n_upper or len(new_lo) != n_lower:
            return False
        if not (conj.hi.keys().isdisjoint(new_hi) and conj.lo.keys().isdisjoint(new_lo)):
            return False
        conj.hi.update(new_hi)
        conj.lo.update(new_lo)
        k = 0
        try:
            for k in others:
                st.atom(conj, ops[k], names[k], nums[k], self._where(tok, where, k, ops[k]))
        except SpecError as exc:
            raise _located(exc, self._locate(tok, where, k)) from None
        return True

    def _fill_loop(self, conj: Conjunction, tok: Token, items: list[tuple[str, str, str]],
                   where: tuple[int, int]) -> None:
        """`_fill` one comparison at a time, in file order."""
        st = self.state
        get = st.inputs.get
        lo, hi = conj.lo, conj.hi
        lo_get, hi_get = lo.get, hi.get
        k = 0
        try:
            # The common case inlined (as Conjunction.lower/upper): an input bound ``(op X_i number)``.
            for k, (op, a, b) in enumerate(items):
                i = get(a)
                if i is not None and op in ("<=", ">=") and _NUMBER.fullmatch(b):
                    v = float(b)
                    if v in _INFS:
                        st.number(b)
                    if op == "<=":
                        old = hi_get(i)
                        hi[i] = old if old is not None and old < v else v
                    else:
                        old = lo_get(i)
                        lo[i] = old if old is not None and old > v else v
                else:
                    st.atom(conj, op, a, b, self._where(tok, where, k, op))
        except SpecError as exc:
            raise _located(exc, self._locate(tok, where, k)) from None

    def assert_fast(self, c: list[Token]) -> None:
        tok = c[0]
        items = _CMP.findall(tok)
        if 2 * len(items) != tok.count("("):
            self._general(tok, "start")
            return
        conj = Conjunction(tok.line, tok.column)
        try:
            self._fill(conj, tok, items, (0, len(tok)))
        except _NotAShape:
            self._general(tok, "start")
            return
        self.state.builder.plain(tok.line, tok.column).absorb(conj)

    def assert_formula(self, c: list[Any]) -> None:
        kw, dnf = c
        self.state.builder.add(dnf, (kw.line, kw.column))

    def cmp_fast(self, c: list[Token]) -> list[Conjunction]:
        return self.conj_fast(c)

    def conj_fast(self, c: list[Token]) -> list[Conjunction]:
        tok = c[0]
        items = _CMP.findall(tok)
        if len(items) != tok.count("(") - (tok.type == "CONJ"):
            return self._general(tok, "formula")
        conj = Conjunction(tok.line, tok.column)
        try:
            self._fill(conj, tok, items, (0, len(tok)))
        except _NotAShape:
            return self._general(tok, "formula")
        return [conj]

    def disj_fast(self, c: list[Token]) -> list[Conjunction]:
        tok = c[0]
        dnf: list[Conjunction] = []
        pos, stop = _OR_HEAD.match(tok).end(), len(tok) - 1  # inside "(or" ... ")"
        where = (tok.line, tok.column)
        try:
            while pos < stop:
                end = tok.find("(and", pos + _CHUNK, stop) if stop - pos > _CHUNK else -1
                end = stop if end < 0 else end
                # str.split at the literal "(and" is the cheapest way to the conjunctions; any
                # other spelling ("( and", "(andy") leaves text that the checks below refuse.
                parts = tok[pos:end].split("(and")
                if parts[0].strip():
                    return self._general(tok, "formula")
                offset = pos + len(parts[0])
                for part in parts[1:]:
                    span = (offset + 4, offset + 4 + len(part))
                    offset = span[1]
                    items = _CMP.findall(part)
                    # An empty "(and)" (a conjunction of its own, or one nested in another) and
                    # anything not split into comparisons goes to the general rules.
                    if not items or part[0] not in " \t\r\n(" or len(items) != part.count("("):
                        return self._general(tok, "formula")
                    conj = Conjunction(*where)
                    self._fill(conj, tok, items, span)
                    dnf.append(conj)
                pos = end
        except _NotAShape:
            return self._general(tok, "formula")
        return disjoin([dnf], where)

    def conj(self, c: list[Any]) -> list[Conjunction]:
        kw = c[0]
        return conjoin(c[1:], (kw.line, kw.column))

    def disj(self, c: list[Any]) -> list[Conjunction]:
        kw = c[0]
        return disjoin(c[1:], (kw.line, kw.column))

    def compare(self, c: list[Any]) -> list[Conjunction]:
        rel, lhs, rhs = c
        where = (rel.line, rel.column)
        op = str(rel)
        if len(op) == 1:
            op = self.state.warn_strict(op, where)
        conj = Conjunction(*where)
        compare(conj, op, lhs, rhs, where, self.state.name)
        return [conj]

    def symbol(self, c: list[Token]) -> Linear:
        tok = c[0]
        key = self.state.vars.get(str(tok))
        if key is None:
            try:
                return Linear(None, self.state.number(str(tok)))
            except SpecError as exc:
                raise _located(exc, (tok.line, tok.column)) from None
        return Linear({key: 1.0})

    def number(self, c: list[Token]) -> Linear:
        tok = c[0]
        try:
            return Linear(None, self.state.number(str(tok)))
        except SpecError as exc:
            raise _located(exc, (tok.line, tok.column)) from None

    def plus(self, c: list[Any]) -> Linear:
        total = c[1]
        for term in c[2:]:
            total = total.plus(term)
        return total

    def minus(self, c: list[Any]) -> Linear:
        if len(c) == 2:
            return c[1].negated()
        total = c[1]
        for term in c[2:]:
            total = total.plus(term.negated())
        return total

    def times(self, c: list[Any]) -> Linear:
        kw, terms = c[0], c[1:]
        variable = [t for t in terms if not t.is_constant()]
        if len(variable) > 1:
            raise SpecError("expected a linear term (a constant times a variable), found a product of variables",
                            line=kw.line, column=kw.column)
        factor = 1.0
        for t in terms:
            if t.is_constant():
                factor *= t.const
        if not variable:
            return Linear(None, factor)
        return variable[0].scaled(factor) if factor != 1.0 else variable[0]

    def start(self, c: list[Any]) -> None:
        return None


_LOCK = threading.Lock()
_TRANSFORMER = _ToSpec()
_PARSER: Lark | None = None
_GENERAL: Lark | None = None


def _parser() -> Lark:
    global _PARSER
    if _PARSER is None:
        _PARSER = Lark(grammar_text("vnnlib.lark"), parser="lalr", lexer="contextual",
                       transformer=_TRANSFORMER, maybe_placeholders=False)
    return _PARSER


def _switch_off_shapes(term: TerminalDef) -> None:
    if term.name in _SHAPES:
        term.pattern = PatternRE("(?!x)x")  # matches nothing, so the general rules take over


def _general_parser() -> Lark:
    """The same grammar without its whole-shape terminals (for shapes that did not fit)."""
    global _GENERAL
    if _GENERAL is None:
        _GENERAL = Lark(grammar_text("vnnlib.lark"), parser="lalr", lexer="contextual", start=["start", "formula"],
                        transformer=_TRANSFORMER, maybe_placeholders=False, edit_terminals=_switch_off_shapes)
    return _GENERAL


def parse(text: str, path: str | None = None) -> Spec:
    """The spec of a VNN-LIB text (1.0, or 2.x when it starts with a version header)."""
    if is_vnnlib2(text):
        from vnnbridge.vnnlib.vnnlib2 import parse_document

        return parse_document(text, path).to_spec()
    state = _State(path)
    try:
        with _LOCK:
            parser = _parser()
            _TRANSFORMER.state = state
            try:
                parser.parse(text)
            finally:
                _TRANSFORMER.state = None
        return state.finish()
    except UnexpectedInput as exc:
        raise syntax_error(exc, text, path) from None
    except SpecError as exc:
        exc.path = exc.path or path
        if hasattr(exc, "empty_range"):
            _point_at_bound(exc, text)
        raise


def _point_at_bound(exc: SpecError, text: str) -> None:
    """Move an empty-range error to the later of the two comparisons that set its bounds."""
    name, lo, hi = exc.empty_range  # type: ignore[attr-defined]
    pattern = re.compile(rf"\(\s*(?:<=|>=|<|>)\s*(?:{re.escape(name)}\s+({_OPND})|({_OPND})\s+{re.escape(name)})\s*\)")
    found: dict[float, int] = {}
    for m in pattern.finditer(text):
        value = float(m.group(1) or m.group(2)) if (m.group(1) or m.group(2))[0] in "+-.0123456789" else None
        if value in (lo, hi) and value not in found:
            found[value] = m.start()
    if lo in found and hi in found:
        offset = max(found[lo], found[hi])
        exc.line = text.count("\n", 0, offset) + 1
        exc.column = offset - text.rfind("\n", 0, offset)


def read_text(path: str | Path) -> str:
    """The text of a VNN-LIB file; ``.gz`` files (or gzip content) are decompressed."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the property file: {exc.strerror or exc}", path=str(path)) from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise SpecError(f"expected a gzip-compressed VNN-LIB file, found a damaged one ({exc})",
                            path=str(path)) from None
    try:
        return data.decode("utf-8-sig")  # a byte-order mark some editors write is not part of the text
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise SpecError(f"expected UTF-8 text, found the byte 0x{data[exc.start]:02x}", path=str(path),
                        line=line, column=column) from None


def parse_file(path: str | Path) -> Spec:
    """The spec in a VNN-LIB file (1.0 or 2.x, plain or ``.gz``)."""
    return parse(read_text(path), str(path))
