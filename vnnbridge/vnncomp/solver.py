"""The VNN-LIB 2.0 solver interface (chapter 5 of the standard): ``verify``, ``supports``, ``--name``.

``vnnbridge verify QUERY --network NAME=model.onnx [--timeout S]`` prints ``sat`` followed by the
typed assignment (``NAME TYPE [dims]`` then one value per line, row-major, for every declared
variable in declaration order), ``unsat``, ``unknown`` or ``timed-out`` as its first line on
stdout; logs and errors go to stderr. VNN-LIB 1.0 queries are accepted too (one network, any
name; its variables are reported as ``X`` and ``Y``). Only the single-network, single-input,
single-output fragment without hidden nodes is handled (theories SNET, SIO, NH, SNC; arithmetic
BND and OUTC); anything else is an error, as the standard requires.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from vnnbridge import __version__
from vnnbridge.errors import InputError, ModelError
from vnnbridge.oracles.base import Verdict

__all__ = ["CAPABILITIES", "NAME", "RESTRICTED_OPERATORS", "Declaration", "NetworkDeclaration", "SolverAnswer", "capability",
           "declarations", "onnx_operators", "verify_query"]

log = logging.getLogger(__name__)

NAME = "vnnbridge (embedded oracle)"
# Operators the engine accepts only in a restricted form, which a `supports` line cannot express:
# Mul/Div need a constant operand (input normalisation), Softmax/LogSoftmax only as the last node
# under properties they cannot change, and Shape/Gather/Concat/Cast only on constants (folded).
# Claiming them would promise general support; vnnlib-satisfactory's Mul/Div cases, for one,
# multiply and divide two inputs.
RESTRICTED_OPERATORS = frozenset({"Mul", "Div", "Softmax", "LogSoftmax", "Shape", "Gather", "Concat", "Cast"})
# Element types: "real" (analysis over the reals) and float32, the type onnxruntime evaluates
# every witness in. float64/float16/integer models are refused rather than analysed unsoundly.
ELEMENT_TYPES = ("float32", "real")
_WORDS = {Verdict.SAT: "sat", Verdict.UNSAT: "unsat", Verdict.TIMEOUT: "timed-out", Verdict.UNKNOWN: "unknown",
          Verdict.ERROR: "unknown"}
# Seconds kept back from --timeout for printing and exiting.
_RESERVE = 0.5


def onnx_operators() -> tuple[str, ...]:
    """The ONNX operators the embedded oracle handles in general (its list minus the restricted ones)."""
    try:
        from vnnbridge.engine.graph import SUPPORTED_OPS
    except ImportError:  # an engine without the list: the operators of the embedded oracle's issue
        SUPPORTED_OPS = ("Add", "AveragePool", "BatchNormalization", "Constant", "Conv", "Dropout", "Flatten",
                         "Gemm", "Identity", "MatMul", "MaxPool", "Pad", "Relu", "Reshape", "Sub")
    return tuple(sorted(set(SUPPORTED_OPS) - RESTRICTED_OPERATORS))


def _opset_range() -> tuple[str, ...]:
    import onnx.defs

    return ("7", str(onnx.defs.onnx_opset_version()))


# Capability -> lines printed. Callables are evaluated when asked (they may import onnx).
CAPABILITIES: dict[str, object] = {
    "--vnnlib-versions": ("1.0", "2.0"),
    "--onnx-opset-versions": _opset_range,
    "--onnx-element-types": ELEMENT_TYPES,
    "--onnx-operators": onnx_operators,
    "--onnx-operators-unsat-proofs": (),
    "--hidden-node-theories": ("NH",),
    "--multiple-input-output-theories": ("SIO",),
    "--multiple-network-theories": ("SNET",),
    "--multiple-node-comparison-theories": ("SNC",),
    "--arithmetic-complexity-theories": ("BND", "OUTC"),
    "--optimised-disjunctive-reasoning": ("false",),
    "--serialise-assignments": ("false",),
    "--unsat-proofs": ("false",),
}


def capability(flag: str) -> tuple[str, ...]:
    """The lines that ``supports FLAG`` prints; InputError for an unknown flag."""
    value = CAPABILITIES.get(flag)
    if value is None:
        raise InputError(f"unknown capability {flag!r}; known: {' '.join(sorted(CAPABILITIES))}")
    return tuple(value() if callable(value) else value)  # type: ignore[operator, arg-type]


@dataclass(frozen=True)
class Declaration:
    """One declared variable: kind (input, hidden, output), name, element type and shape."""

    kind: str
    name: str
    element_type: str
    shape: tuple[int, ...]
    line: int

    @property
    def size(self) -> int:
        """Number of scalar entries."""
        return int(np.prod(self.shape)) if self.shape else 1

    def header(self) -> str:
        """``NAME TYPE [d1,d2]`` as the command-line assignment format writes it."""
        return f"{self.name} {self.element_type} [{','.join(map(str, self.shape))}]"


@dataclass(frozen=True)
class NetworkDeclaration:
    """A ``declare-network`` block: its name, variables, and the network it is equal/isomorphic to."""

    name: str
    variables: tuple[Declaration, ...]
    relation: str = ""
    line: int = 1

    def of(self, kind: str) -> list[Declaration]:
        """The declared variables of one kind."""
        return [v for v in self.variables if v.kind == kind]


_NETWORK = re.compile(r"\(\s*declare-network\s+([^\s()]+)(\s*\(\s*(equal-to|isomorphic-to)\s+[^\s()]+\s*\))?")
_VARIABLE = re.compile(r"\(\s*declare-(input|hidden|output)\s+([^\s()]+)\s+([^\s()\[]+)\s*\[([^\]]*)\]")


def declarations(text: str) -> list[NetworkDeclaration]:
    """The network declarations of a VNN-LIB 2.0 query (empty for VNN-LIB 1.0).

    This reads only the declaration headers (names, types, shapes), which the spec model does
    not keep; the constraints themselves are parsed by `vnnbridge.vnnlib.parser`.
    """
    clean = re.sub(r";[^\n]*", lambda m: " " * len(m.group(0)), text)  # comments, positions kept
    starts = [(m.start(), m) for m in _NETWORK.finditer(clean)]
    result = []
    for index, (start, match) in enumerate(starts):
        end = starts[index + 1][0] if index + 1 < len(starts) else len(clean)
        variables = []
        for v in _VARIABLE.finditer(clean, start, end):
            dims = [d.strip() for d in v.group(4).split(",") if d.strip()]
            try:
                shape = tuple(int(d) for d in dims)
            except ValueError:
                raise InputError(f"shape [{v.group(4)}] of {v.group(2)} is not a list of integers",
                                 line=clean.count("\n", 0, v.start()) + 1) from None
            variables.append(Declaration(v.group(1), v.group(2), v.group(3), shape,
                                         clean.count("\n", 0, v.start()) + 1))
        result.append(NetworkDeclaration(match.group(1), tuple(variables), match.group(3) or "",
                                         clean.count("\n", 0, start) + 1))
    return result


def _network_arguments(pairs: Sequence[str]) -> dict[str, str]:
    networks: dict[str, str] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--network expects NAME=PATH, got {pair!r}")
        if name in networks:
            raise InputError(f"--network {name} is given twice")
        networks[name] = path
    return networks


def _onnx_element_type(path: str) -> str:
    import onnx

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # onnx raises several unrelated types for a bad file
        raise ModelError(f"cannot read ONNX model: {exc}", path=path) from None
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise ModelError(f"the model has {len(inputs)} inputs and {len(model.graph.output)} outputs; vnnbridge "
                         "handles one of each (SIO)", path=path)
    return onnx.helper.tensor_dtype_to_np_dtype(inputs[0].type.tensor_type.elem_type).name


def _check_declarations(query: Path, decls: list[NetworkDeclaration], networks: Mapping[str, str]
                        ) -> NetworkDeclaration | None:
    """The one declared network (None for VNN-LIB 1.0), after the checks the standard requires."""
    where = str(query)
    if not decls:
        if len(networks) != 1:
            raise InputError(f"a VNN-LIB 1.0 query needs exactly one --network, got {len(networks)}")
        return None
    needed = [d.name for d in decls if d.relation != "equal-to"]
    missing = [n for n in needed if n not in networks]
    extra = [n for n in networks if n not in needed]
    if missing or extra:
        raise InputError("--network arguments do not match the query's networks"
                         + (f"; missing: {', '.join(missing)}" if missing else "")
                         + (f"; not declared: {', '.join(extra)}" if extra else ""), path=where)
    if len(decls) != 1:
        raise InputError(f"the query declares {len(decls)} networks; vnnbridge handles one (SNET)", path=where,
                         line=decls[1].line)
    decl = decls[0]
    if decl.of("hidden"):
        raise InputError("hidden-node declarations are not supported (NH)", path=where,
                         line=decl.of("hidden")[0].line)
    if len(decl.of("input")) != 1 or len(decl.of("output")) != 1:
        raise InputError(f"network {decl.name} declares {len(decl.of('input'))} inputs and "
                         f"{len(decl.of('output'))} outputs; vnnbridge handles one of each (SIO)", path=where,
                         line=decl.line)
    for v in decl.variables:
        if v.element_type.lower() not in ELEMENT_TYPES:
            raise InputError(f"{v.name} has element type {v.element_type}; vnnbridge is sound for "
                             f"{', '.join(ELEMENT_TYPES)} only", path=where, line=v.line)
    path = networks[decl.name]
    declared = decl.of("input")[0].element_type.lower()
    actual = _onnx_element_type(path)
    if declared != "real" and actual != declared:
        raise InputError(f"{decl.of('input')[0].name} is declared {declared} but the model's input is {actual}",
                         path=where, line=decl.of("input")[0].line)
    return decl


@dataclass(frozen=True)
class SolverAnswer:
    """The first line of ``verify`` (``sat``, ``unsat``, ``unknown``, ``timed-out``) and what follows."""

    word: str
    lines: tuple[str, ...] = ()
    reason: str = ""

    def text(self) -> str:
        """All of stdout."""
        return "\n".join((self.word, *self.lines)) + "\n"


def _assignment(decl: NetworkDeclaration | None, x: np.ndarray, y: np.ndarray) -> tuple[str, ...]:
    if decl is None:
        heads = [f"X real [{x.size}]", f"Y real [{y.size}]"]
    else:
        heads = [decl.of("input")[0].header(), decl.of("output")[0].header()]
    lines: list[str] = []
    for head, values in zip(heads, (x, y)):
        lines.append(head)
        lines += [repr(float(v)) for v in values]
    return tuple(lines)


def verify_query(query: str | Path, network_args: Sequence[str], timeout: float | None = None,
                 oracle: str = "embedded") -> SolverAnswer:
    """Decide a VNN-LIB query against the given networks; raises InputError for the standard's error cases."""
    from vnnbridge.network import load_network
    from vnnbridge.oracles.base import Query
    from vnnbridge.oracles.registry import make_oracle
    from vnnbridge.vnnlib.parser import parse, read_text

    start = time.monotonic()
    path = Path(query)
    if not path.is_file():
        raise InputError("no such VNN-LIB file", path=str(path))
    networks = _network_arguments(network_args)
    text = read_text(path)
    decl = _check_declarations(path, declarations(text), networks)
    onnx_path = next(iter(networks.values())) if decl is None else networks[decl.name]
    net = load_network(onnx_path)
    spec = parse(text, str(path))
    if (spec.inputs, spec.outputs) != (net.inputs, net.outputs):
        raise InputError(f"the query has {spec.inputs} inputs and {spec.outputs} outputs, the network "
                         f"{net.inputs} and {net.outputs}", path=str(path))
    chosen = make_oracle(oracle)
    budget = (timeout if timeout is not None else 24 * 3600.0) - (time.monotonic() - start) - _RESERVE
    if budget <= 0:
        return SolverAnswer("timed-out", reason="no time left after reading the query")
    result = chosen.check(Query.build(net.path, spec), budget)
    if result.verdict is Verdict.SAT and result.witness is not None:
        x = np.asarray(result.witness, dtype=np.float32).astype(np.float64).ravel()
        y = net.run(x)
        if spec.violated_by(x, y):
            return SolverAnswer("sat", _assignment(decl, x, y))
        return SolverAnswer("unknown", reason="the witness does not violate the query after float32 rounding")
    return SolverAnswer(_WORDS[result.verdict], reason=result.reason)


def run_with_deadline(work, timeout: float | None, on_timeout) -> object:  # type: ignore[no-untyped-def]
    """Run ``work()``; if ``timeout`` passes first, call ``on_timeout()`` and end the process (exit 0)."""
    if timeout is None:
        return work()
    done = threading.Event()

    def _expire() -> None:
        if not done.is_set():
            on_timeout()
            logging.shutdown()
            os._exit(0)  # an in-process oracle cannot be interrupted; the caller gets its answer now

    timer = threading.Timer(max(0.0, timeout - _RESERVE / 2), _expire)
    timer.daemon = True
    timer.start()
    try:
        return work()
    finally:
        done.set()
        timer.cancel()
