"""Derived ONNX models: what an oracle sees instead of the user's file, cached by content hash.

Two derivations, both written to ``cache_dir("models")`` and never beside the input:

- `prepare_model`: the model a query is *about*. A final Softmax/LogSoftmax is removed
  (the argmax is unchanged, and specs speak about logits), and an input normalisation
  given outside the graph (``mean``/``std``) is composed in, so that boxes stay in pixel
  space: folded into the first Gemm/MatMul/Conv when that is an exact identity (scalar
  mean and std, the weights used once, no zero padding that would see the shift), else
  prepended as Mul/Add nodes with full-shape constants.
- `marabou_model`: the same function in operators Marabou 2.0's ONNX reader parses: fixed
  batch size, constant-folded shape arithmetic (Shape/Gather/Concat), Sub/Div by constants
  as Add/Mul with full-shape constants, a zero Pad plus AveragePool as one Conv.

Every derived model is checked against its source with onnxruntime on random inputs before
it is used; a mismatch is a `ModelError`. (Witnesses are always validated on the query's
own model, so rounding differences of the derived one can never make a bogus ``sat``.)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vnnbridge.cache import atomic_write, cache_dir, sha256_bytes, sha256_file
from vnnbridge.errors import InputError, ModelError, require_file

__all__ = ["compares_outputs_only", "marabou_model", "prepare_model"]

log = logging.getLogger(__name__)

# Bump when a derivation changes, so stale cached models are not reused.
_PREPARE_VERSION = "prepare-1"
_MARABOU_VERSION = "marabou-1"
# Relative tolerance of the onnxruntime cross-check of a derived model against its source.
_CHECK_RTOL = 1e-4

Floats = float | Sequence[float] | None


def _onnx() -> Any:
    import onnx

    return onnx


def _load(path: Path) -> Any:
    from vnnbridge.network import load_onnx

    return load_onnx(path)


def _graph_input(model: Any) -> Any:
    inits = {i.name for i in model.graph.initializer}
    real = [i for i in model.graph.input if i.name not in inits]
    if len(real) != 1:
        raise ModelError(f"expected one input tensor, found {len(real)}")
    return real[0]


def _input_shape(model: Any) -> tuple[int, ...]:
    dims = _graph_input(model).type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in dims)


def _initializers(model: Any) -> dict[str, Any]:
    return {i.name: i for i in model.graph.initializer}


def _array(init: Any) -> np.ndarray:
    from onnx import numpy_helper

    return numpy_helper.to_array(init)


def _set_array(model: Any, name: str, value: np.ndarray) -> None:
    from onnx import numpy_helper

    tensor = numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)
    for i, init in enumerate(model.graph.initializer):
        if init.name == name:
            model.graph.initializer[i].CopyFrom(tensor)
            return
    model.graph.initializer.append(tensor)


def _uses(model: Any, name: str) -> int:
    return sum(list(node.input).count(name) for node in model.graph.node)


def _consumers(model: Any, name: str) -> list[Any]:
    return [node for node in model.graph.node if name in node.input]


def _rename_tensor(model: Any, old: str, new: str) -> None:
    for node in model.graph.node:
        for field in (node.input, node.output):
            for i, name in enumerate(field):
                if name == old:
                    field[i] = new


def _unique(model: Any, stem: str) -> str:
    taken = {n for node in model.graph.node for n in (*node.input, *node.output)}
    taken |= {i.name for i in model.graph.initializer} | {i.name for i in model.graph.input}
    name, k = stem, 0
    while name in taken:
        k += 1
        name = f"{stem}_{k}"
    return name


def _save(model: Any, path: Path) -> Path:
    onnx = _onnx()
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"derived model is invalid: {exc}") from None
    atomic_write(path, model.SerializeToString())
    return path


def _session(data: bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])


def _cross_check(source: Any, derived: Any, transform: Any = None, samples: int = 4) -> None:
    """Raise ModelError unless ``derived(x)`` equals ``source(transform(x))`` on random inputs."""
    shape = _input_shape(derived)
    a, b = _session(source.SerializeToString()), _session(derived.SerializeToString())
    name_a, name_b = a.get_inputs()[0].name, b.get_inputs()[0].name
    rng = np.random.default_rng(0)
    for _ in range(samples):
        x = rng.random(shape, dtype=np.float32)
        xs = x if transform is None else transform(x).astype(np.float32)
        want = np.asarray(a.run(None, {name_a: xs.reshape(_input_shape(source))})[0], dtype=np.float64)
        got = np.asarray(b.run(None, {name_b: x})[0], dtype=np.float64)
        scale = max(1.0, float(np.max(np.abs(want))))
        if want.size != got.size or not np.allclose(got.ravel(), want.ravel(), rtol=0, atol=_CHECK_RTOL * scale):
            raise ModelError("derived model does not reproduce its source under onnxruntime")


# --- prepare_model: softmax removal and outside normalisation ---------------------------------


def _strip_softmax(model: Any) -> bool:
    out = model.graph.output[0].name
    producer = next((n for n in model.graph.node if out in n.output), None)
    if producer is None or producer.op_type not in ("Softmax", "LogSoftmax"):
        return False
    logits = producer.input[0]
    model.graph.node.remove(producer)
    # The logits tensor takes the output's name, so the graph keeps its output.
    _rename_tensor(model, logits, out)
    log.info("removed the final %s: queries are about its input logits (argmax unchanged)",
             producer.op_type)
    return True


def compares_outputs_only(spec: Any) -> bool:
    """Whether every output row of ``spec`` is ``y_i - y_j <= 0`` (what a final softmax preserves)."""
    for case in spec.cases:
        for poly in case.polytopes:
            for row, bound in zip(poly.a, poly.b):
                nonzero = sorted(c for c in row if c != 0.0)
                if bound != 0.0 or nonzero != [-1.0, 1.0]:
                    return False
    return True


def _vector(value: Floats, what: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64)).ravel()
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise InputError(f"--{what} needs finite numbers, got {value!r}")
    return arr


def _broadcast(values: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    """Scalar, one value per channel (axis 1), or one per input, to the full input shape."""
    if values.size == 1:
        return np.full(shape, values[0])
    if values.size == int(np.prod(shape)):
        return values.reshape(shape).copy()
    if len(shape) >= 2 and shape[1] == values.size:
        return np.broadcast_to(values.reshape((1, -1) + (1,) * (len(shape) - 2)), shape).copy()
    if len(shape) >= 2 and shape[0] == values.size:  # CHW: an image input without a batch axis
        return np.broadcast_to(values.reshape((-1,) + (1,) * (len(shape) - 1)), shape).copy()
    raise InputError(f"--{what} has {values.size} values; the input shape {list(shape)} needs 1, "
                     f"one per channel or one per input")


def _fold_target(model: Any) -> tuple[Any, str] | None:
    """The first affine node the input reaches through shape-only nodes, and its data input."""
    name = _graph_input(model).name
    for _ in range(4):
        users = _consumers(model, name)
        if len(users) != 1:
            return None
        node = users[0]
        if node.op_type in ("Flatten", "Reshape") and node.input[0] == name:
            name = node.output[0]
            continue
        if node.op_type in ("Gemm", "MatMul", "Conv") and node.input[0] == name:
            return node, name
        return None
    return None


def _attr(node: Any, key: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == key:
            return helper.get_attribute_value(a)
    return default


def _set_attr(node: Any, key: str, value: Any) -> None:
    from onnx import helper

    for a in list(node.attribute):
        if a.name == key:
            node.attribute.remove(a)
    node.attribute.append(helper.make_attribute(key, value))


def _per_channel(full: np.ndarray) -> np.ndarray | None:
    """The per-channel values of a full-shape constant ([N, C, ...] with N = 1), or None."""
    if full.ndim < 3 or full.shape[0] != 1:
        return None
    rows = full.reshape(full.shape[1], -1)
    return rows[:, 0].copy() if np.all(rows == rows[:, :1]) else None


def _fold(model: Any, mean: np.ndarray, std: np.ndarray) -> bool:
    """Fold ``(x - mean) / std`` (full-shape arrays) into the first affine node; False when not exact."""
    found = _fold_target(model)
    if found is None:
        return False
    node, data = found
    inits = _initializers(model)
    weight = node.input[1] if len(node.input) > 1 else ""
    if weight not in inits or _uses(model, weight) != 1:
        return False
    w = _array(inits[weight]).astype(np.float64)
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else ""
    if bias and (bias not in inits or _uses(model, bias) != 1):
        return False
    shift = (mean / std).ravel()
    if node.op_type in ("Gemm", "MatMul"):
        # The data must be the input flattened to [1, D] for per-element constants to line up.
        shape = _full_shape(model, data)
        if shape is None or len(shape) != 2 or shape[0] != 1 or shape[1] != shift.size or w.ndim != 2:
            return False
        inv = 1.0 / std.ravel()
        trans_b = node.op_type == "Gemm" and bool(_attr(node, "transB", 0))
        w_new = w * inv[None, :] if trans_b else w * inv[:, None]
        moved = w @ shift if trans_b else shift @ w  # what the shift adds to each output
    if node.op_type == "Gemm":
        if _attr(node, "transA", 0) or _attr(node, "beta", 1.0) == 0.0:
            return False
        alpha, beta = float(_attr(node, "alpha", 1.0)), float(_attr(node, "beta", 1.0))
        b = _array(inits[bias]).astype(np.float64) if bias else np.zeros(moved.shape)
        new_bias = b - alpha * np.broadcast_to(moved, np.broadcast_shapes(b.shape, moved.shape)) / beta
    elif node.op_type == "Conv":
        m_c, s_c = _per_channel(mean), _per_channel(std)
        if m_c is None or s_c is None or int(_attr(node, "group", 1)) != 1 or w.shape[1] != m_c.size:
            return False
        if any(_attr(node, "pads", [])) and np.any(m_c != 0.0):
            return False  # zero padding of (x-m)/s is padding x with m: not a weight change
        view = (1, -1) + (1,) * (w.ndim - 2)
        w_new = w / s_c.reshape(view)
        b = _array(inits[bias]).astype(np.float64) if bias else np.zeros(w.shape[0])
        new_bias = b - (w * (m_c / s_c).reshape(view)).sum(axis=tuple(range(1, w.ndim)))
    else:  # MatMul: y = x W; the shift becomes an Add after it
        new_bias = -moved
    _set_array(model, weight, w_new)
    if node.op_type == "MatMul":
        from onnx import helper

        out = node.output[0]
        tmp, const = _unique(model, out + "_unshifted"), _unique(model, out + "_shift")
        node.output[0] = tmp
        _set_array(model, const, new_bias)
        index = list(model.graph.node).index(node)
        model.graph.node.insert(index + 1, helper.make_node("Add", [tmp, const], [out]))
        return True
    bias_name = bias or _unique(model, (node.name or "folded") + "_bias")
    _set_array(model, bias_name, new_bias)
    if not bias:
        node.input.append(bias_name)
    return True


def _conv_normalisation(model: Any, mean: np.ndarray, std: np.ndarray) -> bool:
    """Insert ``(x - mean) / std`` as a 1x1 Conv (per-channel constants, images only)."""
    from onnx import helper

    m_c, s_c = _per_channel(mean), _per_channel(std)
    if m_c is None or s_c is None or mean.ndim != 4:
        return False
    name = _graph_input(model).name
    out, wname, bname = (_unique(model, name + suffix) for suffix in ("_normalised", "_norm_w", "_norm_b"))
    _rename_tensor(model, name, out)
    _set_array(model, wname, np.diag(1.0 / s_c).reshape(m_c.size, m_c.size, 1, 1))
    _set_array(model, bname, -m_c / s_c)
    model.graph.node.insert(0, helper.make_node("Conv", [name, wname, bname], [out], kernel_shape=[1, 1]))
    return True


def _prepend(model: Any, mean: np.ndarray, std: np.ndarray) -> None:
    """Insert ``x * (1/std) + (-mean/std)`` with full-shape constants before every use of x."""
    from onnx import helper

    name = _graph_input(model).name
    scaled, shifted = _unique(model, name + "_scaled"), _unique(model, name + "_normalised")
    scale_c, shift_c = _unique(model, name + "_inv_std"), _unique(model, name + "_neg_mean_over_std")
    _rename_tensor(model, name, shifted)  # every consumer now reads the normalised tensor
    _set_array(model, scale_c, 1.0 / std)
    _set_array(model, shift_c, -mean / std)
    model.graph.node.insert(0, helper.make_node("Add", [scaled, shift_c], [shifted]))
    model.graph.node.insert(0, helper.make_node("Mul", [name, scale_c], [scaled]))


def _compose(model: Any, mean: np.ndarray, std: np.ndarray) -> str:
    """Put ``(x - mean) / std`` in front of the model the most Marabou-friendly way; says which."""
    if _fold(model, mean, std):
        return "folded into the first layer"
    if _conv_normalisation(model, mean, std):
        return "prepended as a 1x1 Conv"
    _prepend(model, mean, std)
    return "prepended as Mul/Add nodes"


def prepare_model(path: str | Path, mean: Floats = None, std: Floats = None,
                  strip_softmax: bool = True) -> Path:
    """The model queries about ``path`` should use: no final softmax, normalisation composed in.

    Removing the softmax keeps every comparison ``y_i <= y_j`` (softmax is monotone) but not
    thresholds on probabilities; pass ``strip_softmax=False`` for specs with those.
    """
    source = require_file(path, "ONNX file")
    m = _vector(0.0 if mean is None else mean, "mean")
    s = _vector(1.0 if std is None else std, "std")
    if np.any(s == 0.0):
        raise InputError("--std must not be zero")
    key = sha256_bytes(f"{_PREPARE_VERSION}|{sha256_file(source)}|{m.tolist()}|{s.tolist()}|"
                       f"{strip_softmax}".encode())
    target = cache_dir("models") / f"{source.stem}-{key[:16]}.onnx"
    if target.is_file():
        return target
    model = _load(source)
    changed = strip_softmax and _strip_softmax(model)
    reference = _load(source)
    if strip_softmax:
        _strip_softmax(reference)  # the cross-check compares logits with logits
    transform = None
    if np.any(m != 0.0) or np.any(s != 1.0):
        shape = _input_shape(model)
        full_m, full_s = _broadcast(m, shape, "mean"), _broadcast(s, shape, "std")
        log.info("input normalisation %s", _compose(model, full_m, full_s))
        transform, changed = (lambda x: (x - full_m) / full_s), True
    if not changed:
        return source
    _cross_check(reference, model, transform)
    log.info("derived model %s from %s", target, source)
    return _save(model, target)


# --- marabou_model: operators Marabou 2.0 parses ------------------------------------------------


def _fix_batch(model: Any) -> None:
    for value in (*model.graph.input, *model.graph.output):
        for d in value.type.tensor_type.shape.dim:
            if not (d.HasField("dim_value") and d.dim_value > 0):
                d.Clear()
                d.dim_value = 1


def _fold_constants(model: Any) -> int:
    """Replace every node computable without the input (shape arithmetic included) by an initializer."""
    onnx = _onnx()
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes: dict[str, list[int]] = {}
    for info in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        dims = info.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = [d.dim_value for d in dims]
    known: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    folded = []
    for node in model.graph.node:
        value: list[np.ndarray] | None = None
        if node.op_type == "Shape" and node.input[0] in shapes:
            value = [np.array(shapes[node.input[0]], dtype=np.int64)]
        elif (node.input or node.op_type == "Constant") and all((not n) or n in known for n in node.input):
            sub = helper.make_graph([node], "fold", [], [helper.make_tensor_value_info(o, 0, None) for o in node.output],
                                    [numpy_helper.from_array(known[n], n) for n in node.input if n])
            sub_model = helper.make_model(sub, opset_imports=model.opset_import)
            value = [np.asarray(v) for v in ReferenceEvaluator(sub_model).run(None, {})]
        if value is None:
            continue
        for name, array in zip(node.output, value):
            known[name] = np.asarray(array)
        folded.append(node)
    keep = {n for node in model.graph.node if node not in folded for n in node.input}
    keep |= {o.name for o in model.graph.output}
    for node in folded:
        model.graph.node.remove(node)
        for name in node.output:
            if name in keep and name not in {i.name for i in model.graph.initializer}:
                model.graph.initializer.append(numpy_helper.from_array(known[name], name))
    return sum(1 for node in folded if node.op_type != "Constant")


def _full_shape(model: Any, tensor: str) -> list[int] | None:
    """The static shape of ``tensor`` with the batch taken as 1, or None."""
    onnx = _onnx()
    fixed = type(model)()
    fixed.CopyFrom(model)
    _fix_batch(fixed)
    inferred = onnx.shape_inference.infer_shapes(fixed)
    for value in (*inferred.graph.value_info, *inferred.graph.input):
        if value.name == tensor:
            dims = value.type.tensor_type.shape.dim
            if all(d.HasField("dim_value") for d in dims):
                return [d.dim_value for d in dims]
    return None


def _constants_as_full_shape(model: Any) -> int:
    """Sub/Div of a tensor by a constant become Add/Mul with a same-shape constant."""
    inits = _initializers(model)
    count = 0
    for node in list(model.graph.node):
        if node.op_type not in ("Sub", "Div") or node.input[1] not in inits or node.input[0] in inits:
            continue
        shape = _full_shape(model, node.input[0])
        if shape is None:
            continue
        c = _array(inits[node.input[1]]).astype(np.float64)
        full = np.broadcast_to(-c if node.op_type == "Sub" else 1.0 / c, shape)
        name = _unique(model, node.input[1] + ("_neg" if node.op_type == "Sub" else "_inv"))
        _set_array(model, name, full)
        node.op_type = "Add" if node.op_type == "Sub" else "Mul"
        node.input[1] = name
        count += 1
    return count


def _input_chain(model: Any) -> tuple[np.ndarray, np.ndarray, list[Any], str] | None:
    """Elementwise constant Sub/Add/Div/Mul right after the input, as ``(x - mean) / std``."""
    inits = _initializers(model)
    name = _graph_input(model).name
    shape = _input_shape(model)
    mean, std = np.zeros(shape), np.ones(shape)
    nodes: list[Any] = []
    while True:
        users = _consumers(model, name)
        if len(users) != 1 or users[0].op_type not in ("Sub", "Add", "Div", "Mul"):
            break
        node = users[0]
        if node.input[0] != name or node.input[1] not in inits:
            break
        try:
            c = np.broadcast_to(_array(inits[node.input[1]]).astype(np.float64), shape)
        except ValueError:
            break
        if node.op_type in ("Div", "Mul") and np.any(c == 0.0):
            break
        if node.op_type == "Sub":
            mean = mean + c * std
        elif node.op_type == "Add":
            mean = mean - c * std
        elif node.op_type == "Div":
            std = std * c
        else:
            std = std / c
        nodes.append(node)
        name = node.output[0]
    return (mean, std, nodes, name) if nodes else None


def _fold_input_chain(model: Any) -> int:
    """Move a constant normalisation at the input into the first layer (or a 1x1 Conv)."""
    chain = _input_chain(model)
    if chain is None:
        return 0
    mean, std, nodes, out = chain
    trial = type(model)()
    trial.CopyFrom(model)
    for node in nodes:
        trial.graph.node.remove(next(n for n in trial.graph.node if list(n.output) == list(node.output)))
    _rename_tensor(trial, out, _graph_input(trial).name)
    if not (_fold(trial, mean, std) or _conv_normalisation(trial, mean, std)):
        return 0
    model.CopyFrom(trial)
    return len(nodes)


def _avgpool_as_conv(model: Any) -> int:
    """A zero Pad plus AveragePool (or a lone AveragePool without padding) becomes one Conv."""
    from onnx import helper

    inits = _initializers(model)
    count = 0
    for node in list(model.graph.node):
        if node.op_type != "AveragePool" or _attr(node, "ceil_mode", 0):
            continue
        pool_pads = list(_attr(node, "pads", []))
        if any(pool_pads) and not _attr(node, "count_include_pad", 0):
            continue  # border windows divide by fewer cells: not a convolution
        kernel = list(_attr(node, "kernel_shape", []))
        data = node.input[0]
        extra = [0] * (2 * len(kernel))
        pad = next((n for n in model.graph.node if data in n.output and n.op_type == "Pad"), None)
        if pad is not None and _uses(model, data) == 1:
            pads = list(_attr(pad, "pads", []))
            if len(pad.input) > 1 and pad.input[1] in inits:
                pads = _array(inits[pad.input[1]]).tolist()
            value = float(_attr(pad, "value", 0.0))
            if len(pad.input) > 2 and pad.input[2] in inits:
                value = float(_array(inits[pad.input[2]]))
            mode = _attr(pad, "mode", b"constant")
            rank = len(pads) // 2
            if (mode in (b"constant", "constant") and value == 0.0 and rank == len(kernel) + 2
                    and pads[0] == pads[1] == pads[rank] == pads[rank + 1] == 0):
                extra = pads[2:rank] + pads[rank + 2:]
                data = pad.input[0]
                model.graph.node.remove(pad)
        shape = _full_shape(model, data)
        if shape is None or len(shape) != len(kernel) + 2:
            continue
        channels = shape[1]
        weight = np.zeros([channels, channels, *kernel])
        for c in range(channels):
            weight[c, c] = 1.0 / float(np.prod(kernel))
        wname = _unique(model, node.output[0] + "_avg_weight")
        _set_array(model, wname, weight)
        pads_total = [a + b for a, b in zip(pool_pads or [0] * len(extra), extra)]
        conv = helper.make_node("Conv", [data, wname], list(node.output), kernel_shape=kernel,
                                strides=list(_attr(node, "strides", [1] * len(kernel))), pads=pads_total)
        index = list(model.graph.node).index(node)
        model.graph.node.remove(node)
        model.graph.node.insert(index, conv)
        count += 1
    return count


def marabou_model(path: str | Path) -> Path:
    """``path`` rewritten into operators Marabou 2.0's ONNX reader accepts (cached; the path itself when unchanged)."""
    source = Path(path)
    key = sha256_bytes(f"{_MARABOU_VERSION}|{sha256_file(source)}".encode())
    target = cache_dir("models") / f"{source.stem}-marabou-{key[:16]}.onnx"
    if target.is_file():
        return target
    original = _load(source)
    model = _load(source)
    ops = {node.op_type for node in model.graph.node}
    dynamic = any(not (d.HasField("dim_value") and d.dim_value > 0)
                  for d in _graph_input(model).type.tensor_type.shape.dim)
    if not (ops & {"Shape", "Sub", "Div", "Mul", "AveragePool", "Pad", "Gather", "Concat", "Unsqueeze"}) and not dynamic:
        return source
    _fix_batch(model)
    changes = _fold_constants(model) + _fold_input_chain(model)
    changes += _constants_as_full_shape(model) + _avgpool_as_conv(model)
    if not changes and not dynamic:
        return source
    used = {n for node in model.graph.node for n in node.input}
    for init in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(init)
    _cross_check(original, model)
    log.info("rewrote %s for Marabou's ONNX reader (%d changes): %s", source.name, changes, target)
    return _save(model, target)
