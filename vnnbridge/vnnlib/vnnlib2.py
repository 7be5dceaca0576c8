"""VNN-LIB 2.x: the document model, its LALR parser, its writer, and conversion to and from `Spec`.

A 2.x document declares networks with typed, shaped tensors and asserts formulas over
tensor elements (``X[0,3]``). `Document.to_spec` turns it into a `Spec` where that fits
(one network with one input and one output tensor, bounds on inputs, linear constraints on
outputs) and raises a located `SpecError` otherwise. `write2` writes a `Spec` as 2.0 text,
taking tensor types and shapes from an ONNX model when one is given.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedInput

from vnnbridge.errors import ModelError, SpecError
from vnnbridge.vnnlib.dnf import INPUT, OUTPUT, Conjunction, Linear, SpecBuilder, compare, conjoin, disjoin
from vnnbridge.vnnlib.model import Polytope, Spec
from vnnbridge.vnnlib.text import grammar_text, read_text, syntax_error
from vnnbridge.vnnlib.writer import format_number

__all__ = [
    "Arith",
    "Connective",
    "Document",
    "Element",
    "NetworkDeclaration",
    "Number",
    "Relation",
    "Tensor",
    "document_from_spec",
    "parse_document",
    "parse_document_file",
    "write2",
    "write_document",
]

log = logging.getLogger(__name__)

Where = tuple[int | None, int | None]


@dataclass(frozen=True, slots=True)
class Tensor:
    """A declared input, hidden or output tensor of a network."""

    role: str  # "input", "hidden" or "output"
    name: str
    dtype: str
    shape: tuple[int, ...]
    onnx_name: str | None = None
    initialized: bool = False
    where: Where = field(default=(None, None), compare=False, repr=False)

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    def flat(self, index: tuple[int, ...]) -> int:
        """The C-order flat position of ``index``."""
        flat = 0
        for i, n in zip(index, self.shape):
            flat = flat * n + i
        return flat

    def element_name(self, flat: int) -> str:
        """``X[i,j]`` for a flat position (``X`` for a scalar)."""
        if not self.shape:
            return self.name
        index = []
        for n in reversed(self.shape):
            flat, i = divmod(flat, n)
            index.append(i)
        return f"{self.name}[{','.join(map(str, reversed(index)))}]"


@dataclass(frozen=True, slots=True)
class NetworkDeclaration:
    """A declared network: its tensors and its equivalences to earlier networks."""

    name: str
    tensors: tuple[Tensor, ...]
    equivalences: tuple[tuple[str, str], ...] = ()  # ("equal-to" | "isomorphic-to", network)
    where: Where = field(default=(None, None), compare=False, repr=False)

    def role(self, role: str) -> tuple[Tensor, ...]:
        """The tensors with one role, in declaration order."""
        return tuple(t for t in self.tensors if t.role == role)


@dataclass(frozen=True, slots=True)
class Element:
    """A reference to a tensor element (``index`` is () for a scalar tensor)."""

    name: str
    index: tuple[int, ...]
    where: Where = field(default=(None, None), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Number:
    """A numeric literal."""

    value: float


@dataclass(frozen=True, slots=True)
class Arith:
    """``(+ ...)``, ``(- ...)`` (one argument negates) or ``(* ...)``."""

    op: str
    args: tuple[Term, ...]
    where: Where = field(default=(None, None), compare=False, repr=False)


Term = Union[Element, Number, Arith]


@dataclass(frozen=True, slots=True)
class Relation:
    """``(op left right)`` with op one of <=, >=, <, >, ==, !=."""

    op: str
    left: Term
    right: Term
    where: Where = field(default=(None, None), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Connective:
    """``(and ...)`` or ``(or ...)``."""

    op: str
    args: tuple[Formula, ...]
    where: Where = field(default=(None, None), compare=False, repr=False)


Formula = Union[Relation, Connective]


@dataclass(frozen=True, slots=True)
class Document:
    """A whole VNN-LIB 2.x query."""

    version: str
    networks: tuple[NetworkDeclaration, ...]
    assertions: tuple[Formula, ...]
    path: str | None = field(default=None, compare=False, repr=False)

    def summary(self) -> dict[str, object]:
        """Networks with their tensors, and the number of assertions."""
        return {
            "version": self.version,
            "networks": [{"name": n.name, "equivalences": [list(e) for e in n.equivalences],
                          "tensors": [{"role": t.role, "name": t.name, "dtype": t.dtype, "shape": list(t.shape)}
                                      for t in n.tensors]} for n in self.networks],
            "assertions": len(self.assertions),
        }

    def to_spec(self) -> Spec:
        """The `Spec` of a single-network query (located `SpecError` when it has no such form)."""
        try:
            return _SpecMaker(self).make()
        except SpecError as exc:
            exc.path = exc.path or self.path
            raise
        except RecursionError:
            raise SpecError("expected formulas nested at most a few hundred levels deep, found deeper ones",
                            path=self.path) from None


class _SpecMaker:
    """Turns a `Document` into a `Spec` through the same DNF assembly as VNN-LIB 1.0."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        if len(doc.networks) != 1:
            second = doc.networks[1]
            raise SpecError(f"expected one network for a box spec, found {len(doc.networks)} "
                            f"({', '.join(n.name for n in doc.networks)})",
                            line=second.where[0], column=second.where[1])
        net = doc.networks[0]
        ins, outs = net.role("input"), net.role("output")
        if len(ins) != 1 or len(outs) != 1:
            raise SpecError(f"expected one input and one output tensor for a box spec, found {len(ins)} and "
                            f"{len(outs)} in network {net.name}", line=net.where[0], column=net.where[1])
        self.input, self.output = ins[0], outs[0]
        self.roles = {t.name: t for t in net.tensors}
        self.strict = 0

    def name(self, kind: int, flat: int) -> str:
        return (self.input if kind == INPUT else self.output).element_name(flat)

    def declared_at(self, kind: int, flat: int) -> Where:
        return (self.input if kind == INPUT else self.output).where

    def make(self) -> Spec:
        builder = SpecBuilder(self.name, self.declared_at)
        for formula in self.doc.assertions:
            builder.add(self.dnf(formula), formula.where)
        positions = {t.name: (t.where[0], t.where[1] or 1) for t in (self.input, self.output)
                     if t.where[0] is not None}
        return builder.build(self.input.size, self.output.size, positions)

    def dnf(self, f: Formula) -> list[Conjunction]:
        if isinstance(f, Connective):
            parts = [self.dnf(a) for a in f.args]
            return conjoin(parts, f.where) if f.op == "and" else disjoin(parts, f.where)
        op = f.op
        if op == "!=":
            raise SpecError("expected <=, >=, <, > or == for a box spec, found != (a union that is not a polytope)",
                            line=f.where[0], column=f.where[1])
        if op in ("<", ">"):
            self.strict += 1
            if self.strict == 1:
                log.warning("%s:%s:%s: strict '%s' read as non-strict '%s=' (further ones are not reported)",
                            self.doc.path or "<text>", f.where[0], f.where[1], op, op)
            op += "="
        conj = Conjunction(*f.where)
        compare(conj, op, self.linear(f.left), self.linear(f.right), f.where, self.name)
        return [conj]

    def linear(self, t: Term) -> Linear:
        if isinstance(t, Number):
            return Linear(None, t.value)
        if isinstance(t, Element):
            tensor = self.roles[t.name]
            if tensor.role == "hidden":
                raise SpecError(f"expected constraints on inputs and outputs for a box spec, found the hidden "
                                f"tensor {t.name}", line=t.where[0], column=t.where[1])
            kind = INPUT if tensor.role == "input" else OUTPUT
            return Linear({(kind, tensor.flat(t.index)): 1.0})
        args = [self.linear(a) for a in t.args]
        if t.op == "+":
            total = args[0]
            for a in args[1:]:
                total = total.plus(a)
            return total
        if t.op == "-":
            if len(args) == 1:
                return args[0].negated()
            total = args[0]
            for a in args[1:]:
                total = total.plus(a.negated())
            return total
        variable = [a for a in args if not a.is_constant()]
        if len(variable) > 1:
            raise SpecError("expected a linear term (a constant times a variable), found a product of variables",
                            line=t.where[0], column=t.where[1])
        factor = 1.0
        for a in args:
            if a.is_constant():
                factor *= a.const if a.const is not None else 0.0
        if not variable:
            return Linear(None, factor)
        return variable[0].scaled(factor) if factor != 1.0 else variable[0]


# ---------------------------------------------------------------------------------------------
# Parsing


def _w(tok: Token) -> Where:
    return (tok.line, tok.column)


class _ToDocument(Transformer):
    """LALR callbacks that build the document and check names, shapes and indices as they go."""

    tensors: dict[str, Tensor]
    networks: dict[str, NetworkDeclaration]
    pending: list[Tensor]

    def reset(self) -> None:
        self.tensors, self.networks, self.pending = {}, {}, []

    def version(self, c: list[Token]) -> tuple[str, Where]:
        tok = c[1]
        text = str(tok)[1:-1]
        if not text.startswith("2."):
            raise SpecError(f"expected a VNN-LIB version 2.x, found <{text}>", line=tok.line, column=tok.column)
        return text, _w(tok)

    def shape(self, c: list[Token]) -> tuple[int, ...]:
        return tuple(int(t) for t in c)

    def _tensor(self, role: str, c: list[Any], onnx: str | None = None, initialized: bool = False) -> Tensor:
        _, name, dtype, shape = c[:4]
        if str(name) in self.tensors or str(name) in self.networks:
            raise SpecError(f"expected a new name, found {str(name)!r} declared twice", line=name.line,
                            column=name.column)
        t = Tensor(role, str(name), str(dtype), shape, onnx, initialized, _w(name))
        self.tensors[t.name] = t
        self.pending.append(t)
        return t

    def input(self, c: list[Any]) -> Tensor:
        return self._tensor("input", c, initialized=len(c) == 5)

    def hidden(self, c: list[Any]) -> Tensor:
        return self._tensor("hidden", c, onnx=str(c[4])[1:-1])

    def output(self, c: list[Any]) -> Tensor:
        return self._tensor("output", c)

    def equivalence(self, c: list[Token]) -> tuple[str, str]:
        kind, name = c
        if str(name) not in self.networks:
            raise SpecError(f"expected the name of an earlier network after {kind}, found {str(name)!r}",
                            line=name.line, column=name.column)
        return str(kind), str(name)

    def network(self, c: list[Any]) -> NetworkDeclaration:
        kw, name = c[0], c[1]
        equivalences = tuple(x for x in c[2:] if isinstance(x, tuple))
        tensors = tuple(x for x in c[2:] if isinstance(x, Tensor))
        if str(name) in self.networks or str(name) in self.tensors:
            raise SpecError(f"expected a new name, found {str(name)!r} declared twice", line=name.line,
                            column=name.column)
        for role in ("input", "output"):
            if not any(t.role == role for t in tensors):
                raise SpecError(f"expected at least one declare-{role} in network {name}, found none",
                                line=name.line, column=name.column)
        net = NetworkDeclaration(str(name), tensors, equivalences, _w(kw))
        self.networks[net.name] = net
        return net

    def _ref(self, tok: Token, index: tuple[int, ...], where: Where) -> Element:
        tensor = self.tensors.get(str(tok))
        if tensor is None:
            known = ", ".join(sorted(self.tensors)) or "none"
            raise SpecError(f"expected a declared tensor ({known}), found {str(tok)!r}", line=where[0],
                            column=where[1])
        if len(index) != len(tensor.shape) or any(not 0 <= i < n for i, n in zip(index, tensor.shape)):
            shown = f"{tok}[{','.join(map(str, index))}]" if index else str(tok)
            raise SpecError(f"expected an index within the shape [{','.join(map(str, tensor.shape))}] of "
                            f"{tok}, found {shown}", line=where[0], column=where[1])
        return Element(str(tok), index, where)

    def scalar(self, c: list[Token]) -> Element:
        return self._ref(c[0], (), _w(c[0]))

    def element(self, c: list[Token]) -> Element:
        return self._ref(c[0], tuple(int(t) for t in c[1:]), _w(c[0]))

    def number(self, c: list[Token]) -> Number:
        tok = c[0]
        v = float(tok)
        if not math.isfinite(v):
            raise SpecError(f"expected a finite number, found {str(tok)!r} (it overflows a double)",
                            line=tok.line, column=tok.column)
        return Number(v)

    def plus(self, c: list[Any]) -> Arith:
        return Arith("+", tuple(c[1:]), _w(c[0]))

    def minus(self, c: list[Any]) -> Arith:
        return Arith("-", tuple(c[1:]), _w(c[0]))

    def times(self, c: list[Any]) -> Arith:
        return Arith("*", tuple(c[1:]), _w(c[0]))

    def compare(self, c: list[Any]) -> Relation:
        return Relation(str(c[0]), c[1], c[2], _w(c[0]))

    def conj(self, c: list[Any]) -> Connective:
        return Connective("and", tuple(c[1:]), _w(c[0]))

    def disj(self, c: list[Any]) -> Connective:
        return Connective("or", tuple(c[1:]), _w(c[0]))

    def assertion(self, c: list[Any]) -> Formula:
        return c[1]

    def start(self, c: list[Any]) -> Document:
        version = c[0][0]
        networks = tuple(x for x in c[1:] if isinstance(x, NetworkDeclaration))
        assertions = tuple(x for x in c[1:] if not isinstance(x, NetworkDeclaration))
        return Document(version, networks, assertions)


_LOCK = threading.Lock()
_TRANSFORMER = _ToDocument()
_PARSER: Lark | None = None


def _parser() -> Lark:
    global _PARSER
    if _PARSER is None:
        _PARSER = Lark(grammar_text("vnnlib2.lark"), parser="lalr", lexer="contextual",
                       transformer=_TRANSFORMER, maybe_placeholders=False)
    return _PARSER


def parse_document(text: str, path: str | None = None) -> Document:
    """The VNN-LIB 2.x document in ``text``."""
    try:
        with _LOCK:
            _TRANSFORMER.reset()
            try:
                doc: Any = _parser().parse(text)  # the transformer makes a Document, not a Tree
            finally:
                _TRANSFORMER.reset()
    except UnexpectedInput as exc:
        raise syntax_error(exc, text, path) from None
    except SpecError as exc:
        exc.path = exc.path or path
        raise
    return Document(doc.version, doc.networks, doc.assertions, path)


def parse_document_file(path: str | Path) -> Document:
    """The VNN-LIB 2.x document in a file (plain or ``.gz``)."""
    return parse_document(read_text(path), str(path))


# ---------------------------------------------------------------------------------------------
# Writing


def _term(t: Term) -> str:
    if isinstance(t, Number):
        return format_number(t.value)
    if isinstance(t, Element):
        return f"{t.name}[{','.join(map(str, t.index))}]" if t.index else t.name
    return f"({t.op} {' '.join(_term(a) for a in t.args)})"


def _formula(f: Formula) -> str:
    if isinstance(f, Relation):
        return f"({f.op} {_term(f.left)} {_term(f.right)})"
    return f"({f.op} {' '.join(_formula(a) for a in f.args)})"


def write_document(doc: Document) -> str:
    """Canonical VNN-LIB 2.x text of a document (LF, final newline, no comments)."""
    lines = [f"(vnnlib-version <{doc.version}>)"]
    for net in doc.networks:
        lines.append(f"(declare-network {net.name}")
        lines += [f"    ({kind} {other})" for kind, other in net.equivalences]
        for t in net.tensors:
            shape = f"[{','.join(map(str, t.shape))}]"
            extra = f' "{t.onnx_name}"' if t.role == "hidden" else (" initialized" if t.initialized else "")
            lines.append(f"    (declare-{t.role} {t.name} {t.dtype} {shape}{extra})")
        lines.append(")")
    lines += [f"(assert {_formula(f)})" for f in doc.assertions]
    return "\n".join(lines) + "\n"


# ONNX element types by TensorProto number, named as VNN-LIB 2 names them.
_ONNX_TYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
               10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}


def _onnx_tensors(onnx_path: str | Path) -> tuple[tuple[str, tuple[int, ...], str], tuple[str, tuple[int, ...], str]]:
    """(name, shape, dtype) of the one graph input and the one graph output of a model."""
    from vnnbridge.network import load_onnx

    model = load_onnx(onnx_path, external_data=False)
    inits = {i.name for i in model.graph.initializer}
    found = []
    for kind, values in (("input", [v for v in model.graph.input if v.name not in inits]),
                         ("output", list(model.graph.output))):
        if len(values) != 1:
            raise ModelError(f"expected one graph {kind}, found {len(values)}", path=str(onnx_path))
        v = values[0]
        tt = v.type.tensor_type
        shape = tuple(d.dim_value if d.dim_value > 0 else 1 for d in tt.shape.dim)
        found.append((v.name, shape, _ONNX_TYPES.get(tt.elem_type, "Real")))
    return found[0], found[1]


def _network_name(onnx_path: str | Path | None) -> str:
    if onnx_path is None:
        return "N"
    name = re.sub(r"[^A-Za-z0-9_]", "_", Path(onnx_path).name.split(".")[0])
    return name if name[:1].isalpha() else f"N{name}"


def document_from_spec(spec: Spec, onnx: str | Path | None = None) -> Document:
    """The 2.0 document of a spec; tensor types and shapes come from ``onnx`` when given."""
    if onnx is not None:
        (_, ishape, itype), (_, oshape, otype) = _onnx_tensors(onnx)
        if math.prod(ishape) != spec.inputs or math.prod(oshape) != spec.outputs:
            raise ModelError(f"expected a model with {spec.inputs} inputs and {spec.outputs} outputs, found shapes "
                             f"{list(ishape)} and {list(oshape)}", path=str(onnx))
    else:
        ishape, itype, oshape, otype = (spec.inputs,), "Real", (spec.outputs,), "Real"
    x = Tensor("input", "X", itype, ishape)
    y = Tensor("output", "Y", otype, oshape)
    xs = [Element("X", _unravel(i, ishape)) for i in range(spec.inputs)]
    ys = [Element("Y", _unravel(j, oshape)) for j in range(spec.outputs)]

    def box_atoms(case: Any) -> list[Formula]:
        out: list[Formula] = []
        for i, (lo, hi) in enumerate(zip(case.box.lower, case.box.upper)):
            out += [Relation(">=", xs[i], Number(lo)), Relation("<=", xs[i], Number(hi))]
        return out

    assertions: list[Formula] = []
    single = len(spec.cases) == 1 and all(p.b for p in spec.cases[0].polytopes)
    if len(spec.cases) == 1 and (single or len(spec.cases[0].polytopes) == 1):
        assertions += box_atoms(spec.cases[0])
        if single:
            assertions.append(Connective("or", tuple(Connective("and", tuple(_rows(p, ys)))
                                                     for p in spec.cases[0].polytopes)))
    else:
        disjuncts = []
        for case in spec.cases:
            atoms = box_atoms(case)
            disjuncts += [Connective("and", tuple(atoms + _rows(p, ys))) for p in case.polytopes]
        assertions.append(Connective("or", tuple(disjuncts)))
    return Document("2.0", (NetworkDeclaration(_network_name(onnx), (x, y)),), tuple(assertions))


def _unravel(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    index = []
    for n in reversed(shape):
        flat, i = divmod(flat, n)
        index.append(i)
    return tuple(reversed(index))


def _rows(poly: Polytope, ys: list[Element]) -> list[Formula]:
    """Each row in the simplest form, mirroring the 1.0 writer so both read back identically."""
    out: list[Formula] = []
    for a, b in zip(poly.a, poly.b):
        terms = [(j, c) for j, c in enumerate(a) if c != 0.0 or math.copysign(1.0, c) < 0.0]
        if len(terms) == 1 and terms[0][1] in (1.0, -1.0):
            j, c = terms[0]
            out.append(Relation("<=", ys[j], Number(b)) if c == 1.0 else Relation(">=", ys[j], Number(-b)))
            continue
        if len(terms) == 2 and b == 0.0 and math.copysign(1.0, b) > 0.0:
            (i, ci), (j, cj) = terms
            if (ci, cj) == (-1.0, 1.0):
                i, j, ci, cj = j, i, cj, ci
            if (ci, cj) == (1.0, -1.0):
                out.append(Relation(">=", ys[j], ys[i]))
                continue
        if not terms:
            out.append(Relation("<=", Number(0.0), Number(b)))
            continue
        products = tuple(Arith("*", (Number(c), ys[j])) for j, c in terms)
        lhs: Term = products[0] if len(products) == 1 else Arith("+", products)
        out.append(Relation("<=", lhs, Number(b)))
    return out


def write2(spec: Spec, onnx: str | Path | None = None) -> str:
    """VNN-LIB 2.0 text for ``spec`` (types and shapes from the ONNX model when given)."""
    return write_document(document_from_spec(spec, onnx))
