"""Many units per back-substitution row, for layers whose units see small windows (conv, pooling).

A unit of a convolutional or pooling layer depends on a small window of every layer below it.
Back-substituting one unit per row (`vnnbridge.engine.crown.intermediate_bounds`) spends almost
all of its work on zeros: a 3x3 convolution's unit on a 14x14 map touches 8x8 of the 28x28
input. Units whose windows are disjoint at *every* layer below can share one row: each step of
the backward pass is linear (the transposed operators) or elementwise (the ReLU relaxation, the
bias and intercept terms), so the shared row's coefficients are the units' coefficients side by
side, each on its own window, and a unit's bound is the sum of the row's terms over its windows
(`Segments.total`). The result is the same bound as one row per unit, for a fraction of the work.

Windows are structural (the nonzero pattern of every operator's matrix), so they contain the
true coefficients whatever the weights and the relaxation; units are grouped by greedy colouring
(first fit on bitsets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from vnnbridge.engine.graph import LayerNet

__all__ = ["Packing", "Segments", "pack"]

# Pack only when a row carries on average at least this many units: below that the label
# bookkeeping costs more than it saves.
_MIN_FACTOR = 2.0
# Every unit's windows are cached per network up to this many entries (12 bytes each in csr).
_CACHE_ENTRIES = 40_000_000


@dataclass
class Packing:
    """Units of layer ``k`` in rows: row ``r`` holds ``index[table[r, s]]`` for each slot ``s``
    with ``table[r, s] >= 0``."""

    k: int
    index: np.ndarray  # (U,) the units (layer-k indices)
    table: np.ndarray  # (rows, slots) positions in ``index``, -1 = empty slot
    windows: list[Any]  # per level (k, k-1, ..., 0, input): csr (U, n_level), the units' windows

    @property
    def rows(self) -> int:
        """The number of packed rows."""
        return int(self.table.shape[0])

    def segments(self, first: int, stop: int, torch: Any, device: str) -> Segments:
        """The slot labels of rows ``first:stop`` at every level, for `Segments.total`."""
        table = self.table[first:stop]
        order = np.flatnonzero(table.reshape(-1) >= 0)
        row_of, slot_of = np.divmod(order, table.shape[1])
        members = table.reshape(-1)[order]
        labels = []
        for w in self.windows:
            sub = sp.coo_array(w[members])  # the windows of these units, in ``order``
            lab = np.zeros((table.shape[0], w.shape[1]), dtype=np.int64)
            lab[row_of[sub.row], sub.col] = slot_of[sub.row]
            t = torch.from_numpy(lab).to(device)
            labels.append(torch.cat([t, t]))  # the rows' lower and upper sides
        return Segments(labels, table.shape[1], self.k)


@dataclass
class Segments:
    """Per-slot sums of a packed row's terms; ``labels[i]`` belongs to level ``k - i`` (-1: input)."""

    labels: list[Any]
    slots: int
    k: int

    def total(self, t: Any, level: int) -> Any:
        """``t`` (B, m, n) summed per slot: (B, m, slots)."""
        lab = self.labels[self.k - level]
        out = t.new_zeros((*t.shape[:-1], self.slots))
        return out.scatter_add_(-1, lab.expand(t.shape), t)


def _structure(net: LayerNet, j: int) -> sp.csr_array:
    """The nonzero pattern of affine ``j``'s matrix (cached on the net)."""
    key = f"structure:{j}"
    got = net._cache.get(key)
    if got is None:
        got = net.affines[j].op.pattern()
        net._cache[key] = got
    return got


def _windows(net: LayerNet, k: int, units: np.ndarray, max_window: float) -> list[sp.csr_array] | None:
    """The windows of ``units`` of ReLU layer ``k`` at each level: the units themselves, the ``k``
    layers below, the input; None when one covers more than ``max_window`` of a level."""
    w = sp.csr_array((np.ones(units.size, dtype=np.float32), (np.arange(units.size), units)),
                     shape=(units.size, net.widths[k]))
    levels = [w]
    for j in range(k, -1, -1):
        s = _structure(net, j)
        if s.nnz > max_window * s.shape[0] * s.shape[1]:
            return None
        w = sp.csr_array(w @ s)
        w.data[:] = 1.0
        if w.nnz > max_window * w.shape[0] * w.shape[1]:
            return None
        levels.append(w)
    return levels


def _unit_windows(net: LayerNet, k: int, units: np.ndarray, max_window: float) -> list[sp.csr_array] | None:
    """`_windows` of ``units``, sliced from every unit's windows once those are cached on the net
    (a search asks about many unstable sets of the same layers; cached when the first set's
    windows say all of them fit in ``_CACHE_ENTRIES``), else computed for these units alone.
    Either way a level that ``units`` cover more than ``max_window`` of gives None."""
    key = f"windows:{k}"
    full = net._cache.get(key)
    if full is None:
        mine = _windows(net, k, units, max_window)
        if mine is not None and sum(w.nnz for w in mine) / units.size * net.widths[k] <= _CACHE_ENTRIES:
            net._cache[key] = _windows(net, k, np.arange(net.widths[k]), 1.0)  # every unit's, no density cap
        return mine
    levels = [w[units] for w in full]
    if any(w.nnz > max_window * w.shape[0] * w.shape[1] for w in levels[1:]):
        return None
    return levels


def _input_decides(net: LayerNet, k: int) -> bool:
    """Whether every unit of the layers below ``k`` sees some input (cached): then two units of
    layer ``k`` whose input windows are disjoint have disjoint windows at every level (a shared
    unit would bring its input window into both), and colouring needs the input level only."""
    key = f"sees-input:{k}"
    if key not in net._cache:
        sees = np.ones(net.inputs, dtype=bool)
        ok = True
        for j in range(k):
            sees = (_structure(net, j) @ sees.astype(np.float32)) > 0
            ok = ok and bool(sees.all())
        net._cache[key] = ok
    return bool(net._cache[key])


def pack(net: LayerNet, k: int, units: np.ndarray, max_window: float = 0.25) -> Packing | None:
    """Rows of the ``units`` of ReLU layer ``k`` with disjoint windows, or None when packing
    does not pay (a unit's window covers more than ``max_window`` of some layer, as behind a
    dense layer, or rows would carry under two units on average)."""
    units = np.asarray(units, dtype=np.int64)
    if units.size < 2 * _MIN_FACTOR:
        return None
    windows = _unit_windows(net, k, units, max_window)
    if windows is None:
        return None
    if _input_decides(net, k):
        colour = _colour(windows[-1])
    else:
        colour = _colour(sp.csr_array(sp.hstack(windows[1:])))
    ncol = int(colour.max()) + 1
    if units.size / ncol < _MIN_FACTOR:
        return None
    slot = np.zeros(units.size, dtype=np.int64)
    counts = np.zeros(ncol, dtype=np.int64)
    for i, c in enumerate(colour):
        slot[i] = counts[c]
        counts[c] += 1
    table = np.full((ncol, int(counts.max())), -1, dtype=np.int64)
    table[colour, slot] = np.arange(units.size)
    return Packing(k, units, table, windows)


def _colour(windows: sp.csr_array) -> np.ndarray:
    """Greedy first-fit colouring: units sharing a column get different colours."""
    n, cols = windows.shape
    words = 1
    occupied = np.zeros((cols, words), dtype=np.uint64)
    colour = np.zeros(n, dtype=np.int64)
    ptr, idx = windows.indptr, windows.indices
    for u in range(n):
        mine = idx[ptr[u]:ptr[u + 1]]
        used = np.bitwise_or.reduce(occupied[mine], axis=0) if mine.size else np.zeros(words, np.uint64)
        free = ~used
        word = int(np.flatnonzero(free)[0]) if free.any() else words
        if word == words:
            occupied = np.hstack([occupied, np.zeros((cols, words), dtype=np.uint64)])
            words *= 2
            bit = 0
        else:
            f = int(free[word])
            bit = (f & -f).bit_length() - 1
        colour[u] = word * 64 + bit
        occupied[mine, word] |= np.uint64(1 << bit)
    return colour
