"""Derived models: softmax removal, outside normalisation composed in, Marabou-readable rewrites."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from vnnbridge.errors import InputError
from vnnbridge.network import load_network, marabou_model, prepare_model

NETS = Path("data") / "networks"


def _ops(path: Path) -> list[str]:
    return [node.op_type for node in onnx.load(str(path)).graph.node]


def _points(n: int, k: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.random(n) for _ in range(k)]


@pytest.mark.parametrize(("mean", "std"), [(0.5, 0.5), (0.1307, 0.3081)])
def test_fmnist_mlp_normalisation_is_folded_and_equal(shared: Path, mean: float, std: float) -> None:
    source = shared / NETS / "fmnist" / "fmnist_mlp_784-32-10.onnx"
    derived = prepare_model(source, mean, std)
    assert derived != source and derived.parent.name == "models"  # in the cache, not beside the input
    assert _ops(derived).count("Gemm") == 2 and "Mul" not in _ops(derived)  # folded, no extra node
    a, b = load_network(source), load_network(derived)
    for x in _points(784):
        assert np.allclose(b.run(x), a.run((x - mean) / std), atol=1e-5)
    assert prepare_model(source, mean, std) == derived  # cached by hash


def test_padded_conv_gets_a_1x1_conv_in_front(shared: Path) -> None:
    source = shared / NETS / "fmnist" / "fmnist_cnn_c64-c128-fc128-fc128.onnx"
    derived = prepare_model(source, 0.5, 0.5)
    assert _ops(derived)[:2] == ["Conv", "Conv"]
    a, b = load_network(source), load_network(derived)
    for x in _points(784, 2):
        assert np.allclose(b.run(x), a.run((x - 0.5) / 0.5), atol=1e-5)


def test_nothing_to_do_returns_the_model_itself(shared: Path) -> None:
    source = shared / NETS / "mnist" / "mnist-net_256x2.onnx"
    assert prepare_model(source) == source
    assert prepare_model(source, 0.0, 1.0) == source


def _softmax_net(tmp_path: Path, op: str) -> Path:
    w = numpy_helper.from_array(np.array([[1.0, -2.0, 0.5], [0.3, 0.2, -1.0]], dtype=np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["z"]), helper.make_node(op, ["z"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])], [w])
    path = tmp_path / f"with {op}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_final_softmax_is_removed_and_logits_kept(tmp_path: Path, op: str) -> None:
    source = _softmax_net(tmp_path, op)
    derived = prepare_model(source)
    assert _ops(derived) == ["MatMul"]
    assert not any(p.name != source.name for p in tmp_path.iterdir())  # nothing written beside the input
    x = np.array([0.3, -0.7])
    logits = load_network(derived).run(x)
    assert np.allclose(logits, x @ np.array([[1.0, -2.0, 0.5], [0.3, 0.2, -1.0]]), atol=1e-6)
    assert np.argmax(logits) == np.argmax(load_network(source).run(x))


@pytest.mark.parametrize(("mean", "std", "message"), [
    ([0.1, 0.2], 1.0, "--mean has 2 values"),
    (0.0, 0.0, "--std must not be zero"),
    (float("nan"), 1.0, "--mean needs finite numbers"),
])
def test_bad_normalisation_is_an_input_error(shared: Path, mean, std, message: str) -> None:
    with pytest.raises(InputError, match=message):
        prepare_model(shared / NETS / "fmnist" / "fmnist_mlp_784-32-10.onnx", mean, std)


@pytest.mark.parametrize(("name", "gone"), [
    ("mnist/mnistconvSmallRELUDiffAI.onnx", {"Sub", "Div"}),
    ("mnist/Convnet_avgpool.onnx", {"Pad", "AveragePool"}),
    ("fmnist/fmnist_cnn_c32-c64-fc128.onnx", {"Shape", "Gather", "Concat", "Unsqueeze"}),
])
def test_marabou_model_drops_what_marabou_cannot_read(shared: Path, name: str, gone: set[str]) -> None:
    source = shared / NETS / name
    derived = marabou_model(source)
    assert gone & set(_ops(source)) == gone and not gone & set(_ops(derived))
    a, b = load_network(source), load_network(derived)
    for x in _points(784, 3):
        assert np.allclose(b.run(x), a.run(x), atol=1e-4)


def test_marabou_model_of_a_plain_mlp_is_itself(shared: Path) -> None:
    source = shared / NETS / "mnist" / "mnist-net_256x2.onnx"
    assert marabou_model(source) == source
