"""Torch bounds are sound (sampled points never leave them) and alpha only tightens CROWN."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vnnbridge.engine.bounds import layer_bounds, output_bounds  # noqa: E402
from vnnbridge.engine.crown import backward_bound, intermediate_bounds, optimise  # noqa: E402
from vnnbridge.engine.graph import Affine, LayerNet, Relu, load_layer_net  # noqa: E402
from vnnbridge.engine.ops import DenseOp  # noqa: E402
from vnnbridge.engine.torchnet import torch_net  # noqa: E402


def random_net(rng: np.random.Generator, widths: list[int], partial: bool = False) -> LayerNet:
    """A dense ReLU network with normal weights (every third unit passing through if ``partial``)."""
    affines, relus = [], []
    for a, b in zip(widths, widths[1:]):
        affines.append(Affine(DenseOp(rng.normal(size=(b, a))), rng.normal(size=b) * 0.5))
    for w in widths[1:-1]:
        mask = np.ones(w, dtype=bool)
        if partial:
            mask[::3] = False
        relus.append(Relu(mask))
    return LayerNet((1, widths[0]), affines, relus)


def _samples(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, n: int) -> np.ndarray:
    return np.vstack([np.where(rng.random((n, lo.size)) < 0.5, lo, hi), lo + rng.random((n, lo.size)) * (hi - lo)])


@pytest.mark.parametrize("seed", range(6))
def test_alpha_bounds_are_sound_and_at_least_crown(seed: int) -> None:
    rng = np.random.default_rng(seed)
    net = random_net(rng, [4, 10, 8, 6, 3], partial=seed % 2 == 1)
    tn = torch_net(net)
    lo = rng.uniform(-1, 0, 4)
    hi = lo + rng.uniform(0.1, 1.0, 4)
    lower, upper = intermediate_bounds(net, tn, lo, hi, iters=15)
    base = layer_bounds(net, lo, hi)
    xs = _samples(rng, lo, hi, 300)
    zs = net.pre_activations(xs)
    for k in range(len(net.relus)):
        l, u = lower[k][0].numpy(), upper[k][0].numpy()
        assert np.all(l >= base.lower[k] - 1e-12) and np.all(u <= base.upper[k] + 1e-12)  # never looser
        assert np.all(zs[k] >= l - 1e-9) and np.all(zs[k] <= u + 1e-9)
    c = rng.normal(size=(5, 3))
    tlo, thi = tn.tensor(lo)[None], tn.tensor(hi)[None]
    crown = backward_bound(tn, lower, upper, tlo, thi, tn.tensor(c)[None]).lb[0].numpy()
    best, *_ = optimise(tn, lower, upper, tlo, thi, tn.tensor(c)[None], tn.tensor(np.full(5, np.inf)),
                        None, None, None, iters=20)
    alpha = best[0].numpy()
    assert np.all(alpha >= crown - 1e-12)
    values = zs[-1] @ c.T
    assert np.all(values >= alpha - 1e-9)
    # With the numpy engine's layer bounds the torch pass is the numpy CROWN bound exactly.
    same = backward_bound(tn, [tn.tensor(v)[None] for v in base.lower], [tn.tensor(v)[None] for v in base.upper],
                          tlo, thi, tn.tensor(c)[None]).lb[0].numpy()
    np.testing.assert_allclose(same, output_bounds(net, base, c)[0], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_split_domains_with_beta_are_sound(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    net = random_net(rng, [3, 8, 8, 2])
    tn = torch_net(net)
    lo = rng.uniform(-1, 0, 3)
    hi = lo + 1.0
    lower, upper = intermediate_bounds(net, tn, lo, hi)
    # Random splits on unstable units, four domains at once.
    split = []
    for k in range(2):
        unstable = ((lower[k] < 0) & (upper[k] > 0))[0].numpy()
        s = np.where(unstable[None, :] & (rng.random((4, 8)) < 0.3), rng.choice([-1, 1], (4, 8)), 0)
        split.append(torch.as_tensor(s, dtype=torch.int8))
    c = tn.tensor(rng.normal(size=(1, 2)))[None]
    best, _, beta, _ = optimise(tn, lower, upper, tn.tensor(lo)[None], tn.tensor(hi)[None], c,
                                tn.tensor(np.full(1, np.inf)), None, split, None, iters=25)
    assert beta is not None
    xs = lo + rng.random((20000, 3)) * (hi - lo)
    zs = net.pre_activations(xs)
    y = zs[-1] @ c[0].numpy().T
    for d in range(4):
        inside = np.ones(len(xs), dtype=bool)
        for k in range(2):
            s = split[k][d].numpy()
            inside &= np.all((s[None, :] == 0) | ((s[None, :] > 0) & (zs[k] >= 0)) | ((s[None, :] < 0) & (zs[k] <= 0)),
                             axis=1)
        if inside.any():
            assert y[inside].min() >= float(best[d, 0]) - 1e-9


def test_conv_back_substitution_has_no_cap_and_is_sound(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import vnnbridge.engine.bounds as numpy_bounds

    net = load_layer_net(shared / "data/networks/mnist/mnistconvSmallRELUDiffAI.onnx")
    tn = torch_net(net)
    x = np.loadtxt(shared / "data/paper/mnist/images/0-3.csv").ravel()
    lo, hi = np.clip(x - 0.03, 0, 1), np.clip(x + 0.03, 0, 1)
    # As on a wide CNN: the numpy engine's coefficient cap leaves interval bounds everywhere.
    monkeypatch.setattr(numpy_bounds, "_CROWN_LIMIT", 0)
    base = layer_bounds(net, lo, hi)
    lower, upper = intermediate_bounds(net, tn, lo, hi)
    rng = np.random.default_rng(3)
    zs = net.pre_activations(_samples(rng, lo, hi, 20))
    width_base = width_torch = 0.0
    for k in range(len(net.relus)):
        l, u = lower[k][0].numpy(), upper[k][0].numpy()
        assert np.all(zs[k] >= l - 1e-9) and np.all(zs[k] <= u + 1e-9)
        width_base += float(np.sum(base.upper[k] - base.lower[k]))
        width_torch += float(np.sum(u - l))
    assert width_torch < width_base  # the capped layers got back-substitution


def test_float32_on_the_cpu_device_matches_float64_closely() -> None:
    rng = np.random.default_rng(5)
    net = random_net(rng, [5, 12, 12, 3])
    lo, hi = -np.ones(5) * 0.3, np.ones(5) * 0.3
    out = []
    for dtype in ("float64", "float32"):
        tn = torch_net(net, "cpu", dtype)
        lower, upper = intermediate_bounds(net, tn, lo, hi)
        c = tn.tensor(np.eye(3))[None]
        out.append(backward_bound(tn, lower, upper, tn.tensor(lo)[None], tn.tensor(hi)[None], c).lb[0].double().numpy())
    np.testing.assert_allclose(out[0], out[1], rtol=1e-4, atol=1e-4)


def test_falsify_returns_only_validated_points(shared: Path) -> None:
    from vnnbridge.engine.attack import falsify
    from vnnbridge.network import load_network
    from vnnbridge.search.base import misclassified

    onnx = shared / "data/paper/networks/mnist_784_32_10.onnx"
    x = np.loadtxt(shared / "data/paper/mnist/images/0-1.csv").ravel()
    label = load_network(onnx).predict(x)
    wide = falsify(onnx, np.clip(x - 0.3, 0, 1), np.clip(x + 0.3, 0, 1), label=label, budget=3)
    assert wide is not None and misclassified(load_network(onnx).run(wide), label)
    assert np.all(wide >= np.clip(x - 0.3, 0, 1)) and np.all(wide <= np.clip(x + 0.3, 0, 1))
    # A box far inside the certified radius (r* = 33/255 for this image) has no counterexample.
    assert falsify(onnx, np.clip(x - 0.01, 0, 1), np.clip(x + 0.01, 0, 1), label=label, budget=0.5) is None


def test_torch_threads_follow_the_harness_share(monkeypatch: pytest.MonkeyPatch) -> None:
    # compare --threads 1 sets OMP_NUM_THREADS=1 for every tool; the engine used every core anyway,
    # so two runs side by side oversubscribed a 2-core machine.
    from vnnbridge.engine.torchnet import default_threads

    monkeypatch.delenv("VNNBRIDGE_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert default_threads() == 1
    monkeypatch.setenv("VNNBRIDGE_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.delenv("VNNBRIDGE_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads() == (os.cpu_count() or 1)


def test_alpha_optimisation_stops_at_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    # One iteration on a wide conv network takes seconds: without a deadline a 30 s call ran 54 s.
    import vnnbridge.engine.crown as crown

    rng = np.random.default_rng(5)
    net = random_net(rng, [4, 10, 8, 3])
    tn = torch_net(net)
    lo = rng.uniform(-1, 0, 4)
    hi = lo + 0.5
    lower, upper = intermediate_bounds(net, tn, lo, hi)
    passes = []
    real = crown.backward_bound
    monkeypatch.setattr(crown, "backward_bound", lambda *a, **k: passes.append(1) or real(*a, **k))
    tlo, thi, c = tn.tensor(lo)[None], tn.tensor(hi)[None], tn.tensor(rng.normal(size=(2, 3)))[None]
    late, *_ = optimise(tn, lower, upper, tlo, thi, c, tn.tensor(np.full(2, np.inf)), None, None, None, iters=20,
                        deadline=0.0)
    assert len(passes) == 1  # the one pass that gives the (CROWN) bound and the branching data
    np.testing.assert_allclose(late[0].numpy(), real(tn, lower, upper, tlo, thi, c).lb[0].numpy())
    passes.clear()
    optimise(tn, lower, upper, tlo, thi, c, tn.tensor(np.full(2, np.inf)), None, None, None, iters=20)
    assert len(passes) == 21


def test_an_iteration_or_alpha_pass_that_cannot_end_before_the_deadline_is_not_begun(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # One alpha pass on a pooling layer made a 20 s call on Convnet_maxpool take 29-32 s.
    import time

    import vnnbridge.engine.crown as crown

    rng = np.random.default_rng(7)
    net = random_net(rng, [4, 12, 10, 8, 3])
    tn = torch_net(net)
    lo = rng.uniform(-1, 0, 4)
    hi = lo + 0.8
    lower, upper = intermediate_bounds(net, tn, lo, hi)
    assert tn.seconds_per_mac > 0  # measured by the back-substitution
    tight = intermediate_bounds(net, tn, lo, hi, iters=10, init=(lower, upper))
    gain = sum(float((t - l).sum()) for t, l in zip(tight[0], lower))
    assert gain > 1e-6  # the alpha pass pays on this net
    tn.seconds_per_mac = 1.0  # as if one pass took longer than the time left
    same = intermediate_bounds(net, tn, lo, hi, iters=10, init=(lower, upper), deadline=time.perf_counter() + 30)
    for a, b in zip(same[0] + same[1], lower + upper):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # Within an optimisation: an iteration that took longer than the time left is the last.
    passes = []
    real = crown.backward_bound

    def slow(*a, **k):  # type: ignore[no-untyped-def]
        passes.append(1)
        time.sleep(0.2)
        return real(*a, **k)

    monkeypatch.setattr(crown, "backward_bound", slow)
    tlo, thi, c = tn.tensor(lo)[None], tn.tensor(hi)[None], tn.tensor(rng.normal(size=(2, 3)))[None]
    optimise(tn, lower, upper, tlo, thi, c, tn.tensor(np.full(2, np.inf)), None, None, None, iters=20,
             deadline=time.perf_counter() + 0.3)
    assert len(passes) == 2  # the first iteration (0.2 s) leaves 0.1 s: the final pass follows at once
