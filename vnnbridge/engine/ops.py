"""Linear operators on flat (C-order) tensors: the affine parts of a compiled network.

Every operator maps row batches: ``forward(X)`` is ``X @ W.T`` for ``X`` of shape
``(n, in_size)``; ``backward(A)`` is ``A @ W`` (the back-substitution step of linear
bounds); ``abs_forward(R)`` is ``R @ |W|.T`` (interval radii). Dense and sparse matrices are
numpy/scipy; convolutions stay convolutions (torch, imported lazily) because their dense
matrices would not fit in memory for the larger CNNs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

__all__ = ["ChainOp", "ConvOp", "DenseOp", "LinearOp", "SparseOp", "compose", "identity_op"]

# Above this many entries a product of two matrices is kept as a chain instead of multiplied out.
_DENSE_LIMIT = 4_000_000


class LinearOp:
    """A linear map ``R^in_size -> R^out_size`` acting on batches of row vectors."""

    in_size: int
    out_size: int

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x @ W.T`` for a batch ``x`` of shape (n, in_size)."""
        raise NotImplementedError

    def backward(self, a: np.ndarray) -> np.ndarray:
        """``a @ W`` for coefficients ``a`` of shape (m, out_size)."""
        raise NotImplementedError

    def abs_forward(self, r: np.ndarray) -> np.ndarray:
        """``r @ |W|.T`` (an upper bound of it for chains), for interval radii."""
        raise NotImplementedError

    def matrix(self) -> np.ndarray | sp.csr_array:
        """The explicit matrix (dense or sparse), for the MILP."""
        raise NotImplementedError

    def pattern(self) -> sp.csr_array:
        """A 0/1 matrix whose zeros are zeros of the matrix (which outputs can depend on which
        inputs), for `vnnbridge.engine.packing`."""
        return _ones(sp.csr_array(self.matrix()))


@dataclass(eq=False)
class DenseOp(LinearOp):
    """A dense weight matrix ``W`` of shape (out, in)."""

    w: np.ndarray
    _abs: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.w = np.ascontiguousarray(self.w, dtype=np.float64)
        self.out_size, self.in_size = self.w.shape
        self._wt = np.ascontiguousarray(self.w.T)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x @ W.T``."""
        return x @ self._wt

    def backward(self, a: np.ndarray) -> np.ndarray:
        """``a @ W``."""
        return a @ self.w

    def abs_forward(self, r: np.ndarray) -> np.ndarray:
        """``r @ |W|.T``."""
        if self._abs is None:
            self._abs = np.ascontiguousarray(np.abs(self._wt))
        return r @ self._abs

    def matrix(self) -> np.ndarray:
        """The weight matrix."""
        return self.w


@dataclass(eq=False)
class SparseOp(LinearOp):
    """A sparse matrix (selections, pooling, padding, elementwise scaling)."""

    m: Any

    def __post_init__(self) -> None:
        self.m = sp.csr_array(self.m, dtype=np.float64)
        self.out_size, self.in_size = self.m.shape
        self._mt = sp.csr_array(self.m.T)
        self._abs = abs(self.m)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x @ M.T``."""
        return np.asarray((self.m @ x.T).T)

    def backward(self, a: np.ndarray) -> np.ndarray:
        """``a @ M``."""
        return np.asarray((self._mt @ a.T).T)

    def abs_forward(self, r: np.ndarray) -> np.ndarray:
        """``r @ |M|.T``."""
        return np.asarray((self._abs @ r.T).T)

    def matrix(self) -> sp.csr_array:
        """The sparse matrix."""
        return self.m

    def diagonal(self) -> np.ndarray | None:
        """The diagonal when the matrix is square and diagonal, else None."""
        if self.in_size != self.out_size:
            return None
        coo = self.m.tocoo()
        if np.all(coo.row == coo.col):
            d = np.zeros(self.in_size)
            d[coo.row] = coo.data
            return d
        return None


def _torch() -> Any:
    # The thread count is set once by `vnnbridge.engine.torchnet.set_threads` (``$VNNBRIDGE_THREADS``,
    # else ``$OMP_NUM_THREADS``, else every core).
    import torch

    return torch


@dataclass(eq=False)
class ConvOp(LinearOp):
    """A 2-D convolution without bias on a (1, C, H, W) tensor, with explicit (asymmetric) pads."""

    weight: np.ndarray  # (O, C/group, kh, kw)
    in_shape: tuple[int, int, int]  # (C, H, W)
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    dilations: tuple[int, int]
    group: int

    def __post_init__(self) -> None:
        self.weight = np.ascontiguousarray(self.weight, dtype=np.float64)
        c, h, w = self.in_shape
        o, _, kh, kw = self.weight.shape
        t, l, b, r = self.pads
        ho = (h + t + b - self.dilations[0] * (kh - 1) - 1) // self.strides[0] + 1
        wo = (w + l + r - self.dilations[1] * (kw - 1) - 1) // self.strides[1] + 1
        if ho <= 0 or wo <= 0:
            raise ValueError("convolution output would be empty")
        self.out_shape = (o, ho, wo)
        self.in_size, self.out_size = c * h * w, o * ho * wo
        self._tw: Any = None
        self._tabs: Any = None

    def _weights(self) -> tuple[Any, Any]:
        if self._tw is None:
            torch = _torch()
            self._tw = torch.from_numpy(self.weight)
            self._tabs = self._tw.abs()
        return self._tw, self._tabs

    def _conv(self, x: np.ndarray, w: Any) -> np.ndarray:
        torch = _torch()
        f = torch.nn.functional
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).reshape(-1, *self.in_shape)
        top, left, bottom, right = self.pads
        if any(self.pads):
            t = f.pad(t, (left, right, top, bottom))
        out = f.conv2d(t, w, stride=self.strides, dilation=self.dilations, groups=self.group)
        return out.reshape(t.shape[0], -1).numpy()

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The convolution of each row."""
        return self._conv(x, self._weights()[0])

    def abs_forward(self, r: np.ndarray) -> np.ndarray:
        """The convolution with ``|weight|``."""
        return self._conv(r, self._weights()[1])

    def backward(self, a: np.ndarray) -> np.ndarray:
        """The transposed convolution of each row (``a @ W``)."""
        torch = _torch()
        c, h, w = self.in_shape
        top, left, bottom, right = self.pads
        size = (a.shape[0], c, h + top + bottom, w + left + right)
        g = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).reshape(a.shape[0], *self.out_shape)
        x = torch.nn.grad.conv2d_input(size, self._weights()[0], g, stride=self.strides,
                                       dilation=self.dilations, groups=self.group)
        x = x[:, :, top:top + h, left:left + w]
        return x.reshape(a.shape[0], -1).numpy()

    def pattern(self) -> sp.csr_array:
        """Every output's kernel window (from the geometry: no convolution of identities)."""
        c, h, w = self.in_shape
        o, cg, kh, kw = self.weight.shape
        _, ho, wo = self.out_shape
        top, left, _, _ = self.pads
        og = o // self.group
        rows, cols = [], []
        oc, oi, oj = np.meshgrid(np.arange(o), np.arange(ho), np.arange(wo), indexing="ij")
        out = (oc * ho + oi) * wo + oj
        for a in range(kh):
            for b in range(kw):
                ii = oi * self.strides[0] + a * self.dilations[0] - top
                jj = oj * self.strides[1] + b * self.dilations[1] - left
                ok = (ii >= 0) & (ii < h) & (jj >= 0) & (jj < w)
                for g in range(cg):
                    ch = (oc // og) * cg + g
                    rows.append(out[ok])
                    cols.append(((ch * h + ii) * w + jj)[ok])
        r, cl = np.concatenate(rows), np.concatenate(cols)
        return _ones(sp.csr_array((np.ones(r.size, dtype=np.float32), (r, cl)), shape=(self.out_size, self.in_size)))

    def nnz(self) -> int:
        """The number of nonzeros of the matrix (an upper bound, padding ignored)."""
        return int(self.out_size * self.weight[0].size)

    def matrix(self) -> sp.csr_array:
        """The sparse matrix, built from the convolution of identity blocks."""
        blocks = []
        step = max(1, _DENSE_LIMIT // max(1, self.out_size))
        for start in range(0, self.in_size, step):
            stop = min(self.in_size, start + step)
            eye = np.zeros((stop - start, self.in_size))
            eye[np.arange(stop - start), np.arange(start, stop)] = 1.0
            blocks.append(sp.csr_array(self.forward(eye).T))  # (out, block) columns
        return sp.csr_array(sp.hstack(blocks))

    def scaled(self, out_scale: np.ndarray | None = None, in_scale: np.ndarray | None = None) -> ConvOp:
        """The same convolution with per-output-channel and per-input-channel factors folded in."""
        w = self.weight.copy()
        if out_scale is not None:
            w = w * out_scale[:, None, None, None]
        if in_scale is not None:
            o, cg = w.shape[:2]
            per_out = in_scale.reshape(self.group, cg)  # input channels of each group
            w = w * np.repeat(per_out, o // self.group, axis=0)[:, :, None, None]
        return ConvOp(w, self.in_shape, self.strides, self.pads, self.dilations, self.group)


@dataclass(eq=False)
class ChainOp(LinearOp):
    """Operators applied first to last (kept apart because their product is large)."""

    ops: Sequence[LinearOp]

    def __post_init__(self) -> None:
        self.ops = tuple(self.ops)
        self.in_size, self.out_size = self.ops[0].in_size, self.ops[-1].out_size

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Each operator in turn."""
        for op in self.ops:
            x = op.forward(x)
        return x

    def backward(self, a: np.ndarray) -> np.ndarray:
        """Each transposed operator in reverse."""
        for op in reversed(self.ops):
            a = op.backward(a)
        return a

    def abs_forward(self, r: np.ndarray) -> np.ndarray:
        """``|W_k| ... |W_1|``, an upper bound of ``|W_k ... W_1|``."""
        for op in self.ops:
            r = op.abs_forward(r)
        return r

    def pattern(self) -> sp.csr_array:
        """The product of the patterns."""
        m = self.ops[0].pattern()
        for op in self.ops[1:]:
            m = _ones(sp.csr_array(op.pattern() @ m))
        return m

    def matrix(self) -> sp.csr_array:
        """The product of the matrices (sparse)."""
        m = sp.csr_array(self.ops[0].matrix())
        for op in self.ops[1:]:
            m = sp.csr_array(sp.csr_array(op.matrix()) @ m)
        return m


def _ones(m: sp.csr_array) -> sp.csr_array:
    """``m``'s nonzero pattern as float32 ones (duplicates summed first)."""
    m = sp.csr_array(m, dtype=np.float32)
    m.sum_duplicates()
    m.eliminate_zeros()
    m.data[:] = 1.0
    return m


def identity_op(n: int) -> SparseOp:
    """The identity on ``R^n``."""
    return SparseOp(sp.identity(n, format="csr"))


def _channel_constant(d: np.ndarray, channels: int) -> np.ndarray | None:
    per = d.reshape(channels, -1)
    return per[:, 0].copy() if np.all(per == per[:, :1]) else None


def compose(first: LinearOp, then: LinearOp) -> LinearOp:
    """The operator ``then ∘ first``, multiplied out when that stays small."""
    if first.out_size != then.in_size:
        raise ValueError(f"cannot compose {first.out_size} outputs into {then.in_size} inputs")
    if isinstance(first, ChainOp):
        return ChainOp((*first.ops[:-1], *_flat(compose(first.ops[-1], then))))
    if isinstance(then, ChainOp):
        return ChainOp((*_flat(compose(first, then.ops[0])), *then.ops[1:]))
    if isinstance(first, (DenseOp, SparseOp)) and isinstance(then, (DenseOp, SparseOp)):
        if isinstance(first, SparseOp) and isinstance(then, SparseOp):
            return SparseOp(then.m @ first.m)
        if then.out_size * first.in_size <= _DENSE_LIMIT:
            return DenseOp(_product(then.matrix(), first.matrix()))
    if isinstance(first, ConvOp) and isinstance(then, SparseOp):
        d = then.diagonal()
        scale = None if d is None else _channel_constant(d, first.out_shape[0])
        if scale is not None:
            return first.scaled(out_scale=scale)
    if isinstance(first, SparseOp) and isinstance(then, ConvOp):
        d = first.diagonal()
        scale = None if d is None else _channel_constant(d, then.in_shape[0])
        if scale is not None:
            return then.scaled(in_scale=scale)
    return ChainOp((first, then))


def _product(left: Any, right: Any) -> np.ndarray:
    # numpy's @ does not know scipy's sparse arrays: let the sparse side drive the product.
    if sp.issparse(right) and not sp.issparse(left):
        prod = (right.T @ np.asarray(left).T).T
    else:
        prod = left @ right
    return prod.toarray() if sp.issparse(prod) else np.asarray(prod)


def _flat(op: LinearOp) -> tuple[LinearOp, ...]:
    return tuple(op.ops) if isinstance(op, ChainOp) else (op,)
