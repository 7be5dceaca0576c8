"""Packed back-substitution rows (several conv/pooling units per row) give one-row-per-unit bounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

import vnnbridge.engine.crown as crown  # noqa: E402
from vnnbridge.engine.graph import Affine, LayerNet, Relu, load_layer_net  # noqa: E402
from vnnbridge.engine.ops import ChainOp, ConvOp, DenseOp, SparseOp  # noqa: E402
from vnnbridge.engine.packing import pack  # noqa: E402
from vnnbridge.engine.torchnet import torch_net  # noqa: E402


def conv_net(rng: np.random.Generator, pads: tuple[int, int, int, int], stride: int, group: int) -> LayerNet:
    """conv -> relu -> (pairwise differences, as the MaxPool algebra) -> partial relu -> conv -> relu -> dense."""
    c1 = ConvOp(rng.normal(size=(4, 2, 3, 3)), (2, 10, 9), (stride, stride), pads, (1, 1), 1)
    n1 = c1.out_size
    # Every even unit minus its right neighbour; odd units pass through (like max(a, b) = b + relu(a - b)).
    m = sp.lil_array((n1, n1))
    for i in range(n1):
        m[i, i] = 1.0
        if i % 2 == 0 and i + 1 < n1:
            m[i, i + 1] = -1.0
    mask = np.arange(n1) % 2 == 0
    c2 = ConvOp(rng.normal(size=(4, 4 // group, 2, 2)), c1.out_shape, (1, 1), (0, 1, 1, 0), (1, 1), group)
    affines = [Affine(c1, rng.normal(size=n1) * 0.3), Affine(SparseOp(m.tocsr()), np.zeros(n1)),
               Affine(ChainOp((SparseOp(sp.identity(n1, format="csr")), c2)), rng.normal(size=c2.out_size) * 0.3),
               Affine(DenseOp(rng.normal(size=(3, c2.out_size))), np.zeros(3))]
    relus = [Relu(np.ones(n1, dtype=bool)), Relu(mask), Relu(np.ones(c2.out_size, dtype=bool))]
    return LayerNet((1, 2, 10, 9), affines, relus)


def _bounds(net: LayerNet, lo: np.ndarray, hi: np.ndarray, packed: bool, monkeypatch: pytest.MonkeyPatch
            ) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    used = []

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        got = pack(*args, **kwargs) if packed else None
        used.append(got is not None)
        return got

    monkeypatch.setattr(crown, "pack", spy)
    net._cache.clear()
    lower, upper = crown.intermediate_bounds(net, torch_net(net), lo, hi)
    return [v[0].numpy() for v in lower], [v[0].numpy() for v in upper], sum(used)


@pytest.mark.parametrize("seed,pads,stride,group", [(0, (1, 1, 1, 1), 1, 1), (1, (0, 2, 1, 0), 2, 2),
                                                     (2, (0, 0, 0, 0), 1, 4)])
def test_packed_rows_give_the_bounds_of_one_row_per_unit(seed: int, pads: tuple[int, int, int, int], stride: int,
                                                         group: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(seed)
    net = conv_net(rng, pads, stride, group)
    x = rng.uniform(0.2, 0.8, net.inputs)
    lo, hi = x - 0.15, x + 0.15
    l1, u1, n1 = _bounds(net, lo, hi, False, monkeypatch)
    l2, u2, n2 = _bounds(net, lo, hi, True, monkeypatch)
    assert n1 == 0 and n2 >= 1  # the control ran unpacked; the packed run packed some layer
    for a, b, c, d in zip(l1, l2, u1, u2):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(c, d, rtol=1e-9, atol=1e-9)
    zs = net.pre_activations(lo + rng.random((200, lo.size)) * (hi - lo))
    for k in range(len(net.relus)):
        assert np.all(zs[k] >= l2[k] - 1e-9) and np.all(zs[k] <= u2[k] + 1e-9)


def test_the_units_of_a_packed_row_have_disjoint_windows_at_every_level() -> None:
    net = conv_net(np.random.default_rng(4), (1, 1, 1, 1), 1, 1)
    packing = pack(net, 2, np.arange(net.widths[2]))
    assert packing is not None and packing.rows < net.widths[2] / 2
    for row in packing.table:
        members = row[row >= 0]
        for w in packing.windows:
            assert w[members].sum(axis=0).max() <= 1  # no position shared by two units of the row
    assert sorted(packing.index[packing.table[packing.table >= 0]]) == list(range(net.widths[2]))


def test_cached_windows_and_input_colouring_pack_as_computing_everything_per_call(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import vnnbridge.engine.packing as packing

    cached = conv_net(np.random.default_rng(6), (1, 1, 1, 1), 1, 1)
    units = np.sort(np.random.default_rng(7).choice(cached.widths[2], 60, replace=False))
    pack(cached, 2, units[::2])  # fills the cache with every unit's windows
    assert any(key.startswith("windows:2") and cached._cache[key] for key in cached._cache)
    fast = pack(cached, 2, units)
    monkeypatch.setattr(packing, "_CACHE_ENTRIES", 0)
    monkeypatch.setattr(packing, "_input_decides", lambda net, k: False)  # colour on every level's windows
    fresh = conv_net(np.random.default_rng(6), (1, 1, 1, 1), 1, 1)
    slow = pack(fresh, 2, units)
    assert fast is not None and slow is not None
    np.testing.assert_array_equal(fast.table, slow.table)
    for a, b in zip(fast.windows, slow.windows):
        assert (a != b).nnz == 0
    assert not any(key.startswith("windows:2") and fresh._cache[key] for key in fresh._cache)


def test_no_packing_behind_a_dense_layer() -> None:
    net = conv_net(np.random.default_rng(5), (1, 1, 1, 1), 1, 1)
    dense = LayerNet(net.input_shape, [Affine(DenseOp(np.ones((6, net.inputs))), np.zeros(6)), net.affines[-1]][:1]
                     + [Affine(DenseOp(np.ones((5, 6))), np.zeros(5)), Affine(DenseOp(np.ones((2, 5))), np.zeros(2))],
                     [Relu(np.ones(6, dtype=bool)), Relu(np.ones(5, dtype=bool))])
    assert pack(dense, 1, np.arange(5)) is None


@pytest.mark.parametrize("pads,stride,dilation,group", [((1, 1, 1, 1), 1, 1, 1), ((0, 1, 2, 0), 2, 1, 2),
                                                         ((0, 0, 0, 0), 1, 2, 1)])
def test_a_convolutions_pattern_is_its_matrix_nonzeros(pads: tuple[int, int, int, int], stride: int, dilation: int,
                                                       group: int) -> None:
    rng = np.random.default_rng(7)
    op = ConvOp(rng.normal(size=(4, 4 // group, 3, 2)), (4, 9, 8), (stride, stride), pads, (dilation, dilation), group)
    np.testing.assert_array_equal(op.pattern().toarray() > 0, np.abs(sp.csr_array(op.matrix()).toarray()) > 0)


def test_packing_on_a_real_cnn_keeps_its_bounds(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net = load_layer_net(shared / "data/networks/mnist/mnistconvSmallRELUDiffAI.onnx")
    x = np.loadtxt(shared / "data/paper/mnist/images/0-3.csv").ravel()
    lo, hi = np.clip(x - 0.02, 0, 1), np.clip(x + 0.02, 0, 1)
    l1, u1, _ = _bounds(net, lo, hi, False, monkeypatch)
    l2, u2, n2 = _bounds(net, lo, hi, True, monkeypatch)
    assert n2 >= 1
    for a, b, c, d in zip(l1, l2, u1, u2):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(c, d, rtol=1e-9, atol=1e-9)
