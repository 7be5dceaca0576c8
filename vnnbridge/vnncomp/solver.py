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
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, TypeVar

from vnnbridge.errors import InputError, ModelError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["CAPABILITIES", "ELEMENT_TYPES", "NAME", "RESTRICTED_OPERATORS", "SolverAnswer", "capability",
           "onnx_operators", "run_with_deadline", "verify_query"]

log = logging.getLogger(__name__)
T = TypeVar("T")

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
# Oracle verdict (its value) -> the standard's word; the module stays light (no numpy) for `supports`.
_WORDS = {"sat": "sat", "unsat": "unsat", "timeout": "timed-out", "unknown": "unknown", "error": "unknown"}
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
    return tuple(value() if callable(value) else value)  # type: ignore[arg-type]


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

    from vnnbridge.network import load_onnx

    model = load_onnx(path, external_data=False)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise ModelError(f"the model has {len(inputs)} inputs and {len(model.graph.output)} outputs; vnnbridge "
                         "handles one of each (SIO)", path=path)
    return onnx.helper.tensor_dtype_to_np_dtype(inputs[0].type.tensor_type.elem_type).name


def _check_networks(query: Path, doc: Any, networks: Mapping[str, str]) -> Any:
    """The one declared network of a 2.x document (None for VNN-LIB 1.0), after the standard's checks."""
    where = str(query)
    if doc is None:
        if len(networks) != 1:
            raise InputError(f"a VNN-LIB 1.0 query needs exactly one --network, got {len(networks)}")
        return None
    declared = doc.networks
    needed = [n.name for n in declared if not any(kind == "equal-to" for kind, _ in n.equivalences)]
    missing = [n for n in needed if n not in networks]
    extra = [n for n in networks if n not in needed]
    if missing or extra:
        raise InputError("--network arguments do not match the query's networks"
                         + (f"; missing: {', '.join(missing)}" if missing else "")
                         + (f"; not declared: {', '.join(extra)}" if extra else ""), path=where)
    if len(declared) != 1:
        raise InputError(f"the query declares {len(declared)} networks; vnnbridge handles one (SNET)", path=where,
                         line=declared[1].where[0], column=declared[1].where[1])
    net = declared[0]
    if net.role("hidden"):
        hidden = net.role("hidden")[0]
        raise InputError("hidden-node declarations are not supported (NH)", path=where, line=hidden.where[0],
                         column=hidden.where[1])
    if len(net.role("input")) != 1 or len(net.role("output")) != 1:
        raise InputError(f"network {net.name} declares {len(net.role('input'))} inputs and "
                         f"{len(net.role('output'))} outputs; vnnbridge handles one of each (SIO)", path=where,
                         line=net.where[0], column=net.where[1])
    for t in net.tensors:
        if t.dtype.lower() not in ELEMENT_TYPES:
            raise InputError(f"{t.name} has element type {t.dtype}; vnnbridge is sound for "
                             f"{', '.join(ELEMENT_TYPES)} only", path=where, line=t.where[0], column=t.where[1])
    tensor = net.role("input")[0]
    actual = _onnx_element_type(networks[net.name])
    if tensor.dtype.lower() != "real" and actual != tensor.dtype.lower():
        raise InputError(f"{tensor.name} is declared {tensor.dtype} but the model's input is {actual}",
                         path=where, line=tensor.where[0], column=tensor.where[1])
    return net


@dataclass(frozen=True)
class SolverAnswer:
    """The first line of ``verify`` (``sat``, ``unsat``, ``unknown``, ``timed-out``) and what follows."""

    word: str
    lines: tuple[str, ...] = ()
    reason: str = ""

    def text(self) -> str:
        """All of stdout."""
        return "\n".join((self.word, *self.lines)) + "\n"


def _capped(doc: Any, net: Any) -> Any:
    """The document with every float32 input element also bounded by +-FLT_MAX.

    VNN-LIB 2.0 leaves an unconstrained float32 input free over all float32 values; every finite
    one lies in [-FLT_MAX, FLT_MAX], so adding these bounds changes nothing for such inputs and
    gives the box the spec model needs (tighter bounds in the query win when boxes intersect).
    ``real`` inputs range over all reals and get no cap: an unbounded one stays an error.
    """
    import numpy as np

    from vnnbridge.vnnlib.vnnlib2 import Document, Element, Number, Relation

    tensor = net.role("input")[0]
    if tensor.dtype.lower() != "float32":
        return doc
    big = float(np.finfo(np.float32).max)
    caps = []
    for flat in range(tensor.size):
        index = tuple(int(i) for i in np.unravel_index(flat, tensor.shape)) if tensor.shape else ()
        element = Element(tensor.name, index, tensor.where)
        caps += [Relation(">=", element, Number(-big), tensor.where),
                 Relation("<=", element, Number(big), tensor.where)]
    return Document(doc.version, doc.networks, tuple(caps) + tuple(doc.assertions), doc.path)


def _header(tensor: Any) -> str:
    return f"{tensor.name} {tensor.dtype} [{','.join(map(str, tensor.shape))}]"


def _assignment(net: Any, x: np.ndarray, y: np.ndarray) -> tuple[str, ...]:
    if net is None:
        heads = [f"X real [{x.size}]", f"Y real [{y.size}]"]
    else:
        heads = [_header(net.role("input")[0]), _header(net.role("output")[0])]
    lines: list[str] = []
    for head, values in zip(heads, (x, y)):
        lines.append(head)
        lines += [repr(float(v)) for v in values]
    return tuple(lines)


def verify_query(query: str | Path, network_args: Sequence[str], timeout: float | None = None,
                 oracle: str = "embedded") -> SolverAnswer:
    """Decide a VNN-LIB query against the given networks; raises InputError for the standard's error cases."""
    import numpy as np

    from vnnbridge.network import load_network
    from vnnbridge.oracles.base import Query
    from vnnbridge.oracles.registry import make_oracle
    from vnnbridge.vnnlib.parser import is_vnnlib2, parse, read_text
    from vnnbridge.vnnlib.vnnlib2 import parse_document

    start = time.monotonic()
    path = Path(query)
    if not path.is_file():
        raise InputError("no such VNN-LIB file", path=str(path))
    networks = _network_arguments(network_args)
    text = read_text(path)
    doc = parse_document(text, str(path)) if is_vnnlib2(text) else None
    decl = _check_networks(path, doc, networks)
    onnx_path = next(iter(networks.values())) if decl is None else networks[decl.name]
    net = load_network(onnx_path)
    spec = _capped(doc, decl).to_spec() if doc is not None else parse(text, str(path))
    if (spec.inputs, spec.outputs) != (net.inputs, net.outputs):
        raise InputError(f"the query has {spec.inputs} inputs and {spec.outputs} outputs, the network "
                         f"{net.inputs} and {net.outputs}", path=str(path))
    chosen = make_oracle(oracle)
    budget = (timeout if timeout is not None else 24 * 3600.0) - (time.monotonic() - start) - _RESERVE
    if budget <= 0:
        return SolverAnswer("timed-out", reason="no time left after reading the query")
    result = chosen.check(Query.build(net.path, spec), budget)
    if result.verdict.value == "sat" and result.witness is not None:
        x = np.asarray(result.witness, dtype=np.float32).astype(np.float64).ravel()
        y = net.run(x)
        if spec.violated_by(x, y):
            return SolverAnswer("sat", _assignment(decl, x, y))
        return SolverAnswer("unknown", reason="the witness does not violate the query after float32 rounding")
    return SolverAnswer(_WORDS[result.verdict.value], reason=result.reason)


def run_with_deadline(work: Callable[[], T], timeout: float | None, on_timeout: Callable[[], None]) -> T:
    """Run ``work()``; if ``timeout`` passes first, call ``on_timeout()`` and end the process (exit 0)."""
    from vnnbridge.vnncomp.run import end_own_tools, mark_own_tools

    if timeout is None:
        return work()
    mark_own_tools()
    done = threading.Event()

    def _expire() -> None:
        if not done.is_set():
            on_timeout()
            end_own_tools()  # an external oracle's tools, which the process runner has not ended yet
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
