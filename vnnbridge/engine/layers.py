"""The compiled network: alternating affine maps and (partial) ReLUs on flat vectors.

A `LayerNet` is ``affines[0], relus[0], affines[1], ..., relus[L-1], affines[L]``; it is built
by `vnnbridge.engine.graph.compile_onnx` and read by the bounds, the attack and the MILP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vnnbridge.engine.ops import LinearOp

__all__ = ["Affine", "LayerNet", "Relu"]


@dataclass(eq=False)
class Affine:
    """``z = op(x) + bias`` on flat vectors."""

    op: LinearOp
    bias: np.ndarray


@dataclass(eq=False)
class Relu:
    """``max(z, 0)`` where ``mask`` is True, ``z`` unchanged elsewhere (MaxPool pass-throughs)."""

    mask: np.ndarray

    @property
    def partial(self) -> bool:
        """Whether some units pass through unchanged."""
        return not bool(self.mask.all())


@dataclass(eq=False)
class LayerNet:
    """A compiled piecewise-linear network: ``affines[0], relus[0], ..., affines[-1]``."""

    input_shape: tuple[int, ...]
    affines: list[Affine]
    relus: list[Relu]
    tail: str | None = None  # "Softmax" or "LogSoftmax" stripped from the end
    tail_node: str = ""
    sha256: str = ""
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def inputs(self) -> int:
        """Flat input size."""
        return self.affines[0].op.in_size

    @property
    def outputs(self) -> int:
        """Flat output size."""
        return self.affines[-1].op.out_size

    @property
    def widths(self) -> list[int]:
        """The width of every ReLU layer."""
        return [r.mask.size for r in self.relus]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Outputs for a batch (n, inputs) or one flat input, in float64."""
        v = np.atleast_2d(np.asarray(x, dtype=np.float64))
        for aff, relu in zip(self.affines, self.relus):
            z = aff.op.forward(v) + aff.bias
            v = np.where(relu.mask, np.maximum(z, 0.0), z)
        out = self.affines[-1].op.forward(v) + self.affines[-1].bias
        return out if np.ndim(x) > 1 else out[0]

    def pre_activations(self, x: np.ndarray) -> list[np.ndarray]:
        """Every ReLU layer's input for a batch, then the output (for gradients and tests)."""
        v = np.atleast_2d(np.asarray(x, dtype=np.float64))
        zs = []
        for aff, relu in zip(self.affines, self.relus):
            z = aff.op.forward(v) + aff.bias
            zs.append(z)
            v = np.where(relu.mask, np.maximum(z, 0.0), z)
        zs.append(self.affines[-1].op.forward(v) + self.affines[-1].bias)
        return zs
