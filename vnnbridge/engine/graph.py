"""ONNX -> a small layer network: alternating affine maps and (partial) ReLUs on flat vectors.

A compiled `LayerNet` (`vnnbridge.engine.layers`) is ``affines[0], relus[0], ..., affines[L]``.
Shapes only matter while compiling (`vnnbridge.engine.onnx_import`): a Reshape or Flatten is
the identity on the flat C-order vector, and constants (Shape/Gather/Concat chains included)
are folded. MaxPool becomes exact (`vnnbridge.engine.normalise`) ReLU algebra, ``max(a, b) = relu(a - b) + b``, with a *partial* ReLU that passes ``b``
through unchanged, so every supported network is piecewise linear in the same two layer kinds.
A final Softmax/LogSoftmax is stripped and recorded in `LayerNet.tail` (the oracle decides
whether the property survives that).
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import numpy as np

from vnnbridge.cache import file_digest
from vnnbridge.engine.layers import Affine, LayerNet, Relu
from vnnbridge.engine.normalise import normalise
from vnnbridge.engine.onnx_import import SUPPORTED_OPS, build_items
from vnnbridge.engine.ops import identity_op
from vnnbridge.errors import InputError, ModelError

# The layer types and the operator list live in their own modules; they are named here too
# because this is where callers have always found them.
__all__ = ["SUPPORTED_OPS", "Affine", "LayerNet", "Relu", "compile_onnx", "load_layer_net"]

log = logging.getLogger(__name__)


def compile_onnx(path: str | Path) -> LayerNet:
    """Compile an ONNX classifier into a `LayerNet` (raises ModelError naming a bad node)."""
    import onnx

    p = str(path)
    try:
        model = onnx.load(p)
    except Exception as exc:  # onnx raises several unrelated types for a bad file
        raise ModelError(f"cannot read ONNX model: {exc}", path=p) from None
    shape, items, tail, tail_node = build_items(model, p)
    affines, relus = normalise(items)
    if not affines or affines[0].op.in_size != int(np.prod(shape)):
        # A network that is only reshapes still needs one (identity) affine of the right size.
        n = int(np.prod(shape))
        affines, relus = [Affine(identity_op(n), np.zeros(n))], []
    net = LayerNet(shape, affines, relus, tail, tail_node)
    log.debug("compiled %s: relu widths %s, tail %s", p, net.widths, net.tail)
    return net


@lru_cache(maxsize=16)
def _cached(digest: str, path: str) -> LayerNet:
    net = compile_onnx(path)
    net.sha256 = digest
    return net


def load_layer_net(path: str | Path) -> LayerNet:
    """The compiled network for ``path``, cached in memory by content hash."""
    p = Path(path)
    if not p.is_file():
        raise InputError("no such ONNX file", path=str(p))
    return _cached(file_digest(p), str(p.resolve()))
