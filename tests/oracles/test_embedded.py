"""The embedded oracle: sound (never unsat next to a real counterexample), complete, and strict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from vnnbridge.box import Box
from vnnbridge.engine.graph import compile_onnx
from vnnbridge.errors import InputError, ModelError
from vnnbridge.network import load_network
from vnnbridge.oracles.base import Query, Verdict
from vnnbridge.oracles.embedded import EmbeddedOracle
from vnnbridge.oracles.registry import make_oracle
from vnnbridge.oracles.witness import confirm_witness
from vnnbridge.vnnlib.model import Case, Polytope, Spec, membership_spec, robustness_spec

PAPER = ["mnist", "fmnist"]
UNIT = Box.from_arrays(np.zeros(784), np.ones(784))


def _paper(shared: Path, data: str) -> tuple[Path, list[np.ndarray]]:
    onnx_path = shared / f"data/paper/networks/{data}_784_32_10.onnx"
    images = [np.loadtxt(p).ravel() for p in sorted((shared / f"data/paper/{data}/images").glob("*.csv"))[:12]]
    return onnx_path, images


def _query(onnx_path: Path, spec: Spec, tmp_path: Path) -> Query:
    return Query.build(onnx_path, spec, tmp_path)


def _violated_somewhere(net: object, spec: Spec, box: Box, rng: np.random.Generator, n: int) -> bool:
    lo, hi = box.arrays()
    pts = np.vstack([lo + rng.random((n, lo.size)) * (hi - lo), np.where(rng.random((n, lo.size)) < 0.5, lo, hi)])
    return any(spec.violated_by(x, net.run(x)) for x in pts)  # type: ignore[attr-defined]


def test_registry_builds_it() -> None:
    oracle = make_oracle("embedded")
    assert oracle.name == "embedded"
    assert "vnnbridge" in oracle.version()


@pytest.mark.parametrize("data", PAPER)
def test_never_unsat_where_a_sampled_point_violates(shared: Path, tmp_path: Path, data: str) -> None:
    onnx_path, images = _paper(shared, data)
    runtime = load_network(onnx_path)
    oracle = make_oracle("embedded")
    rng = np.random.default_rng(11)
    seen = {Verdict.SAT: 0, Verdict.UNSAT: 0}
    for _ in range(40):
        x = images[int(rng.integers(len(images)))]
        label = runtime.predict(x)
        box = Box.cube(x, float(rng.choice([0.01, 0.05, 0.1, 0.2, 0.4])), UNIT)
        spec = robustness_spec(box, label, 10)
        result = oracle.check(_query(onnx_path, spec, tmp_path), 30)
        assert result.verdict in (Verdict.SAT, Verdict.UNSAT), result.reason
        seen[result.verdict] += 1
        if result.verdict is Verdict.UNSAT:
            assert not _violated_somewhere(runtime, spec, box, rng, 30)
        else:
            confirm_witness(_query(onnx_path, spec, tmp_path), result.witness, repair=False)
    assert seen[Verdict.SAT] and seen[Verdict.UNSAT], seen


def _tiny_mlp(tmp_path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    w1, b1 = rng.normal(size=(2, 12)).astype(np.float32), rng.normal(size=12).astype(np.float32)
    w2, b2 = rng.normal(size=(12, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
             helper.make_node("Add", ["h", "b1"], ["hb"], name="bias1"),
             helper.make_node("Relu", ["hb"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="fc2")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
                              [numpy_helper.from_array(v, k) for k, v in
                               {"w1": w1, "b1": b1, "w2": w2, "b2": b2}.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / f"tiny{seed}.onnx"
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("engine", ["milp", "bab", "bab-relu"])
def test_complete_on_a_two_input_network(tmp_path: Path, seed: int, engine: str) -> None:
    from vnnbridge.engine.bab import BabOptions

    path = _tiny_mlp(tmp_path, seed)
    runtime = load_network(path)
    exact = compile_onnx(path)
    # No attack: the decision must come from the MILP, or from branch and bound on torch bounds
    # (two inputs: on the input box by default, on ReLU phases with input splitting off).
    if engine == "bab-relu":
        oracle = EmbeddedOracle(restarts=1, steps=0, engine="bab", bab=BabOptions(input_split=0))
    else:
        oracle = EmbeddedOracle(restarts=1, steps=0, engine=engine)
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(np.linspace(0, 1, 161), np.linspace(0, 1, 161)), -1).reshape(-1, 2)
    decided = 0
    for _ in range(12):
        centre = rng.uniform(-2, 2, 2)
        radius = float(rng.uniform(0.05, 1.0))
        box = Box.from_arrays(centre - radius, centre + radius)
        label = runtime.predict(centre)
        spec = robustness_spec(box, label, 3)
        pts = centre - radius + grid * 2 * radius
        values = exact.forward(pts)  # the float64 network on the float32 weights
        others = np.delete(values, label, axis=1).max(axis=1)
        gap = values[:, label] - others  # > 0: robust at that point
        result = oracle.check(_query(path, spec, tmp_path), 30)
        if gap.min() <= 0:
            assert result.verdict is Verdict.SAT
        elif gap.min() > 0.05:  # a clear margin on a fine grid: the box is robust
            assert result.verdict is Verdict.UNSAT, result.reason
            decided += 1
        if result.verdict is Verdict.SAT:
            confirm_witness(_query(path, spec, tmp_path), result.witness, repair=False)
            decided += 1
    assert decided >= 6


def test_membership_and_several_cases(shared: Path, tmp_path: Path) -> None:
    onnx_path, images = _paper(shared, "mnist")
    runtime = load_network(onnx_path)
    x = images[0]
    label = runtime.predict(x)
    oracle = make_oracle("embedded")
    # The image itself is a member of its class.
    member = membership_spec(Box.cube(x, 0.01, UNIT), label, 10)
    assert oracle.check(_query(onnx_path, member, tmp_path), 30).verdict is Verdict.SAT
    # No input near it reaches a class far from it by 1000 logits.
    far = Polytope.from_arrays(np.eye(10)[[label]] * -1.0, np.array([-1000.0]))
    cases = tuple(Case(Box.cube(images[i], 0.02, UNIT), (far,)) for i in range(3))
    assert oracle.check(_query(onnx_path, Spec(784, 10, cases), tmp_path), 30).verdict is Verdict.UNSAT
    # ... but one case of several holds a counterexample: sat, with a witness in that case's box.
    near = Polytope.from_arrays(np.eye(10)[[label]], np.array([1000.0]))
    mixed = Spec(784, 10, (Case(Box.cube(images[1], 0.02, UNIT), (far,)), Case(Box.cube(x, 0.02, UNIT), (near,))))
    result = oracle.check(_query(onnx_path, mixed, tmp_path), 30)
    assert result.verdict is Verdict.SAT
    assert mixed.cases[1].box.contains(result.witness)


def _identity_net(tmp_path: Path) -> Path:
    nodes = [helper.make_node("Gemm", ["x", "w"], ["y"], name="id", transB=1)]
    graph = helper.make_graph(nodes, "ident", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                              [numpy_helper.from_array(np.eye(2, dtype=np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "identity.onnx"
    onnx.save(model, path)
    return path


def test_no_unsat_inside_the_tolerance_band(tmp_path: Path) -> None:
    path = _identity_net(tmp_path)
    oracle = make_oracle("embedded")
    box = Box.from_arrays([0.0, 0.0], [0.25, 0.25])
    # y0 - y1 >= -0.25 on the box; the row y0 - y1 <= -0.25 - delta is unreachable by delta.
    def verdict(delta: float) -> Verdict:
        spec = Spec(2, 2, (Case(box, (Polytope.from_arrays(np.array([[1.0, -1.0]]), np.array([-0.25 - delta])),)),))
        return oracle.check(_query(path, spec, tmp_path), 10).verdict
    assert verdict(0.0) is Verdict.SAT  # touching counts (ties are counterexamples)
    assert verdict(1e-9) is Verdict.UNKNOWN  # exactly unreachable, but within the tolerance
    assert verdict(1e-2) is Verdict.UNSAT


def test_softmax_tail_is_ignored_only_for_invariant_properties(tmp_path: Path) -> None:
    nodes = [helper.make_node("Gemm", ["x", "w"], ["z"], name="fc", transB=1),
             helper.make_node("Softmax", ["z"], ["y"], name="probabilities")]
    graph = helper.make_graph(nodes, "sm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                              [numpy_helper.from_array(np.array([[2.0, 0.0], [0.0, 1.0]], np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "softmax.onnx"
    onnx.save(model, path)
    oracle = make_oracle("embedded")
    box = Box.from_arrays([1.0, 0.0], [1.1, 0.5])  # logits (2x0, x1): class 0 everywhere
    assert oracle.check(_query(path, robustness_spec(box, 0, 2), tmp_path), 10).verdict is Verdict.UNSAT
    wide = Box.from_arrays([0.0, 0.0], [1.0, 1.0])
    result = oracle.check(_query(path, robustness_spec(wide, 0, 2), tmp_path), 10)
    assert result.verdict is Verdict.SAT
    threshold = Spec(2, 2, (Case(box, (Polytope.from_arrays(np.array([[1.0, 0.0]]), np.array([0.9])),)),))
    with pytest.raises(ModelError, match="probabilities"):
        oracle.check(_query(path, threshold, tmp_path), 10)


def test_unsupported_operator_is_a_model_error(tmp_path: Path) -> None:
    nodes = [helper.make_node("Gemm", ["x", "w"], ["z"], name="fc", transB=1),
             helper.make_node("Tanh", ["z"], ["y"], name="squash")]
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                              [numpy_helper.from_array(np.eye(2, dtype=np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "tanh.onnx"
    onnx.save(model, path)
    spec = robustness_spec(Box.from_arrays([0, 0], [1, 1]), 0, 2)
    with pytest.raises(ModelError, match=r"'squash' \(Tanh\)"):
        make_oracle("embedded").check(_query(path, spec, tmp_path), 10)


def test_bad_options_are_input_errors() -> None:
    with pytest.raises(InputError):
        EmbeddedOracle(restarts=0)
    with pytest.raises(InputError):
        EmbeddedOracle(method="simplex")


def test_zero_timeout_still_answers(shared: Path, tmp_path: Path) -> None:
    # A zero budget keeps what costs nothing (the bound screen proves a small radius) and answers
    # `timeout` at once where the MILP is needed: it never guesses and never overruns.
    onnx_path, images = _paper(shared, "mnist")
    label = load_network(onnx_path).predict(images[2])
    oracle = make_oracle("embedded")

    def query(radius: float) -> Query:
        return _query(onnx_path, robustness_spec(Box.cube(images[2], radius, UNIT), label, 10), tmp_path)

    easy = oracle.check(query(0.02), 0)
    assert easy.verdict is Verdict.UNSAT, easy.reason
    hard = query(0.08)  # unsat, but only the MILP proves it
    assert oracle.check(hard, 60).verdict is Verdict.UNSAT
    zero = oracle.check(hard, 0)
    assert zero.verdict is Verdict.TIMEOUT and "time" in zero.reason
    assert zero.seconds < 5.0  # a deadline already past is noticed before any long work (~0.03 s here)


CNNS = ["networks/mnist/Convnet_maxpool.onnx", "networks/mnist/Convnet_avgpool.onnx",
        "networks/mnist/mnistconvSmallRELUDiffAI.onnx", "networks/fmnist/fmnist_cnn_c32-c64-fc128.onnx",
        "networks/fmnist/fmnist_cnn_c64-c128-fc128-fc128.onnx"]


@pytest.mark.parametrize("name", CNNS)
def test_cnns_are_decided(shared: Path, tmp_path: Path, name: str) -> None:
    path = shared / "data" / name
    data = "fmnist" if "fmnist" in name else "mnist"
    x = np.loadtxt(sorted((shared / f"data/paper/{data}/images").glob("*.csv"))[0]).ravel()
    runtime = load_network(path)
    label = runtime.predict(x)
    oracle = make_oracle("embedded")
    # Small radii only: MaxPool's ReLU encoding makes the bounds of the larger CNNs loose.
    small = oracle.check(_query(path, robustness_spec(Box.cube(x, 1e-4, UNIT), label, 10), tmp_path), 60)
    assert small.verdict is Verdict.UNSAT, small.reason
    large = oracle.check(_query(path, robustness_spec(Box.cube(x, 0.5, UNIT), label, 10), tmp_path), 60)
    assert large.verdict is Verdict.SAT, large.reason


def test_a_polytope_without_rows_is_met_everywhere(tmp_path: Path) -> None:
    path = _identity_net(tmp_path)
    box = Box.from_arrays([0.0, 0.0], [0.25, 0.25])
    spec = Spec(2, 2, (Case(box, (Polytope((), ()),)),))
    result = make_oracle("embedded").check(_query(path, spec, tmp_path), 10)
    assert result.verdict is Verdict.SAT and box.contains(result.witness)


@pytest.mark.parametrize("input_split", [8, 0])  # two inputs: the input box is split, or ReLU phases
def test_branch_and_bound_keeps_the_tolerance_band(tmp_path: Path, input_split: int) -> None:
    from vnnbridge.engine.bab import BabOptions

    # y = relu(x) - relu(-x) = x, through four unstable ReLUs on the box [-0.25, 0.25]^2.
    w1 = np.array([[1, -1, 0, 0], [0, 0, 1, -1]], dtype=np.float32)
    w2 = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]], dtype=np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"), helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2")]
    graph = helper.make_graph(nodes, "twin", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                              [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "twin.onnx"
    onnx.save(model, path)
    oracle = make_oracle("embedded", engine="bab", bab=BabOptions(input_split=input_split))
    box = Box.from_arrays([-0.25, -0.25], [0.25, 0.25])

    def verdict(delta: float) -> Verdict:
        spec = Spec(2, 2, (Case(box, (Polytope.from_arrays(np.array([[1.0, -1.0]]), np.array([-0.5 - delta])),)),))
        return oracle.check(_query(path, spec, tmp_path), 20).verdict

    assert verdict(0.0) is Verdict.SAT
    assert verdict(1e-9) is Verdict.UNKNOWN  # unreachable by 1e-9 only: inside the band, never unsat
    assert verdict(1e-2) is Verdict.UNSAT
