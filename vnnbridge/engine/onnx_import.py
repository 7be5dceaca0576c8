"""ONNX nodes -> raw layer items: constants folded, each operator on the variable a handler.

`build_items` walks the graph once and returns the input shape and a list of items:
``("affine", op, bias)``, ``("relu", mask)`` or ``("maxpool", idx, n_in)``. Shapes only
matter here: a Reshape or Flatten is the identity on the flat C-order vector. A final
Softmax/LogSoftmax is recorded (``tail``) instead of compiled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from vnnbridge.engine.ops import ConvOp, DenseOp, LinearOp, SparseOp, identity_op
from vnnbridge.errors import ModelError

__all__ = ["SUPPORTED_OPS", "build_items"]


@dataclass
class _Var:
    shape: tuple[int, ...]


class _Builder:
    """Walks the ONNX graph once, folding constants and collecting raw layer items."""

    def __init__(self, model: Any, path: str) -> None:
        from onnx import numpy_helper

        self.model, self.path, self.nh = model, path, numpy_helper
        self.values: dict[str, Any] = {}
        self.items: list[tuple[Any, ...]] = []  # ("affine", op, bias) | ("relu", mask) | ("maxpool", idx)
        self.head: str | None = None
        self.tail: str | None = None
        self.tail_node = ""
        for init in model.graph.initializer:
            self.values[init.name] = self.nh.to_array(init).astype(np.float64) \
                if self.nh.to_array(init).dtype.kind == "f" else self.nh.to_array(init)

    # -- helpers ---------------------------------------------------------------------------
    def fail(self, node: Any, why: str) -> ModelError:
        return ModelError(f"node {node.name or '(unnamed)'!r} ({node.op_type}): {why}", path=self.path)

    def const(self, node: Any, name: str) -> np.ndarray:
        v = self.values.get(name)
        if not isinstance(v, np.ndarray):
            raise self.fail(node, f"input {name!r} must be a constant")
        return v

    def attrs(self, node: Any) -> dict[str, Any]:
        from onnx import helper

        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def affine(self, op: LinearOp, bias: np.ndarray | None = None) -> None:
        b = np.zeros(op.out_size) if bias is None else np.asarray(bias, dtype=np.float64).ravel()
        self.items.append(("affine", op, b))

    def elementwise(self, shape: tuple[int, ...], scale: np.ndarray | None, shift: np.ndarray | None) -> None:
        n = int(np.prod(shape))
        op: LinearOp = identity_op(n) if scale is None else SparseOp(sp.diags(np.asarray(scale).ravel()))
        self.affine(op, None if shift is None else np.asarray(shift).ravel())

    # -- walk --------------------------------------------------------------------------------
    def build(self) -> tuple[tuple[int, ...], list[tuple[Any, ...]]]:
        graph = self.model.graph
        inits = {i.name for i in graph.initializer}
        real = [i for i in graph.input if i.name not in inits]
        if len(real) != 1:
            raise ModelError(f"expected one input tensor, found {len(real)}", path=self.path)
        dims = []
        for d in real[0].type.tensor_type.shape.dim:
            # A symbolic (batch) dimension is taken as 1, as vnnbridge.network does.
            dims.append(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1)
        shape = tuple(dims)
        self.values[real[0].name] = _Var(shape)
        self.head = real[0].name
        outputs = {o.name for o in graph.output}
        nodes = list(graph.node)
        for k, node in enumerate(nodes):
            handler = _HANDLERS.get(node.op_type)
            if handler is None:
                raise self.fail(node, "unsupported operator (supported: " + ", ".join(SUPPORTED_OPS) + ")")
            ins = [self.values.get(n) if n else None for n in node.input]
            if any(n and n not in self.values for n in node.input):
                missing = [n for n in node.input if n and n not in self.values]
                raise self.fail(node, f"input {missing[0]!r} is not produced before this node")
            var_inputs = [i for i, v in enumerate(ins) if isinstance(v, _Var)]
            if not var_inputs or node.op_type == "Shape":  # a shape is known at compile time
                self.fold(node, ins)
                continue
            if len(var_inputs) > 1 or node.input[var_inputs[0]] != self.head:
                raise self.fail(node, "only sequential networks are supported (no branches or skips)")
            if node.op_type in ("Softmax", "LogSoftmax"):
                later = [n for n in nodes[k + 1:] if any(isinstance(self.values.get(i), _Var) or i == node.output[0]
                                                           for i in n.input)]
                if node.output[0] not in outputs or later:
                    raise self.fail(node, "Softmax/LogSoftmax is supported only as the last node")
                self.tail, self.tail_node = node.op_type, node.name or node.output[0]
                self.values[node.output[0]] = ins[var_inputs[0]]
                self.head = node.output[0]
                continue
            new_shape = handler(self, node, ins, var_inputs[0])
            self.values[node.output[0]] = _Var(new_shape)
            self.head = node.output[0]
        if graph.output[0].name != self.head:
            raise ModelError(f"the first graph output {graph.output[0].name!r} is not the end of the layer chain",
                             path=self.path)
        return shape, self.items

    def fold(self, node: Any, ins: list[Any]) -> None:
        """Evaluate a node whose inputs are all constants."""
        a = self.attrs(node)
        op = node.op_type
        if op == "Constant":
            if "value" in a:
                val = self.nh.to_array(a["value"])
            elif "value_float" in a:
                val = np.array(a["value_float"], dtype=np.float64)
            elif "value_floats" in a:
                val = np.array(a["value_floats"], dtype=np.float64)
            elif "value_int" in a:
                val = np.array(a["value_int"], dtype=np.int64)
            elif "value_ints" in a:
                val = np.array(a["value_ints"], dtype=np.int64)
            else:
                raise self.fail(node, "unsupported constant attribute")
            self.values[node.output[0]] = val.astype(np.float64) if val.dtype.kind == "f" else val
            return
        fn = _FOLDERS.get(op)
        if fn is None:
            raise self.fail(node, "cannot fold this operator on constants")
        self.values[node.output[0]] = fn(self, node, [i for i in ins], a)


def _shape_of(v: Any) -> tuple[int, ...]:
    return v.shape if isinstance(v, (_Var, np.ndarray)) else ()


def _fold_shape(b: _Builder, node: Any, ins: list[Any], a: dict[str, Any]) -> np.ndarray:
    s = np.array(_shape_of(ins[0]), dtype=np.int64)
    return s[a.get("start", 0):a.get("end", len(s))] if ("start" in a or "end" in a) else s


def _axes(b: _Builder, node: Any, ins: list[Any], a: dict[str, Any]) -> list[int]:
    if len(ins) > 1 and ins[1] is not None:
        return [int(v) for v in np.asarray(ins[1]).ravel()]
    return list(a.get("axes", []))


def _unsqueeze_shape(shape: tuple[int, ...], axes: list[int]) -> tuple[int, ...]:
    out = list(shape)
    rank = len(shape) + len(axes)
    for ax in sorted(x % rank for x in axes):
        out.insert(ax, 1)
    return tuple(out)


def _squeeze_shape(shape: tuple[int, ...], axes: list[int]) -> tuple[int, ...]:
    if not axes:
        return tuple(d for d in shape if d != 1)
    drop = {x % len(shape) for x in axes}
    return tuple(d for i, d in enumerate(shape) if i not in drop)


def _reshape_target(shape: tuple[int, ...], target: np.ndarray, allowzero: int) -> tuple[int, ...]:
    t = [int(v) for v in np.asarray(target).ravel()]
    if not allowzero:
        t = [shape[i] if v == 0 else v for i, v in enumerate(t)]
    return tuple(np.empty(shape, dtype=np.int8).reshape(t).shape)


_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide,
}

_FOLDERS: dict[str, Callable[..., np.ndarray]] = {
    "Shape": _fold_shape,
    "Identity": lambda b, n, i, a: i[0],
    "Cast": lambda b, n, i, a: i[0].astype(np.float64 if a.get("to") in (1, 10, 11) else np.int64),
    "Gather": lambda b, n, i, a: np.take(i[0], i[1].astype(np.int64), axis=a.get("axis", 0)),
    "Unsqueeze": lambda b, n, i, a: i[0].reshape(_unsqueeze_shape(i[0].shape, _axes(b, n, i, a))),
    "Squeeze": lambda b, n, i, a: i[0].reshape(_squeeze_shape(i[0].shape, _axes(b, n, i, a))),
    "Concat": lambda b, n, i, a: np.concatenate([np.atleast_1d(v) for v in i], axis=a.get("axis", 0)),
    "Reshape": lambda b, n, i, a: i[0].reshape(_reshape_target(i[0].shape, i[1], a.get("allowzero", 0))),
    "Flatten": lambda b, n, i, a: i[0].reshape(int(np.prod(i[0].shape[:a.get("axis", 1)])), -1),
    **{op: (lambda fn: (lambda b, n, i, a: fn(i[0], i[1])))(fn) for op, fn in _BINARY.items()},
}


# -- handlers for nodes on the variable (each returns the new shape) ---------------------------

def _pass(b: _Builder, node: Any, ins: list[Any], k: int) -> tuple[int, ...]:
    return ins[k].shape


def _flatten(b: _Builder, node: Any, ins: list[Any], k: int) -> tuple[int, ...]:
    s = ins[k].shape
    axis = b.attrs(node).get("axis", 1) % (len(s) + 1) if s else 0
    return (int(np.prod(s[:axis])), int(np.prod(s[axis:])))


def _reshape(b: _Builder, node: Any, ins: list[Any], k: int) -> tuple[int, ...]:
    target = b.const(node, node.input[1])
    try:
        return _reshape_target(ins[k].shape, target, b.attrs(node).get("allowzero", 0))
    except ValueError as exc:
        raise b.fail(node, f"cannot reshape {ins[k].shape} to {list(target)}: {exc}") from None


def _unsqueeze(b: _Builder, node: Any, ins: list[Any], k: int) -> tuple[int, ...]:
    return _unsqueeze_shape(ins[k].shape, _axes(b, node, ins, b.attrs(node)))


def _squeeze(b: _Builder, node: Any, ins: list[Any], k: int) -> tuple[int, ...]:
    return _squeeze_shape(ins[k].shape, _axes(b, node, ins, b.attrs(node)))


def _transpose(b: _Builder, node: Any, ins: list[Any], k: int) -> tuple[int, ...]:
    s = ins[k].shape
    perm = b.attrs(node).get("perm", list(reversed(range(len(s)))))
    idx = np.arange(int(np.prod(s))).reshape(s).transpose(perm).ravel()
    n = idx.size
    b.affine(SparseOp(sp.csr_array((np.ones(n), (np.arange(n), idx)), shape=(n, n))))
    return tuple(s[p] for p in perm)


def _relu(b: _Builder, node: Any, ins: list[Any], k: int) -> tuple[int, ...]:
    s = ins[k].shape
    b.items.append(("relu", np.ones(int(np.prod(s)), dtype=bool)))
    return s


def _dense_layer(b: _Builder, node: Any, shape: tuple[int, ...], w: np.ndarray,
                 bias: np.ndarray | None) -> tuple[int, ...]:
    """``x @ w.T + bias`` applied to the last axis of ``shape`` (w is (out, in))."""
    if shape[-1] != w.shape[1]:
        raise b.fail(node, f"inner dimensions differ: {shape} times a {w.shape[1]}x{w.shape[0]} matrix")
    rows = int(np.prod(shape[:-1]))
    out_shape = (*shape[:-1], w.shape[0])
    op: LinearOp = DenseOp(w) if rows == 1 else SparseOp(sp.kron(sp.identity(rows), sp.csr_array(w)))
    full = np.zeros(out_shape) if bias is None else np.broadcast_to(bias, out_shape)
    if bias is not None and np.broadcast_shapes(np.shape(bias), out_shape) != out_shape:
        raise b.fail(node, "bias does not broadcast to the output")
    b.affine(op, full)
    return out_shape


def _gemm(b: _Builder, node: Any, ins: list[Any], k: int) -> tuple[int, ...]:
    a = b.attrs(node)
    if k != 0 or a.get("transA", 0):
        raise b.fail(node, "only Gemm(x, constant) without transA is supported")
    w = b.const(node, node.input[1]).astype(np.float64)
    w = w if a.get("transB", 0) else w.T  # now (out, in)
    w = a.get("alpha", 1.0) * w
    bias = None
    if len(node.input) > 2 and node.input[2]:
        bias = a.get("beta", 1.0) * b.const(node, node.input[2]).astype(np.float64)
    if len(ins[k].shape) != 2:
        raise b.fail(node, f"Gemm needs a 2-D input, got shape {ins[k].shape}")
    return _dense_layer(b, node, ins[k].shape, w, bias)


def _matmul(b: _Builder, node: Any, ins: list[Any], k: int) -> tuple[int, ...]:
    if k != 0:
        raise b.fail(node, "only MatMul(x, constant) is supported")
    w = b.const(node, node.input[1]).astype(np.float64)
    if w.ndim != 2:
        raise b.fail(node, f"only a 2-D constant right operand is supported, got {w.shape}")
    return _dense_layer(b, node, ins[k].shape, w.T, None)


def _binary(b: _Builder, node: Any, ins: list[Any], k: int) -> tuple[int, ...]:
    shape = ins[k].shape
    c = b.const(node, node.input[1 - k]).astype(np.float64)
    try:
        out = np.broadcast_shapes(shape, c.shape)
    except ValueError:
        raise b.fail(node, f"constant of shape {c.shape} does not broadcast to {shape}") from None
    if out != shape:
        raise b.fail(node, f"the constant would broadcast the tensor {shape} to {out}")
    full = np.broadcast_to(c, shape)
    op = node.op_type
    if op == "Add":
        b.elementwise(shape, None, full)
    elif op == "Sub":
        b.elementwise(shape, None, -full) if k == 0 else b.elementwise(shape, -np.ones(shape), full)
    elif op == "Mul":
        b.elementwise(shape, full, None)
    else:  # Div
        if k != 0:
            raise b.fail(node, "division by the network's input is not piecewise linear")
        if np.any(full == 0):
            raise b.fail(node, "division by zero")
        b.elementwise(shape, 1.0 / full, None)
    return shape


def _batchnorm(b: _Builder, node: Any, ins: list[Any], k: int) -> tuple[int, ...]:
    shape = ins[k].shape
    gamma, beta, mean, var = (b.const(node, n).astype(np.float64) for n in node.input[1:5])
    eps = b.attrs(node).get("epsilon", 1e-5)
    scale = gamma / np.sqrt(var + eps)
    shift = beta - mean * scale
    chan = (1, -1) + (1,) * (len(shape) - 2)
    b.elementwise(shape, np.broadcast_to(scale.reshape(chan), shape), np.broadcast_to(shift.reshape(chan), shape))
    return shape


def _spatial(b: _Builder, node: Any, shape: tuple[int, ...],
             kernel: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, int], tuple[int, int, int, int],
                                               tuple[int, int], tuple[int, int]]:
    """The 2-D view of a 1-D or 2-D window op: (1, C, H, W), strides, pads (t, l, b, r), dilations, kernel.

    A 1-D operator on (1, C, L) is exactly the 2-D one on (1, C, 1, L) with a window of height 1.
    """
    a = b.attrs(node)
    if len(shape) not in (3, 4) or shape[0] != 1:
        raise b.fail(node, f"only 1-D and 2-D operators on (1, C, L) or (1, C, H, W) tensors are supported, "
                           f"got {shape}")
    dims = len(shape) - 2
    if len(kernel) != dims:
        raise b.fail(node, f"a {len(kernel)}-D window on a {dims}-D tensor {shape}")
    strides = [int(v) for v in a.get("strides", [1] * dims)]
    dil = [int(v) for v in a.get("dilations", [1] * dims)]
    pads = [int(v) for v in a.get("pads", [0] * 2 * dims)]
    if len(strides) != dims or len(dil) != dims or len(pads) != 2 * dims:
        raise b.fail(node, f"strides, dilations and pads do not fit a {dims}-D window")
    if min(strides) < 1 or min(dil) < 1 or min(pads) < 0 or min(kernel) < 1:
        raise b.fail(node, "kernel, strides and dilations must be positive and pads non-negative")
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for ax in range(dims):
            size = shape[2 + ax]
            out = -(-size // strides[ax])
            total = max(0, (out - 1) * strides[ax] + dil[ax] * (kernel[ax] - 1) + 1 - size)
            lo = total // 2 if auto == "SAME_UPPER" else total - total // 2
            begins.append(lo)
            ends.append(total - lo)
        pads = begins + ends
    elif auto == "VALID":
        pads = [0] * 2 * dims
    elif auto != "NOTSET":
        raise b.fail(node, f"unknown auto_pad {auto!r}")
    if dims == 1:
        return ((1, shape[1], 1, shape[2]), (1, strides[0]), (0, pads[0], 0, pads[1]), (1, dil[0]),
                (1, int(kernel[0])))
    return (tuple(shape), (strides[0], strides[1]), (pads[0], pads[1], pads[2], pads[3]), (dil[0], dil[1]),
            (int(kernel[0]), int(kernel[1])))


def _unview(shape: tuple[int, ...], out4: tuple[int, ...]) -> tuple[int, ...]:
    """The output shape of a window op in the rank of its input (drop the height 1 of a 1-D op)."""
    return out4 if len(shape) == 4 else (out4[0], out4[1], out4[3])


def _conv(b: _Builder, node: Any, ins: list[Any], k: int) -> tuple[int, ...]:
    if k != 0:
        raise b.fail(node, "the weights must be constants")
    w = b.const(node, node.input[1]).astype(np.float64)
    if w.ndim not in (3, 4):
        raise b.fail(node, f"only 1-D and 2-D convolutions are supported, weight shape {w.shape}")
    shape = ins[k].shape
    if len(shape) != w.ndim:
        raise b.fail(node, f"weights of shape {w.shape} do not fit the input shape {shape}")
    declared = b.attrs(node).get("kernel_shape")
    if declared is not None and tuple(declared) != w.shape[2:]:
        raise b.fail(node, f"kernel_shape {list(declared)} differs from the weights' {list(w.shape[2:])}")
    shape4, strides, pads, dil, kernel = _spatial(b, node, shape, tuple(w.shape[2:]))
    group = b.attrs(node).get("group", 1)
    if shape[1] != w.shape[1] * group:
        raise b.fail(node, f"input has {shape[1]} channels, the weights expect {w.shape[1] * group}")
    try:  # a 1-D kernel (O, C/g, k) becomes the 2-D kernel (O, C/g, 1, k) of the height-1 view
        c, h, w_ = shape4[1:]
        op = ConvOp(w.reshape(w.shape[0], w.shape[1], *kernel), (c, h, w_), strides, pads, dil, group)
    except ValueError as exc:
        raise b.fail(node, str(exc)) from None
    bias = None
    if len(node.input) > 2 and node.input[2]:
        bias = np.repeat(b.const(node, node.input[2]).astype(np.float64), op.out_shape[1] * op.out_shape[2])
    b.affine(op, bias)
    return _unview(shape, (1, *op.out_shape))


def _windows(b: _Builder, node: Any, shape: tuple[int, ...],
             partial: bool) -> tuple[np.ndarray, tuple[int, ...]]:
    """Per output cell the flat input indices of its window (-1 where it reads padding).

    With ``ceil_mode=1`` a last window that runs past the padded input is kept, as onnxruntime
    does, when it starts inside the input or the left padding; its cells past the end read -1.
    ``partial`` says whether the caller can take such windows.
    """
    a = b.attrs(node)
    if "kernel_shape" not in a:
        raise b.fail(node, "kernel_shape is required")
    shape4, strides, pads, dil, kernel = _spatial(b, node, shape, tuple(a["kernel_shape"]))
    _, c, h, w = shape4
    t, l, bt, r = pads
    ceil = bool(a.get("ceil_mode", 0))

    def out_len(size: int, lo: int, hi: int, ax: int) -> int:
        span = size + lo + hi - dil[ax] * (kernel[ax] - 1) - 1  # last start of a full window
        n = (-(-span // strides[ax]) if ceil else span // strides[ax]) + 1
        if ceil and (n - 1) * strides[ax] >= size + lo:
            n -= 1  # onnxruntime drops a last window that would start in the right padding
        if n <= 0:
            raise b.fail(node, "the window is larger than the padded input")
        if (n - 1) * strides[ax] > span and not partial:
            raise b.fail(node, "ceil_mode=1 with a partial last window is not supported")
        return n

    ho, wo = out_len(h, t, bt, 0), out_len(w, l, r, 1)
    oy = np.arange(ho)[:, None, None, None] * strides[0] - t + np.arange(kernel[0])[None, None, :, None] * dil[0]
    ox = np.arange(wo)[None, :, None, None] * strides[1] - l + np.arange(kernel[1])[None, None, None, :] * dil[1]
    oy, ox = np.broadcast_arrays(oy, ox)  # (ho, wo, kh, kw)
    valid = (oy >= 0) & (oy < h) & (ox >= 0) & (ox < w)
    if not valid.reshape(ho * wo, -1).any(axis=1).all():
        raise b.fail(node, "a window covers padding only (its value would not depend on the input)")
    cell = np.where(valid, oy * w + ox, -1).reshape(ho * wo, -1)
    idx = np.where(cell[None] >= 0, np.arange(c)[:, None, None] * h * w + cell[None], -1)
    return idx.reshape(c * ho * wo, -1), _unview(shape, (1, c, ho, wo))


def _avgpool(b: _Builder, node: Any, ins: list[Any], k: int) -> tuple[int, ...]:
    shape = ins[k].shape
    # A partial ceil_mode window's divisor follows its own rule in onnxruntime: refused, not guessed.
    idx, out_shape = _windows(b, node, shape, partial=False)
    include = b.attrs(node).get("count_include_pad", 0)
    counts = np.full(idx.shape[0], idx.shape[1]) if include else (idx >= 0).sum(axis=1)
    rows, cols = np.nonzero(idx >= 0)
    m = sp.csr_array((1.0 / counts[rows], (rows, idx[rows, cols])), shape=(idx.shape[0], int(np.prod(shape))))
    b.affine(SparseOp(m))
    return out_shape


def _global_avgpool(b: _Builder, node: Any, ins: list[Any], k: int) -> tuple[int, ...]:
    shape = ins[k].shape
    if len(shape) != 4 or shape[0] != 1:
        raise b.fail(node, f"only (1, C, H, W) tensors are supported, got {shape}")
    c, hw = shape[1], shape[2] * shape[3]
    m = sp.kron(sp.identity(c), sp.csr_array(np.full((1, hw), 1.0 / hw)))
    b.affine(SparseOp(m))
    return (1, c, 1, 1)


def _maxpool(b: _Builder, node: Any, ins: list[Any], k: int) -> tuple[int, ...]:
    if len(node.output) > 1 and node.output[1]:
        raise b.fail(node, "the indices output of MaxPool is not supported")
    shape = ins[k].shape
    # Cells of the explicit padding and of a ceil_mode window's overhang act as -inf: they never
    # win a max, so each is replaced by a real cell of the same window (max(a, a) = a).
    idx, out_shape = _windows(b, node, shape, partial=True)
    first = idx.max(axis=1)
    idx = np.where(idx >= 0, idx, first[:, None])
    b.items.append(("maxpool", idx, int(np.prod(shape))))
    return out_shape


def _pad(b: _Builder, node: Any, ins: list[Any], k: int) -> tuple[int, ...]:
    a = b.attrs(node)
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        raise b.fail(node, f"only constant padding is supported, got mode {mode!r}")
    if len(node.input) > 3 and node.input[3]:
        raise b.fail(node, "the axes input of Pad is not supported")
    pads = [int(v) for v in (b.const(node, node.input[1]).ravel() if len(node.input) > 1 and node.input[1]
                             else a.get("pads", []))]
    value = float(a.get("value", 0.0))
    if len(node.input) > 2 and node.input[2]:
        value = float(b.const(node, node.input[2]).ravel()[0])
    shape = ins[k].shape
    rank = len(shape)
    if len(pads) != 2 * rank:
        raise b.fail(node, f"expected {2 * rank} pads, got {len(pads)}")
    out_shape = tuple(shape[i] + pads[i] + pads[i + rank] for i in range(rank))
    grids = np.meshgrid(*[np.arange(n) - pads[i] for i, n in enumerate(out_shape)], indexing="ij")
    inside = np.ones(out_shape, dtype=bool)
    for i, g in enumerate(grids):
        inside &= (g >= 0) & (g < shape[i])
    src = np.ravel_multi_index([np.clip(g, 0, shape[i] - 1) for i, g in enumerate(grids)], shape).ravel()
    rows = np.nonzero(inside.ravel())[0]
    m = sp.csr_array((np.ones(rows.size), (rows, src[rows])), shape=(int(np.prod(out_shape)), int(np.prod(shape))))
    b.affine(SparseOp(m), np.where(inside.ravel(), 0.0, value))
    return out_shape


_HANDLERS: dict[str, Callable[[_Builder, Any, list[Any], int], tuple[int, ...]]] = {
    "Identity": _pass, "Dropout": _pass, "Flatten": _flatten, "Reshape": _reshape,
    "Squeeze": _squeeze, "Unsqueeze": _unsqueeze, "Transpose": _transpose, "Relu": _relu,
    "Gemm": _gemm, "MatMul": _matmul, "Add": _binary, "Sub": _binary, "Mul": _binary, "Div": _binary,
    "BatchNormalization": _batchnorm, "Conv": _conv, "AveragePool": _avgpool,
    "GlobalAveragePool": _global_avgpool, "MaxPool": _maxpool, "Pad": _pad,
    "Softmax": _pass, "LogSoftmax": _pass,
    # Constant-only operators (folded): listed so that the error message names them as supported.
    "Constant": _pass, "Shape": _pass, "Gather": _pass, "Concat": _pass, "Cast": _pass,
}

SUPPORTED_OPS: tuple[str, ...] = tuple(sorted(_HANDLERS))


def build_items(model: Any, path: str) -> tuple[tuple[int, ...], list[tuple[Any, ...]], str | None, str]:
    """(input shape, raw items, stripped tail operator or None, its node name) of an ONNX model."""
    builder = _Builder(model, path)
    shape, items = builder.build()
    return shape, items, builder.tail, builder.tail_node
