"""What a VNN-LIB 1.0 parse has seen: declared variables and where, operands, and the spec being built.

`ParseState` is the state the LALR callbacks of `vnnbridge.vnnlib.parser` fill in; `Cursor`
and `Places` turn offsets into long tokens into lines and columns only when a message needs them.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Iterator, Mapping

from lark import Token

from vnnbridge.errors import SpecError
from vnnbridge.vnnlib.dnf import INPUT, OUTPUT, Conjunction, Linear, SpecBuilder, compare
from vnnbridge.vnnlib.model import Spec

__all__ = ["Cursor", "NotAShape", "ParseState", "Places", "located", "pos", "where_in"]

log = logging.getLogger("vnnbridge.vnnlib.parser")  # warnings read as the parser's

# As the grammar's NUMBER and SYMBOL, atomic so that long literals never backtrack.
NUM = r"[+-]?(?>\d+(?:\.\d*)?|\.\d+)(?>[eE][+-]?\d+)?"
SYM = r"[A-Za-z_][A-Za-z0-9_.\-]*+"
OPND = rf"(?:{SYM}|{NUM})"
NUMBER = re.compile(NUM)
SYMBOL = re.compile(SYM)
DECL_SPLIT = re.compile(rf"\(\s*declare-const\s+({SYM})\s+Real\s*\)")
VAR = re.compile(r"([XY])_(0|[1-9][0-9]*)")
LOOKS_VAR = re.compile(r"[XY]_[0-9]+")
NONFINITE_WORDS = {"inf", "infinity", "nan", "+inf", "-inf"}
INFS = (math.inf, -math.inf)


def pos(tok: Token) -> tuple[int, int]:
    """Line and column of a token (the lexer always sets them; lark types them as optional)."""
    return tok.line or 1, tok.column or 1


def where_in(tok: Token, offset: int) -> tuple[int, int]:
    """Line and column of ``offset`` characters into ``tok``."""
    line, column = pos(tok)
    newlines = tok.count("\n", 0, offset)
    if not newlines:
        return line, column + offset
    return line + newlines, offset - tok.rfind("\n", 0, offset)


class Cursor:
    """Line and column of increasing offsets into one token, in time linear in its length."""

    def __init__(self, tok: Token) -> None:
        line, column = pos(tok)
        self.tok, self.offset, self.line, self.line_start = tok, 0, line, -column + 1

    def at(self, offset: int) -> tuple[int, int]:
        """Line and column ``offset`` characters into the token (offsets must not decrease)."""
        tok = self.tok
        newlines = tok.count("\n", self.offset, offset)
        if newlines:
            self.line += newlines
            self.line_start = tok.rfind("\n", self.offset, offset) + 1
        self.offset = offset
        return self.line, offset - self.line_start + 1



class NotAShape(Exception):
    """A whole-shape token holds something that is no operand; the general rules must say what."""



class Places(Mapping[str, tuple[int, int]]):
    """Where each variable was declared, worked out on first use (most parses never need it)."""

    def __init__(self) -> None:
        self.known: dict[str, tuple[int, int]] = {}
        self.unplaced: list[Token] = []  # runs of declarations read in bulk

    def _all(self) -> dict[str, tuple[int, int]]:
        for tok in self.unplaced:
            cursor = Cursor(tok)
            for m in DECL_SPLIT.finditer(tok):
                self.known[m.group(1)] = cursor.at(m.start(1))
        self.unplaced.clear()
        return self.known

    def __getitem__(self, name: str) -> tuple[int, int]:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())



class ParseState:
    """What one parse has seen so far: declarations, and the asserts in a `SpecBuilder`."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.vars: dict[str, tuple[int, int]] = {}
        self.inputs: dict[str, int] = {}  # the inputs among vars: name -> index
        # Declarations read in bulk keep their token; their positions are worked out only when
        # a message or the spec asks for them (most parses never need one).
        self.positions = Places()
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
        if not all(map(VAR.fullmatch, names)):
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
        m = VAR.fullmatch(name)
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
        """The value of an operand that is not a declared variable (`NotAShape` if it is no operand)."""
        if NUMBER.fullmatch(text) is None:
            if SYMBOL.fullmatch(text) is None:
                raise NotAShape(text)
            if text.lower() in NONFINITE_WORDS:
                raise SpecError(f"expected a finite number, found {text!r}")
            if LOOKS_VAR.fullmatch(text):
                kind = INPUT if text[0] == "X" else OUTPUT
                declared = sorted(self.indices(kind))
                have = (f"{self.name(kind, declared[0])} .. {self.name(kind, declared[-1])} are declared"
                        if declared else f"no {'input' if kind == INPUT else 'output'} is declared")
                raise SpecError(f"expected a declared variable, found {text} ({have})")
            raise SpecError(f"expected a declared variable or a number, found {text!r}")
        v = float(text)
        if v in INFS:
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



def located(exc: SpecError, where: tuple[int, int]) -> SpecError:
    """``exc`` placed at ``where`` unless it already has a line."""
    if exc.line is None:
        exc.line, exc.column = where
    return exc

