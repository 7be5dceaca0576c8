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

import math
import re
import threading
from functools import lru_cache
from itertools import compress, repeat
from operator import is_not, not_
from pathlib import Path
from typing import Any

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedInput
from lark.lexer import PatternRE, TerminalDef

from vnnbridge.errors import SpecError
from vnnbridge.vnnlib.dnf import Conjunction, Linear, compare, conjoin, disjoin
from vnnbridge.vnnlib.model import Spec
from vnnbridge.vnnlib.state import (DECL_SPLIT, INFS, NUMBER, OPND, Cursor, NotAShape, ParseState, located, pos,
                                    where_in)
from vnnbridge.vnnlib.text import SHAPE_TERMINALS, grammar_text, is_vnnlib2, read_text, syntax_error

# grammar_text, is_vnnlib2, read_text and syntax_error live in vnnbridge.vnnlib.text (shared with
# vnnlib2) and are re-exported here, where callers have always found them.
__all__ = ["grammar_text", "is_vnnlib2", "parse", "parse_file", "read_text", "syntax_error"]

# One comparison inside a whole-shape terminal: operator and operands. Operands are only "no
# space, no parenthesis" here, which is cheaper to scan; every operand that is not a declared
# variable is checked against NUMBER/SYMBOL before use.
_CMP = re.compile(r"\(\s*([<>]=?)\s*([^\s();]++)\s+([^\s();]++)\s*\)")
_OR_HEAD = re.compile(r"\(\s*or")
# A DISJ token is split into chunks of about this many characters, at conjunction starts, so
# that the items found at once stay small next to a 100 MB text.
_CHUNK = 1 << 20


@lru_cache(maxsize=64)
def _alternating(n: int, first: str) -> tuple[str, ...]:
    """``(first, other, first, other, ...)`` of length n, for comparing a column of operators."""
    other = "<=" if first == ">=" else ">="
    return (first, other) * (n // 2)



class _ToSpec(Transformer):
    """The callbacks that LALR calls on each reduction; formulas become DNFs (lists of `Conjunction`)."""

    state: Any = None

    def _general(self, tok: Token, start: str) -> Any:
        """Parse a shape token again with the general rules (exact results and messages)."""
        # Padding puts the token at its own line and column, so positions come out right.
        line, column = pos(tok)
        text = "\n" * (line - 1) + " " * (column - 1) + tok
        try:
            return _general_parser().parse(text, start=start)
        except UnexpectedInput as exc:
            # Translated here: the outer parser would replace the state this message needs.
            raise syntax_error(exc, text, None) from None

    def declare_fast(self, c: list[Token]) -> None:
        tok = c[0]
        found = DECL_SPLIT.findall(tok)
        if len(found) != tok.count("("):
            self._general(tok, "start")
            return
        if self.state.declare_all(tok, found):
            return
        cursor = Cursor(tok)
        for m in DECL_SPLIT.finditer(tok):
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
                return where_in(tok, m.start())
        return pos(tok)

    def _where(self, tok: Token, where: tuple[int, int], k: int, op: str) -> tuple[int, int]:
        """Where comparison ``k`` is, when a strict operator needs its (first) warning."""
        if len(op) == 2 or self.state.strict:
            return pos(tok)  # not reported: a warning is given once per file
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
                                           tuple(compress(nums, isx)))
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
            raise located(exc, self._locate(tok, where, k)) from None
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
                if i is not None and op in ("<=", ">=") and NUMBER.fullmatch(b):
                    v = float(b)
                    if v in INFS:
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
            raise located(exc, self._locate(tok, where, k)) from None

    def assert_fast(self, c: list[Token]) -> None:
        tok = c[0]
        items = _CMP.findall(tok)
        if 2 * len(items) != tok.count("("):
            self._general(tok, "start")
            return
        conj = Conjunction(*pos(tok))
        try:
            self._fill(conj, tok, items, (0, len(tok)))
        except NotAShape:
            self._general(tok, "start")
            return
        self.state.builder.plain(*pos(tok)).absorb(conj)

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
        conj = Conjunction(*pos(tok))
        try:
            self._fill(conj, tok, items, (0, len(tok)))
        except NotAShape:
            return self._general(tok, "formula")
        return [conj]

    def disj_fast(self, c: list[Token]) -> list[Conjunction]:
        tok = c[0]
        dnf: list[Conjunction] = []
        head = _OR_HEAD.match(tok)
        if head is None:
            return self._general(tok, "formula")
        at, stop = head.end(), len(tok) - 1  # inside "(or" ... ")"
        where = pos(tok)
        try:
            while at < stop:
                end = tok.find("(and", at + _CHUNK, stop) if stop - at > _CHUNK else -1
                end = stop if end < 0 else end
                # str.split at the literal "(and" is the cheapest way to the conjunctions; any
                # other spelling ("( and", "(andy") leaves text that the checks below refuse.
                parts = tok[at:end].split("(and")
                if parts[0].strip():
                    return self._general(tok, "formula")
                offset = at + len(parts[0])
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
                at = end
        except NotAShape:
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
                raise located(exc, pos(tok)) from None
        return Linear({key: 1.0})

    def number(self, c: list[Token]) -> Linear:
        tok = c[0]
        try:
            return Linear(None, self.state.number(str(tok)))
        except SpecError as exc:
            raise located(exc, pos(tok)) from None

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
    if term.name in SHAPE_TERMINALS:
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
    state = ParseState(path)
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
    pattern = re.compile(rf"\(\s*(?:<=|>=|<|>)\s*(?:{re.escape(name)}\s+({OPND})|({OPND})\s+{re.escape(name)})\s*\)")
    found: dict[float, int] = {}
    for m in pattern.finditer(text):
        operand = m.group(1) or m.group(2)
        if operand[0] not in "+-.0123456789":
            continue
        value = float(operand)
        if value in (lo, hi) and value not in found:
            found[value] = m.start()
    if lo in found and hi in found:
        offset = max(found[lo], found[hi])
        exc.line = text.count("\n", 0, offset) + 1
        exc.column = offset - text.rfind("\n", 0, offset)



def parse_file(path: str | Path) -> Spec:
    """The spec in a VNN-LIB file (1.0 or 2.x, plain or ``.gz``)."""
    return parse(read_text(path), str(path))
