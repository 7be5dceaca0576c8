"""Bounds are sound: no sampled point of a box leaves them (MLPs, CNNs, MaxPool's partial ReLUs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vnnbridge.engine.bounds import layer_bounds, output_bounds
from vnnbridge.engine.graph import load_layer_net

RNG = np.random.default_rng(7)

NETS = ["paper/networks/mnist_784_32_10.onnx", "networks/mnist/mnist-net_256x4.onnx",
        "networks/mnist/Convnet_maxpool.onnx", "networks/mnist/mnistconvSmallRELUDiffAI.onnx"]


def _image(shared: Path) -> np.ndarray:
    return np.loadtxt(shared / "data/paper/mnist/images/0-3.csv").ravel()


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("radius", [0.002, 0.03])
def test_samples_stay_inside_every_bound(shared: Path, name: str, radius: float) -> None:
    net = load_layer_net(shared / "data" / name)
    x = _image(shared)
    lo, hi = np.clip(x - radius, 0, 1), np.clip(x + radius, 0, 1)
    bounds = layer_bounds(net, lo, hi)
    # Corners are where linear bounds are tight; uniform points cover the inside.
    samples = np.vstack([np.where(RNG.random((40, lo.size)) < 0.5, lo, hi), lo + RNG.random((40, lo.size)) * (hi - lo)])
    zs = net.pre_activations(samples)
    slack = 1e-9
    for k, z in enumerate(zs[:-1]):
        assert np.all(z >= bounds.lower[k] - slack), f"layer {k} lower bound violated"
        assert np.all(z <= bounds.upper[k] + slack), f"layer {k} upper bound violated"
    c = RNG.normal(size=(5, net.outputs))
    lb, ymax = output_bounds(net, bounds, c)
    values = zs[-1] @ c.T
    assert np.all(values >= lb - slack)
    assert np.all(np.abs(zs[-1]) <= ymax + slack)


def test_back_substitution_is_tighter_than_intervals(shared: Path) -> None:
    net = load_layer_net(shared / "data/networks/mnist/mnist-net_256x4.onnx")
    x = _image(shared)
    lo, hi = np.clip(x - 0.01, 0, 1), np.clip(x + 0.01, 0, 1)
    tight = layer_bounds(net, lo, hi)
    loose = layer_bounds(net, lo, hi, crown=False)
    width_tight = sum(float(np.sum(u - l)) for l, u in zip(tight.lower, tight.upper))
    width_loose = sum(float(np.sum(u - l)) for l, u in zip(loose.lower, loose.upper))
    assert width_tight < 0.9 * width_loose


def test_maxpool_after_relu_keeps_dead_pixels_stable(shared: Path) -> None:
    # Pooling the raw pre-activations first (max commutes with relu) made every pair of equal
    # background pre-activations an unstable max unit: 6,962 of them at radius 1/255 on this
    # network's first pooling layer, and not even 1/255 was provable.
    net = load_layer_net(shared / "data/networks/mnist/Convnet_maxpool.onnx")
    x = _image(shared)
    lo, hi = np.clip(x - 1 / 255, 0, 1), np.clip(x + 1 / 255, 0, 1)
    bounds = layer_bounds(net, lo, hi)
    unstable = [int(np.sum(r.mask & (l < 0) & (u > 0))) for r, l, u in zip(net.relus, bounds.lower, bounds.upper)]
    assert unstable[0] < 0.05 * net.relus[0].mask.sum(), unstable
    assert all(n < 0.15 * r.mask.sum() for n, r in zip(unstable, net.relus)), unstable
    label = int(np.argmax(net.forward(x[None, :])[0]))
    c = -np.eye(net.outputs)
    c[:, label] += 1.0
    lb, _ = output_bounds(net, bounds, np.delete(c, label, 0))
    assert np.all(lb > 0), lb  # robust at 1/255 by CROWN alone
