"""`embedded` and `marabou` give the same verdicts on generated robustness queries.

For each network, the first images of its data set get their l-inf robustness radius by
bisection with the embedded oracle; queries are cubes at FACTORS times that radius (both
sides of it), in the network's input space (normalisation applied outside the graph, as
`data/manifest.json` says). Both oracles are witness-validating (`make_oracle`), so every
`sat` witness has been re-run with onnxruntime. Marabou timeouts are not verdicts and are not
compared; together the networks give well over 200 compared queries.

Factors close to 1 are left to `benchmarks/oracles.py`: Marabou needs 5-25 s there on this
machine, which would take the test far past its time budget. Networks left out (Marabou too
slow or unsound, or CNN bounds too loose) are listed in `SKIPPED` with why. The full
comparison is marked slow (about 7 minutes on two workers, nearly all of it Marabou); a
quick part runs in a few seconds.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from vnnbridge.box import Box
from vnnbridge.network import load_network
from vnnbridge.oracles.base import Query, Verdict
from vnnbridge.oracles.registry import is_available, make_oracle
from vnnbridge.oracles.witness import confirm_witness
from vnnbridge.vnnlib.model import robustness_spec

pytestmark = pytest.mark.marabou

# network -> (data set, images, radius factors, least number of compared queries). Together
# at least 200 identical verdicts; Marabou's timeouts and crashes are not compared.
AGREEMENT = {
    "paper/networks/mnist_784_32_10.onnx": ("mnist", 35, (0.25, 3.0), 63),
    "paper/networks/fmnist_784_32_10.onnx": ("fmnist", 25, (0.25, 0.5, 2.0, 4.0), 80),
    "networks/fmnist/fmnist_mlp_784-32-10.onnx": ("fmnist", 16, (0.25, 0.5, 2.0, 4.0), 58),
    "networks/fmnist/fmnist_mlp_784-128-10.onnx": ("fmnist", 3, (0.25, 4.0), 5),
}
assert sum(v[3] for v in AGREEMENT.values()) >= 200  # the issue asks for 200 identical verdicts
# The part that runs with every test run (Marabou answers these in about a second each).
QUICK = ("paper/networks/fmnist_784_32_10.onnx", "fmnist", 6, (0.25, 4.0), 10)

SKIPPED = {
    "networks/mnist/mnist-net_256x2.onnx": "Marabou needs ~40 s even at radius 0.002",
    "networks/mnist/mnist-net_256x4.onnx": "Marabou needs > 40 s per query",
    "networks/mnist/mnist-net_256x6.onnx": "Marabou needs > 40 s per query",
    "networks/fmnist/fmnist_cnn_c32-c64-fc128.onnx": "Marabou times out (30 s) at radius 0.002",
    "networks/fmnist/fmnist_cnn_c64-c128-fc128-fc128.onnx": "Marabou times out (30 s) at radius 0.002",
    "networks/mnist/Convnet_avgpool.onnx": "Marabou needs ~17 s per query (AveragePool rewritten as Conv)",
    "networks/mnist/Convnet_maxpool.onnx": "Marabou needs 7 s below and > 30 s above the radius, and the "
                                           "embedded oracle's MaxPool bounds cannot decide a quarter radius",
    "networks/mnist/mnistconvSmallRELUDiffAI.onnx": "Marabou is unsound on it (test_marabou_on_mnistconvsmall)",
}

MARABOU_TIMEOUT = 30.0


def _normalisation(shared: Path, name: str) -> tuple[float, float]:
    manifest = json.loads((shared / "data/manifest.json").read_text())["networks"]
    pre = manifest.get(name, {}).get("preprocess_outside_graph", {"mean": 0, "std": 1})
    return float(pre["mean"]), float(pre["std"])


def _radius(oracle: object, onnx: Path, x: np.ndarray, label: int, domain: Box, top: float,
            folder: Path) -> float:
    lo, hi = 0.0, top
    for _ in range(12):
        mid = (lo + hi) / 2
        verdict = oracle.check(  # type: ignore[attr-defined]
            Query.build(onnx, robustness_spec(Box.cube(x, mid, domain), label, 10), folder), 60).verdict
        if verdict is Verdict.UNSAT:
            lo = mid
        elif verdict is Verdict.SAT:
            hi = mid
        else:
            break
    return (lo + hi) / 2


@pytest.fixture(scope="module")
def marabou() -> object:
    if not is_available("marabou"):
        pytest.skip("the Marabou command is not installed")
    return make_oracle("marabou")


def _agree(shared: Path, tmp_path: Path, marabou: object, name: str, data: str, images: int,
           factors: tuple[float, ...]) -> tuple[int, set[Verdict]]:
    """Compare both oracles on the generated queries; the number compared and the verdicts seen."""
    onnx = shared / "data" / name
    mean, std = _normalisation(shared, name)
    domain = Box.from_arrays(np.full(784, (0 - mean) / std), np.full(784, (1 - mean) / std))
    runtime = load_network(onnx)
    embedded = make_oracle("embedded")
    compared, seen, wrong, failed = 0, set(), [], []
    for path in sorted((shared / f"data/paper/{data}/images").glob("*.csv"))[:images]:
        x = (np.loadtxt(path).ravel() - mean) / std
        label = runtime.predict(x)
        radius = _radius(embedded, onnx, x, label, domain, 0.5 / std, tmp_path)
        for factor in factors:
            query = Query.build(onnx, robustness_spec(Box.cube(x, radius * factor, domain), label, 10), tmp_path)
            ours = embedded.check(query, 60)
            theirs = marabou.check(query, MARABOU_TIMEOUT)  # type: ignore[attr-defined]
            where = f"{path.name} at {factor:g} x radius {radius:.5f}"
            assert ours.verdict in (Verdict.SAT, Verdict.UNSAT), f"embedded, {where}: {ours.reason}"
            for result in (ours, theirs):
                if result.verdict is Verdict.SAT:  # validated already; checked again without repair
                    confirm_witness(query, result.witness, repair=False)
            if theirs.verdict is Verdict.ERROR:
                failed.append(f"{where}: {theirs.reason[:80]}")
                continue
            if theirs.verdict not in (Verdict.SAT, Verdict.UNSAT):
                continue
            if ours.verdict is not theirs.verdict:
                # Only a proof settles a disagreement: our onnxruntime-confirmed witness refutes
                # Marabou's unsat (see test_marabou_misses_a_counterexample). The reverse would
                # be a bug of ours and fails here.
                assert ours.verdict is Verdict.SAT, f"{where}: embedded {ours.verdict}, marabou {theirs.verdict}"
                wrong.append(where)
                continue
            compared += 1
            seen.add(ours.verdict)
    if wrong:
        warnings.warn(f"{name}: Marabou said unsat next to a confirmed counterexample at {'; '.join(wrong)}")
    if failed:
        warnings.warn(f"{name}: Marabou failed at {'; '.join(failed)}")
    return compared, seen


def test_same_verdicts_as_marabou_quick(shared: Path, tmp_path: Path, marabou: object) -> None:
    name, data, images, factors, least = QUICK
    compared, seen = _agree(shared, tmp_path, marabou, name, data, images, factors)
    assert compared >= least, f"only {compared} queries compared"
    assert seen == {Verdict.SAT, Verdict.UNSAT}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(AGREEMENT))
def test_same_verdicts_as_marabou(shared: Path, tmp_path: Path, marabou: object, name: str) -> None:
    data, images, factors, least = AGREEMENT[name]
    compared, seen = _agree(shared, tmp_path, marabou, name, data, images, factors)
    assert compared >= least, f"only {compared} queries compared"
    if len(factors) > 1:
        assert seen == {Verdict.SAT, Verdict.UNSAT}


@pytest.mark.xfail(strict=True, reason="Marabou 2.0 answers unsat on mnistconvSmallRELUDiffAI at radius 0.3 "
                                      "where onnxruntime confirms the embedded oracle's counterexample")
def test_marabou_on_mnistconvsmall(shared: Path, tmp_path: Path, marabou: object) -> None:
    onnx = shared / "data/networks/mnist/mnistconvSmallRELUDiffAI.onnx"
    x = np.loadtxt(sorted((shared / "data/paper/mnist/images").glob("*.csv"))[0]).ravel()
    label = load_network(onnx).predict(x)
    unit = Box.from_arrays(np.zeros(784), np.ones(784))
    query = Query.build(onnx, robustness_spec(Box.cube(x, 0.3, unit), label, 10), tmp_path)
    ours = make_oracle("embedded").check(query, 60)
    assert ours.verdict is Verdict.SAT
    confirm_witness(query, ours.witness, repair=False)
    assert marabou.check(query, MARABOU_TIMEOUT).verdict is Verdict.SAT  # type: ignore[attr-defined]


@pytest.mark.xfail(strict=True, reason="Marabou 2.0 answers unsat on this Fashion-MNIST box although the box holds "
                                      "a counterexample that onnxruntime and Marabou's own evaluation confirm")
def test_marabou_misses_a_counterexample(shared: Path, tmp_path: Path, marabou: object) -> None:
    onnx = shared / "data/paper/networks/fmnist_784_32_10.onnx"
    x = np.loadtxt(shared / "data/paper/fmnist/images/0_4.csv").ravel()
    unit = Box.from_arrays(np.zeros(784), np.ones(784))
    query = Query.build(onnx, robustness_spec(Box.cube(x, 0.05164, unit), 0, 10), tmp_path)
    ours = make_oracle("embedded").check(query, 60)
    assert ours.verdict is Verdict.SAT
    confirm_witness(query, ours.witness, repair=False)
    assert marabou.check(query, MARABOU_TIMEOUT).verdict is Verdict.SAT  # type: ignore[attr-defined]
