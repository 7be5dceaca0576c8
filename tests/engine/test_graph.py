"""ONNX -> LayerNet: every shipped network and every supported operator match onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from vnnbridge.engine.graph import SUPPORTED_OPS, compile_onnx, load_layer_net
from vnnbridge.errors import ModelError
from vnnbridge.network import load_network

RNG = np.random.default_rng(1234)


def _networks(shared: Path) -> list[Path]:
    return sorted((shared / "data").glob("**/*.onnx"))


def _assert_matches(path: Path, inputs: int = 6, spread: float = 1.0) -> None:
    net = compile_onnx(path)
    runtime = load_network(path)
    xs = RNG.uniform(-spread, spread, size=(inputs, net.inputs))
    ours = net.forward(xs)
    theirs = np.stack([runtime.run(x) for x in xs])
    # onnxruntime computes in float32, we in float64 on the same weights.
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_every_shipped_network_compiles_and_matches_onnxruntime(shared: Path) -> None:
    paths = _networks(shared)
    assert len(paths) >= 12, "the shared networks are missing"
    for path in paths:
        _assert_matches(path)


def test_cache_returns_the_same_compiled_network(shared: Path) -> None:
    path = shared / "data/paper/networks/mnist_784_32_10.onnx"
    assert load_layer_net(path) is load_layer_net(path)


def _save(tmp_path: Path, nodes: list, inits: dict[str, np.ndarray], shape: list[int], out: str = "y",
          opset: int = 13, name: str = "m.onnx") -> Path:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [])],
        [numpy_helper.from_array(np.asarray(v, dtype=np.int64 if v.dtype.kind == "i" else np.float32), k)
         for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / name
    onnx.save(model, path)
    return path


def _w(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape).astype(np.float32)


def test_conv_batchnorm_maxpool_gemm(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], name="conv", group=2, dilations=[2, 1],
                         strides=[2, 1], pads=[0, 1, 1, 0]),
        helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"], name="bn", epsilon=1e-3),
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1]),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "gw", "gb"], ["y"], name="fc", alpha=0.5, beta=2.0, transB=0),
    ]
    c_out = 4
    probe = {"cw": _w(c_out, 1, 3, 3), "cb": _w(c_out), "g": _w(c_out), "b": _w(c_out), "m": _w(c_out),
             "v": np.abs(_w(c_out)) + 0.1}
    tmp = _save(tmp_path, nodes[:4], probe, [1, 2, 9, 8], out="p", name="probe.onnx")
    size = int(load_network(tmp).run(np.zeros(2 * 9 * 8)).size)
    path = _save(tmp_path, nodes, {**probe, "gw": _w(size, 5), "gb": _w(5)}, [1, 2, 9, 8])
    _assert_matches(path)
    net = compile_onnx(path)
    assert any(r.partial for r in net.relus), "MaxPool should become a partial ReLU"


def test_normalisation_avgpool_pad_matmul_softmax(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["s"], name="sub"),
        helper.make_node("Div", ["s", "std"], ["d"], name="div"),
        helper.make_node("Conv", ["d", "cw"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Pad", ["r", "pads", "pv"], ["pd"], name="pad", mode="constant"),
        helper.make_node("AveragePool", ["pd"], ["ap"], name="avg", kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 0, 0], count_include_pad=1),
        helper.make_node("Reshape", ["ap", "shape"], ["f"], name="reshape"),
        helper.make_node("MatMul", ["f", "mw"], ["mm"], name="matmul"),
        helper.make_node("Add", ["mm", "mb"], ["z"], name="add"),
        helper.make_node("Softmax", ["z"], ["y"], name="softmax"),
    ]
    inits = {"mean": _w(1, 1, 6, 6), "std": np.abs(_w(1)) + 0.5, "cw": _w(3, 1, 3, 3),
             "pads": np.array([0, 0, 1, 0, 0, 0, 0, 2]), "pv": np.array(0.3, dtype=np.float32),
             "shape": np.array([1, -1])}
    probe = _save(tmp_path, nodes[:6], inits, [1, 1, 6, 6], out="ap", name="probe.onnx")
    size = int(load_network(probe).run(np.zeros(36)).size)
    head = {"mw": _w(size, 4), "mb": _w(4)}
    path = _save(tmp_path, nodes, {**inits, **head}, [1, 1, 6, 6])
    net = compile_onnx(path)
    assert net.tail == "Softmax" and net.tail_node == "softmax"
    # Compare the logits: the compiled net stops before the Softmax.
    logits = _save(tmp_path, nodes[:-1], {**inits, **head}, [1, 1, 6, 6], out="z", name="logits.onnx")
    xs = RNG.uniform(0, 1, size=(5, 36))
    ours = net.forward(xs)
    runtime = load_network(logits)
    np.testing.assert_allclose(ours, np.stack([runtime.run(x) for x in xs]), rtol=1e-5, atol=1e-5)


def test_shape_gather_concat_reshape_transpose_and_friends(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Identity", ["x"], ["i"], name="id"),
        helper.make_node("Dropout", ["i"], ["dr"], name="drop"),
        helper.make_node("Transpose", ["dr"], ["t"], name="tr", perm=[0, 2, 1]),
        helper.make_node("Mul", ["t", "k"], ["mu"], name="mul"),
        helper.make_node("Sub", ["c0", "mu"], ["sb"], name="rsub"),
        helper.make_node("Shape", ["sb"], ["sh"], name="shape"),
        helper.make_node("Constant", [], ["zero"], name="const0",
                         value=numpy_helper.from_array(np.array(0, dtype=np.int64))),
        helper.make_node("Gather", ["sh", "zero"], ["n"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["n", "ax"], ["nu"], name="unsq"),
        helper.make_node("Concat", ["nu", "minus1"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["sb", "target"], ["f"], name="reshape"),
        helper.make_node("Gemm", ["f", "w"], ["g"], name="fc", transB=1),
        helper.make_node("LogSoftmax", ["g"], ["y"], name="logsoftmax"),
    ]
    inits = {"k": _w(1, 1, 3), "c0": _w(1, 4, 3), "ax": np.array([0]), "minus1": np.array([-1]), "w": _w(5, 12)}
    path = _save(tmp_path, nodes, inits, [1, 3, 4])
    net = compile_onnx(path)
    assert net.tail == "LogSoftmax"
    xs = RNG.uniform(-1, 1, size=(4, 12))
    runtime = load_network(path)
    ours = net.forward(xs)
    theirs = np.stack([runtime.run(x) for x in xs])
    # LogSoftmax shifts every logit by the same amount: compare differences.
    np.testing.assert_allclose(ours - ours[:, :1], theirs - theirs[:, :1], rtol=1e-5, atol=1e-5)


def test_global_average_pool(tmp_path: Path) -> None:
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["y"], name="gap")]
    _assert_matches(_save(tmp_path, nodes, {"w": _w(3, 2, 2, 2)}, [1, 2, 5, 5]))


def test_unsupported_operator_names_the_node(tmp_path: Path) -> None:
    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"], name="fc", transB=1),
             helper.make_node("Sigmoid", ["h"], ["y"], name="squash")]
    path = _save(tmp_path, nodes, {"w": _w(3, 4)}, [1, 4])
    with pytest.raises(ModelError, match=r"'squash' \(Sigmoid\): unsupported operator"):
        compile_onnx(path)


def test_branches_are_refused(tmp_path: Path) -> None:
    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"], name="fc", transB=1),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Add", ["h", "r"], ["y"], name="skip")]
    path = _save(tmp_path, nodes, {"w": _w(4, 4)}, [1, 4])
    with pytest.raises(ModelError, match=r"'skip' \(Add\).*sequential"):
        compile_onnx(path)


def test_division_by_the_input_is_refused(tmp_path: Path) -> None:
    nodes = [helper.make_node("Div", ["k", "x"], ["y"], name="recip")]
    path = _save(tmp_path, nodes, {"k": _w(1, 4)}, [1, 4])
    with pytest.raises(ModelError, match="recip"):
        compile_onnx(path)


def test_supported_operators_are_listed() -> None:
    for op in ("Gemm", "MatMul", "Conv", "MaxPool", "AveragePool", "BatchNormalization", "Pad", "Relu",
               "Flatten", "Reshape", "Sub", "Div", "Mul", "Add", "Identity", "Constant", "Dropout"):
        assert op in SUPPORTED_OPS
