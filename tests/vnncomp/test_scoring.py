"""The scorer-like witness check: box tolerance 1e-4, output match rtol 1e-3, property violated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vnnbridge.box import Box
from vnnbridge.inputs import load_input
from vnnbridge.network import load_network
from vnnbridge.vnncomp.scoring import SCORER_ATOL, check_counterexample
from vnnbridge.vnnlib.model import robustness_spec


@pytest.fixture(scope="module")
def net_and_image(shared: Path):  # type: ignore[no-untyped-def]
    net = load_network(shared / "data/paper/networks/mnist_784_32_10.onnx")
    images = sorted((shared / "data/paper/mnist/images").glob("*.csv"))
    x = load_input(images[0]).x
    # Another image the network puts in a different class: a counterexample in the whole domain.
    other = next(p for p in (load_input(i).x for i in images) if net.predict(p) != net.predict(x))
    return net, x, other


def test_valid_witness_accepted_and_bogus_rejected(net_and_image) -> None:  # type: ignore[no-untyped-def]
    net, x, p = net_and_image
    label = net.predict(x)
    spec = robustness_spec(Box.cube(x, 1.0, Box.from_arrays(np.zeros(x.size), np.ones(x.size))), label, 10)
    good = check_counterexample(net, spec, p, net.run(p))
    assert good.ok, good.reason
    # The centre is classified correctly: not a counterexample.
    centre = check_counterexample(net, spec, x, net.run(x))
    assert not centre.ok and "does not violate" in centre.reason
    # Outputs that do not match onnxruntime are rejected even if the point is a counterexample.
    off = check_counterexample(net, spec, p, net.run(p) * 1.01 + 0.1)
    assert not off.ok and "differ from onnxruntime" in off.reason
    # Slightly outside the box: within the scorer's tolerance is fine, beyond is not.
    i = int(np.argmin(p))  # a background pixel at 0, the domain's lower bound
    inside = p.copy()
    inside[i] = -SCORER_ATOL / 2
    outside = p.copy()
    outside[i] = -10 * SCORER_ATOL
    assert check_counterexample(net, spec, inside).ok
    assert "outside every input box" in check_counterexample(net, spec, outside).reason
    assert "inputs" in check_counterexample(net, spec, p[:-1]).reason
