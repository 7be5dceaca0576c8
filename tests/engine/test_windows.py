"""1-D convolutions and pooling, and MaxPool with ``ceil_mode=1``: onnxruntime's values, sound bounds, decisions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from vnnbridge.box import Box
from vnnbridge.engine.bounds import layer_bounds, output_bounds
from vnnbridge.engine.graph import compile_onnx
from vnnbridge.errors import ModelError
from vnnbridge.network import load_network
from vnnbridge.oracles.base import Query, Verdict
from vnnbridge.oracles.embedded import EmbeddedOracle
from vnnbridge.oracles.witness import confirm_witness
from vnnbridge.vnnlib.model import Case, Polytope, Spec

RNG = np.random.default_rng(2026)


def _save(tmp_path: Path, nodes: list[Any], inits: dict[str, np.ndarray], shape: list[int],
          name: str = "m.onnx", out: str = "y") -> Path:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [])],  # onnxruntime gives the shape
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / name
    onnx.save(model, path)
    return path


def _assert_matches(path: Path, shape: tuple[int, ...] | None = None) -> None:
    net = compile_onnx(path)
    runtime = load_network(path)
    xs = RNG.uniform(-2, 2, size=(8, net.inputs))
    ours = net.forward(xs)
    theirs = np.stack([runtime.run(x) for x in xs])
    # onnxruntime computes in float32, we in float64 on the same weights.
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    if shape is not None:
        assert theirs.shape[1] == int(np.prod(shape))


def _w(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape).astype(np.float32)


CONV1D = [
    {"pads": [0, 0]},
    {"pads": [1, 2], "strides": [2]},
    {"pads": [2, 0], "dilations": [2]},
    {"strides": [3], "dilations": [2], "pads": [1, 1]},
    {"auto_pad": "SAME_UPPER", "strides": [2]},
    {"auto_pad": "SAME_LOWER", "strides": [2]},
    {"auto_pad": "VALID", "strides": [2]},
    {"group": 2, "pads": [1, 1], "kernel_shape": [3]},
]


@pytest.mark.parametrize("attrs", CONV1D, ids=lambda a: ",".join(f"{k}={v}" for k, v in a.items()))
def test_conv1d_matches_onnxruntime(tmp_path: Path, attrs: dict[str, Any]) -> None:
    group = attrs.get("group", 1)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv1d", **attrs),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["y"], name="flat")]
    _assert_matches(_save(tmp_path, nodes, {"w": _w(4, 2 // group, 3), "b": _w(4)}, [1, 2, 7]))


def test_conv1d_keeps_the_rank_for_later_nodes(tmp_path: Path) -> None:
    # BatchNormalization and a 1-D MaxPool after the Conv see (1, C, L), not the 2-D view.
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv1d", pads=[1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "bb", "m", "v"], ["bn"], name="bn"),
             helper.make_node("Relu", ["bn"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2], strides=[2], ceil_mode=1),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1)]
    inits = {"w": _w(3, 1, 3), "g": _w(3), "bb": _w(3), "m": _w(3), "v": np.abs(_w(3)) + 0.1,
             "fw": _w(2, 3 * 3), "fb": _w(2)}  # L = 5 pools to 3 cells, the last one partial
    path = _save(tmp_path, nodes, inits, [1, 1, 5])
    _assert_matches(path, (2,))
    assert any(r.partial for r in compile_onnx(path).relus)


CEIL = [
    # (input shape, attributes): each has a partial last window unless noted.
    ([1, 1, 3, 3], {"kernel_shape": [2, 2], "strides": [2, 2]}),  # vnnlib-satisfactory maxpool03
    ([1, 2, 5, 4], {"kernel_shape": [3, 2], "strides": [2, 3]}),
    ([1, 1, 6, 7], {"kernel_shape": [2, 3], "strides": [3, 2], "pads": [1, 0, 0, 1]}),
    ([1, 1, 7, 5], {"kernel_shape": [2, 2], "strides": [2, 2], "dilations": [2, 1]}),
    ([1, 1, 4, 3], {"kernel_shape": [2, 2], "strides": [3, 3], "pads": [0, 0, 1, 1]}),  # extra window dropped
    ([1, 2, 5], {"kernel_shape": [2], "strides": [2]}),
    ([1, 1, 8], {"kernel_shape": [3], "strides": [3], "pads": [1, 2]}),
    ([1, 1, 5], {"kernel_shape": [3], "strides": [3], "pads": [0, 2]}),  # extra window dropped
    ([1, 1, 4, 4], {"kernel_shape": [2, 2], "strides": [2, 2]}),  # no partial window at all
    ([1, 1, 5, 5], {"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
]


@pytest.mark.parametrize("shape,attrs", CEIL, ids=[f"{s}-{a}" for s, a in CEIL])
def test_ceil_mode_maxpool_matches_onnxruntime(tmp_path: Path, shape: list[int], attrs: dict[str, Any]) -> None:
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], name="pool", ceil_mode=1, **attrs),
             helper.make_node("Flatten", ["p"], ["y"], name="flat")]
    _assert_matches(_save(tmp_path, nodes, {}, shape))


def test_partial_windows_take_only_real_cells(tmp_path: Path) -> None:
    # All inputs negative: a window that read its overhang as 0 would answer 0.
    nodes = [helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 2],
                              ceil_mode=1)]
    net = compile_onnx(_save(tmp_path, nodes, {}, [1, 1, 3, 3]))
    x = -1.0 - np.arange(9.0)
    np.testing.assert_array_equal(net.forward(x), [max(x[[0, 1, 3, 4]]), max(x[[2, 5]]), max(x[[6, 7]]), x[8]])


def test_samples_stay_inside_the_bounds(tmp_path: Path) -> None:
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv1d", pads=[1, 0], strides=[2]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[3], strides=[2], ceil_mode=1),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fw"], ["y"], name="fc", transB=1)]
    probe = compile_onnx(_save(tmp_path, nodes[:4], {"w": _w(4, 2, 3), "b": _w(4)}, [1, 2, 9], "probe.onnx", "f"))
    path = _save(tmp_path, nodes, {"w": _w(4, 2, 3), "b": _w(4), "fw": _w(3, probe.outputs)}, [1, 2, 9])
    _assert_matches(path, (3,))
    net = compile_onnx(path)
    lo, hi = -np.ones(net.inputs) * 0.5, np.ones(net.inputs)
    bounds = layer_bounds(net, lo, hi)
    samples = np.vstack([np.where(RNG.random((60, lo.size)) < 0.5, lo, hi), lo + RNG.random((60, lo.size)) * (hi - lo)])
    zs = net.pre_activations(samples)
    for k, z in enumerate(zs[:-1]):
        assert np.all(z >= bounds.lower[k] - 1e-9) and np.all(z <= bounds.upper[k] + 1e-9), f"layer {k}"
    c = np.vstack([np.eye(3), -np.eye(3)])
    lb, _ = output_bounds(net, bounds, c)
    assert np.all(zs[-1] @ c.T >= lb - 1e-9)


def test_unsupported_windows_are_model_errors(tmp_path: Path) -> None:
    avg = [helper.make_node("AveragePool", ["x"], ["y"], name="avg", kernel_shape=[2, 2], strides=[2, 2],
                            ceil_mode=1)]
    with pytest.raises(ModelError, match=r"'avg' \(AveragePool\): ceil_mode=1 with a partial last window"):
        compile_onnx(_save(tmp_path, avg, {}, [1, 1, 3, 3], "avg.onnx"))
    # A ceil_mode window that onnxruntime drops is no partial window: the AveragePool is fine.
    dropped = [helper.make_node("AveragePool", ["x"], ["y"], name="avg", kernel_shape=[3], strides=[3],
                                pads=[0, 2], ceil_mode=1)]
    _assert_matches(_save(tmp_path, dropped, {}, [1, 1, 5], "dropped.onnx"), (2,))
    conv3d = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv3d")]
    with pytest.raises(ModelError, match=r"'conv3d' \(Conv\): only 1-D and 2-D convolutions"):
        compile_onnx(_save(tmp_path, conv3d, {"w": _w(1, 1, 2, 2, 2)}, [1, 1, 3, 3, 3], "conv3d.onnx"))
    mixed = [helper.make_node("Conv", ["x", "w"], ["y"], name="mixed")]
    with pytest.raises(ModelError, match=r"'mixed' \(Conv\): weights of shape"):
        compile_onnx(_save(tmp_path, mixed, {"w": _w(1, 1, 2, 2)}, [1, 1, 5], "mixed.onnx"))
    empty = [helper.make_node("MaxPool", ["x"], ["y"], name="wide", kernel_shape=[4])]
    with pytest.raises(ModelError, match=r"'wide' \(MaxPool\): the window is larger than the padded input"):
        compile_onnx(_save(tmp_path, empty, {}, [1, 1, 3], "wide.onnx"))


# -- decisions ------------------------------------------------------------------------------------

def _decide(path: Path, tmp_path: Path, box: Box, a: np.ndarray, b: np.ndarray, outputs: int) -> Verdict:
    """The embedded oracle's verdict on 'some x in box has a @ y <= b', without the attack."""
    spec = Spec(box.dim, outputs, (Case(box, (Polytope.from_arrays(a, b),)),))
    query = Query.build(path, spec, tmp_path)
    result = EmbeddedOracle(restarts=1, steps=0).check(query, 30)
    if result.verdict is Verdict.SAT:
        confirm_witness(query, result.witness, repair=False)
    return result.verdict


def test_conv1d_decisions(tmp_path: Path) -> None:
    # vnnlib-satisfactory conv06: Y = windows of three of X, X in [0, 1]^5.
    conv = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv1d", pads=[0, 0])]
    path = _save(tmp_path, conv, {"w": np.ones((1, 1, 3))}, [1, 1, 5])
    box = Box.from_arrays(np.zeros(5), np.ones(5))
    first = np.array([[-1.0, 0.0, 0.0]])
    assert _decide(path, tmp_path, box, first, np.array([-4.0]), 3) is Verdict.UNSAT  # Y0 >= 4
    assert _decide(path, tmp_path, box, first, np.array([-2.5]), 3) is Verdict.SAT  # Y0 >= 2.5
    # Y0 - Y2 = x0 + x1 - x3 - x4 reaches 2 and no more.
    spread = np.array([[-1.0, 0.0, 1.0]])
    assert _decide(path, tmp_path, box, spread, np.array([-1.9]), 3) is Verdict.SAT
    assert _decide(path, tmp_path, box, spread, np.array([-2.1]), 3) is Verdict.UNSAT


def test_ceil_mode_maxpool_decisions(tmp_path: Path) -> None:
    # vnnlib-satisfactory maxpool03, with every input negative: the last window is x[2, 2] alone.
    pool = [helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 2],
                             ceil_mode=1)]
    path = _save(tmp_path, pool, {}, [1, 1, 3, 3])
    lo, hi = np.full(9, -10.0), np.full(9, -7.0)
    lo[8], hi[8] = -6.0, -5.0
    box = Box.from_arrays(lo, hi)
    last = np.array([[0.0, 0.0, 0.0, -1.0]])
    assert _decide(path, tmp_path, box, last, np.array([4.5]), 4) is Verdict.UNSAT  # Y[1, 1] >= -4.5
    assert _decide(path, tmp_path, box, -last, np.array([-5.5]), 4) is Verdict.SAT  # Y[1, 1] <= -5.5
    # Y[0, 1] - Y[1, 1] = max(x02, x12) - x22 lies in [-5, -1]: a max needs the MILP's case split.
    diff = np.array([[0.0, -1.0, 0.0, 1.0]])
    assert _decide(path, tmp_path, box, diff, np.array([0.9]), 4) is Verdict.UNSAT  # >= -0.9
    assert _decide(path, tmp_path, box, diff, np.array([1.1]), 4) is Verdict.SAT  # >= -1.1
