"""ONNX classifiers as vnnbridge sees them: one input tensor (flat C-order view), one logit vector."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vnnbridge.cache import file_digest
from vnnbridge.errors import ModelError, require_file

__all__ = ["Network", "load_network", "load_onnx", "marabou_model", "prepare_model"]

log = logging.getLogger(__name__)


def _dims(value_info: Any) -> list[int]:
    # Symbolic or missing dims (a dynamic batch) are taken as 1: vnnbridge queries one input at a time.
    dims = []
    for d in value_info.type.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1)
    return dims


@dataclass(frozen=True)
class Network:
    """A loaded ONNX model: its path, hash, input shape and a cached onnxruntime session."""

    path: Path
    sha256: str
    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    outputs: int
    _session: Any = field(repr=False, compare=False, default=None)

    @property
    def inputs(self) -> int:
        """Number of scalar inputs."""
        return int(np.prod(self.input_shape))

    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits (float64, flat) for one flat input, evaluated by onnxruntime in float32."""
        v = np.asarray(x, dtype=np.float32).reshape(self.input_shape)
        out = self._session.run([self.output_name], {self.input_name: v})[0]
        return np.asarray(out, dtype=np.float64).ravel()

    def run_batch(self, xs: np.ndarray) -> np.ndarray:
        """Logits for several flat inputs (rows), one onnxruntime call each (batch dims may be fixed)."""
        return np.stack([self.run(x) for x in np.asarray(xs).reshape(-1, self.inputs)])

    def predict(self, x: np.ndarray) -> int:
        """The predicted class (first index of the largest logit)."""
        return int(np.argmax(self.run(x)))


def load_onnx(path: str | Path, external_data: bool = True) -> Any:
    """The ``onnx.ModelProto`` in ``path``; any failure to read it is a `ModelError` naming the file."""
    import onnx

    p = require_file(path, "ONNX file")
    try:
        return onnx.load(str(p), load_external_data=external_data)
    except Exception as exc:  # onnx raises several unrelated types for a bad file
        raise ModelError(f"cannot read ONNX model: {exc}", path=str(p)) from None


@lru_cache(maxsize=16)
def _load(path: str, digest: str) -> Network:
    import onnxruntime as ort

    model = load_onnx(path)
    inits = {i.name for i in model.graph.initializer}
    real_inputs = [i for i in model.graph.input if i.name not in inits]
    if len(real_inputs) != 1:
        raise ModelError(f"expected one input tensor, found {len(real_inputs)}", path=path)
    if len(model.graph.output) < 1:
        raise ModelError("the model has no output", path=path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"onnxruntime cannot load the model: {exc}", path=path) from None
    shape = tuple(_dims(real_inputs[0]))
    probe = session.run(None, {real_inputs[0].name: np.zeros(shape, dtype=np.float32)})[0]
    return Network(Path(path), digest, real_inputs[0].name, shape, model.graph.output[0].name,
                   int(np.asarray(probe).size), session)


def load_network(path: str | Path) -> Network:
    """Load an ONNX classifier (cached by path and content hash)."""
    p = require_file(path, "ONNX file")
    return _load(str(p.resolve()), file_digest(p))


def prepare_model(path: str | Path, mean: float | Sequence[float] | None = None,
                  std: float | Sequence[float] | None = None, strip_softmax: bool = True) -> Path:
    """The model a query about ``path`` uses: final softmax removed, ``mean``/``std`` composed in (cached)."""
    from vnnbridge.derived import prepare_model as derive

    return derive(path, mean, std, strip_softmax)


def marabou_model(path: str | Path) -> Path:
    """``path`` in operators Marabou 2.0's ONNX reader parses (cached; see `vnnbridge.derived`)."""
    from vnnbridge.derived import marabou_model as derive

    return derive(path)
