"""A compiled `LayerNet` on torch: the same affine maps and ReLU masks, batched and on a device.

Every operator maps batches of flat rows. ``forward(x)`` is ``x @ W.T`` and ``backward(a)`` is
``a @ W`` (one back-substitution step), each for any leading batch shape. Convolutions stay
convolutions (``conv2d`` forward, its input gradient backward), so a conv layer's
back-substitution costs a transposed convolution per row instead of a dense matrix: no cap on
the number of coefficients. Arithmetic is float64 by default, as in `vnnbridge.engine.bounds`:
the float32 weights are exact in it, and the oracle's tolerance band covers the rest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from vnnbridge.engine.graph import LayerNet
from vnnbridge.engine.ops import ChainOp, ConvOp, DenseOp, LinearOp, SparseOp

__all__ = ["TorchNet", "default_threads", "set_threads", "torch_net"]

# A sparse operator whose dense matrix has at most this many entries becomes dense (faster in
# batched matrix products than torch's sparse kernels).
_DENSE_ENTRIES = 8_000_000

_threads_set = False


def default_threads() -> int:
    """``$VNNBRIDGE_THREADS``, else ``$OMP_NUM_THREADS``, else every core.

    ``OMP_NUM_THREADS`` counts because harnesses and ``compare --threads N`` give every tool its
    share of the machine that way; ignoring it oversubscribed the cores when runs went side by side.
    """
    for name in ("VNNBRIDGE_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return os.cpu_count() or 1


def set_threads(n: int | None = None) -> None:
    """Use ``n`` torch threads (default: `default_threads`)."""
    global _threads_set
    import torch

    torch.set_num_threads(max(1, int(n if n is not None else default_threads())))
    _threads_set = True


class _Op:
    in_size: int
    out_size: int
    cost: int  # multiply-adds per row, for budgets

    def forward(self, x: Any) -> Any:
        raise NotImplementedError

    def backward(self, a: Any) -> Any:
        raise NotImplementedError

    def abs_forward(self, r: Any) -> Any:
        """``r @ |W|.T`` (an upper bound of it for chains): interval radii."""
        raise NotImplementedError


class _Dense(_Op):
    def __init__(self, w: Any) -> None:
        self.w = w
        self.out_size, self.in_size = w.shape
        self.cost = self.out_size * self.in_size

    def forward(self, x: Any) -> Any:
        return x @ self.w.T

    def backward(self, a: Any) -> Any:
        return a @ self.w

    def abs_forward(self, r: Any) -> Any:
        return r @ self.w.abs().T


class _Sparse(_Op):
    """A sparse matrix applied by gather and index_add over its nonzeros (torch's sparse
    matrix products are slow in float64 on the CPU)."""

    def __init__(self, m: sp.csr_array, torch: Any, device: str, dtype: Any) -> None:
        coo = sp.coo_array(m)
        self.out_size, self.in_size = m.shape
        self.rows = torch.from_numpy(coo.row.astype(np.int64)).to(device)
        self.cols = torch.from_numpy(coo.col.astype(np.int64)).to(device)
        self.vals = torch.from_numpy(coo.data.astype(np.float64)).to(device=device, dtype=dtype)
        self.cost = 2 * int(coo.nnz) + self.in_size + self.out_size

    @staticmethod
    def _apply(x: Any, src: Any, dst: Any, vals: Any, n_out: int) -> Any:
        lead = x.shape[:-1]
        flat = x.reshape(-1, x.shape[-1])
        out = flat.new_zeros((flat.shape[0], n_out)).index_add(1, dst, flat[:, src] * vals)
        return out.reshape(*lead, n_out)

    def forward(self, x: Any) -> Any:
        return self._apply(x, self.cols, self.rows, self.vals, self.out_size)

    def backward(self, a: Any) -> Any:
        return self._apply(a, self.rows, self.cols, self.vals, self.in_size)

    def abs_forward(self, r: Any) -> Any:
        return self._apply(r, self.cols, self.rows, self.vals.abs(), self.out_size)


class _Conv(_Op):
    def __init__(self, op: ConvOp, torch: Any, device: str, dtype: Any) -> None:
        self.op, self.torch = op, torch
        self.w = torch.from_numpy(op.weight).to(device=device, dtype=dtype)
        self.in_size, self.out_size = op.in_size, op.out_size
        self.cost = op.nnz()

    def forward(self, x: Any, w: Any = None) -> Any:
        f = self.torch.nn.functional
        lead = x.shape[:-1]
        t = x.reshape(-1, *self.op.in_shape)
        top, left, bottom, right = self.op.pads
        if any(self.op.pads):
            t = f.pad(t, (left, right, top, bottom))
        out = f.conv2d(t, self.w if w is None else w, stride=self.op.strides, dilation=self.op.dilations,
                       groups=self.op.group)
        return out.reshape(*lead, self.out_size)

    def abs_forward(self, r: Any) -> Any:
        return self.forward(r, self.w.abs())

    def backward(self, a: Any) -> Any:
        lead = a.shape[:-1]
        c, h, w = self.op.in_shape
        top, left, bottom, right = self.op.pads
        g = a.reshape(-1, *self.op.out_shape)
        size = (g.shape[0], c, h + top + bottom, w + left + right)
        x = self.torch.nn.grad.conv2d_input(size, self.w, g, stride=self.op.strides,
                                            dilation=self.op.dilations, groups=self.op.group)
        x = x[:, :, top:top + h, left:left + w]
        return x.reshape(*lead, self.in_size)


class _Chain(_Op):
    def __init__(self, ops: list[_Op]) -> None:
        self.ops = ops
        self.in_size, self.out_size = ops[0].in_size, ops[-1].out_size
        self.cost = sum(op.cost for op in ops)

    def forward(self, x: Any) -> Any:
        for op in self.ops:
            x = op.forward(x)
        return x

    def backward(self, a: Any) -> Any:
        for op in reversed(self.ops):
            a = op.backward(a)
        return a

    def abs_forward(self, r: Any) -> Any:
        for op in self.ops:
            r = op.abs_forward(r)
        return r


def _convert(op: LinearOp, torch: Any, device: str, dtype: Any) -> _Op:
    if isinstance(op, DenseOp):
        return _Dense(torch.from_numpy(op.w).to(device=device, dtype=dtype))
    if isinstance(op, SparseOp):
        if op.in_size * op.out_size <= _DENSE_ENTRIES:
            return _Dense(torch.from_numpy(op.m.toarray()).to(device=device, dtype=dtype))
        return _Sparse(op.m, torch, device, dtype)
    if isinstance(op, ConvOp):
        return _Conv(op, torch, device, dtype)
    if isinstance(op, ChainOp):
        return _Chain([_convert(o, torch, device, dtype) for o in op.ops])
    raise TypeError(f"no torch form for {type(op).__name__}")


@dataclass(eq=False)
class TorchNet:
    """``ops[0], masks[0], ops[1], ..., ops[-1]`` with biases, as torch tensors on ``device``."""

    ops: list[_Op]
    biases: list[Any]
    masks: list[Any]  # bool per ReLU unit: False = passes through (MaxPool algebra)
    device: str
    dtype: Any
    # Seconds per multiply-add of a back-substitution pass, as last measured (0: not yet): lets an
    # optimisation whose single pass would outlast the deadline be skipped instead of started.
    seconds_per_mac: float = 0.0

    @property
    def depth(self) -> int:
        """The number of ReLU layers."""
        return len(self.masks)

    @property
    def widths(self) -> list[int]:
        """The width of every ReLU layer."""
        return [int(m.numel()) for m in self.masks]

    def back_cost(self, k: int) -> int:
        """Multiply-adds per row of a back-substitution from the input of ReLU layer ``k``
        (``k = depth``: from the output) to the input box."""
        # About forty elementwise passes per ReLU unit (relaxation, clamps, masks).
        return sum(op.cost for op in self.ops[:k + 1]) + sum(self.widths[:k]) * 40

    def forward(self, x: Any) -> Any:
        """Outputs for a batch of flat inputs (any leading shape)."""
        torch = _torch()
        for op, b, m in zip(self.ops, self.biases, self.masks):
            z = op.forward(x) + b
            x = torch.where(m, z.clamp(min=0), z)
        return self.ops[-1].forward(x) + self.biases[-1]

    def tensor(self, a: np.ndarray | Any) -> Any:
        """``a`` as a tensor of this net's dtype and device."""
        torch = _torch()
        if isinstance(a, torch.Tensor):
            return a.to(device=self.device, dtype=self.dtype)
        return torch.as_tensor(np.asarray(a, dtype=np.float64)).to(device=self.device, dtype=self.dtype)


def _torch() -> Any:
    import torch

    if not _threads_set:
        set_threads()
    return torch


def torch_net(net: LayerNet, device: str = "cpu", dtype: str = "float64") -> TorchNet:
    """The torch form of ``net`` (cached on the net per device and dtype)."""
    key = f"torch:{device}:{dtype}"
    cached = net._cache.get(key)
    if cached is not None:
        return cached
    torch = _torch()
    dt = getattr(torch, dtype)
    ops = [_convert(a.op, torch, device, dt) for a in net.affines]
    biases = [torch.from_numpy(np.array(a.bias, dtype=np.float64)).to(device=device, dtype=dt) for a in net.affines]
    masks = [torch.from_numpy(r.mask.copy()).to(device) for r in net.relus]
    tn = TorchNet(ops, biases, masks, device, dt)
    net._cache[key] = tn
    return tn
