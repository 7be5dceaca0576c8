"""Loading the input point x: CSV, NPY, PNG, idx (``.gz`` too), or a VNN-LIB property.

Every loader returns the values in C order as float64. CSV accepts any row/column layout
(a 28x28 grid or one row of 784; commas, semicolons or blanks). ``idx`` files of unsigned
bytes and PNG images are scaled to [0, 1] by /255, the convention of the reference networks.
A VNN-LIB property gives its input box as the domain and the box's centre as x.

`normalizing_model` prepends ``(x - mean) / std`` to an ONNX model, so that boxes stay in
pixel space for networks that expect normalised input.
"""

from __future__ import annotations

import gzip
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from vnnbridge.box import Box
from vnnbridge.cache import atomic_write, cache_dir, sha256_bytes, sha256_file
from vnnbridge.errors import InputError, ModelError

__all__ = ["LoadedInput", "load_input", "normalizing_model"]

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class LoadedInput:
    """The input point (flat, float64), its natural shape, and a domain when the file states one."""

    x: np.ndarray
    shape: tuple[int, ...]
    source: str
    domain: Box | None = None


def _load_csv(path: Path) -> np.ndarray:
    values: list[float] = []
    text = path.read_text(errors="replace")
    for line_no, line in enumerate(text.splitlines(), start=1):
        stripped = line.split("#", 1)[0]
        for match in re.finditer(r"[^\s,;]+", stripped):
            token = match.group()
            try:
                values.append(float(token))
            except ValueError:
                raise InputError(f"not a number: {token!r}", path=str(path), line=line_no,
                                 column=match.start() + 1) from None
    if not values:
        raise InputError("the CSV file holds no numbers", path=str(path))
    return np.array(values, dtype=np.float64)


def _load_npy(path: Path, index: int | None) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot read .npy file: {exc}", path=str(path)) from None
    if index is not None:
        if arr.ndim == 0 or not 0 <= index < arr.shape[0]:
            raise InputError(f"--index {index} is out of range for an array of shape {arr.shape}", path=str(path))
        arr = arr[index]
    return np.asarray(arr, dtype=np.float64)


def _load_png(path: Path) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise InputError("reading PNG needs Pillow (pip install pillow)", path=str(path)) from None
    try:
        with Image.open(path) as img:
            mode = "L" if img.mode in ("1", "L", "P", "LA", "I;16") else "RGB"
            arr = np.asarray(img.convert(mode), dtype=np.float64) / 255.0
    except OSError as exc:
        raise InputError(f"cannot read PNG: {exc}", path=str(path)) from None
    if arr.ndim == 3:
        arr = np.transpose(arr, (2, 0, 1))  # HWC -> CHW, the layout ONNX image models take
    return arr


def _load_idx(path: Path, index: int | None) -> np.ndarray:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            data = stream.read()
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read idx file: {exc}", path=str(path)) from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise InputError("not an idx file (bad magic number)", path=str(path))
    dtype, ndim = np.dtype(_IDX_TYPES[data[2]]), data[3]
    if len(data) < 4 + 4 * ndim:
        raise InputError("idx header is truncated", path=str(path))
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    count = int(np.prod(dims)) if dims else 1
    body = data[4 + 4 * ndim:]
    if len(body) < count * dtype.itemsize:
        raise InputError(f"idx data is truncated: {len(body)} bytes for shape {dims}", path=str(path))
    arr = np.frombuffer(body, dtype=dtype, count=count).reshape(dims)
    if ndim > 1 or index is not None:
        k = 0 if index is None else index
        if index is None and dims[0] != 1:
            raise InputError(f"the idx file holds {dims[0]} items; pick one with --index K", path=str(path))
        if not 0 <= k < dims[0]:
            raise InputError(f"--index {k} is out of range (0..{dims[0] - 1})", path=str(path))
        arr = arr[k]
    out = np.asarray(arr, dtype=np.float64)
    return out / 255.0 if data[2] == 0x08 else out


def _load_vnnlib(path: Path) -> tuple[np.ndarray, Box]:
    from vnnbridge.vnnlib.parser import parse_file

    spec = parse_file(path)
    if len(spec.cases) != 1:
        raise InputError(f"the property has {len(spec.cases)} input boxes; certify needs one", path=str(path))
    box = spec.single_box
    return box.center(), box


def load_input(path: str | Path, index: int | None = None) -> LoadedInput:
    """Load x from ``path``; ``index`` picks one item of an idx or npy collection."""
    p = Path(path)
    if not p.is_file():
        raise InputError("no such input file", path=str(p))
    name = p.name.lower()
    domain = None
    if name.endswith(".csv") or name.endswith(".txt"):
        arr = _load_csv(p)
    elif name.endswith(".npy"):
        arr = _load_npy(p, index)
    elif name.endswith(".png"):
        arr = _load_png(p)
    elif name.endswith(".vnnlib") or name.endswith(".vnnlib.gz"):
        arr, domain = _load_vnnlib(p)
    elif "idx" in name or name.endswith("-ubyte") or name.endswith("-ubyte.gz"):
        arr = _load_idx(p, index)
    else:
        raise InputError("unknown input format; use .csv, .npy, .png, an idx file (.gz too) or .vnnlib",
                         path=str(p))
    if not np.all(np.isfinite(arr)):
        raise InputError("the input holds non-finite values", path=str(p))
    return LoadedInput(np.ascontiguousarray(arr, dtype=np.float64).ravel(), tuple(arr.shape), str(p), domain)


def _per_channel(values: Sequence[float], shape: tuple[int, ...]) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    if v.size == 1:
        return v.reshape(())
    if len(shape) >= 2 and shape[1] == v.size:
        return v.reshape((1, v.size) + (1,) * (len(shape) - 2))  # NCHW channels
    if len(shape) >= 1 and shape[0] == v.size:
        return v.reshape((v.size,) + (1,) * (len(shape) - 1))  # CHW channels
    raise InputError(f"--mean/--std have {v.size} values; give one or one per channel of input shape {shape}")


def normalizing_model(onnx_path: str | Path, mean: Sequence[float], std: Sequence[float]) -> Path:
    """An ONNX model that computes ``net((x - mean) / std)`` (cached by content hash)."""
    import onnx
    from onnx import helper, numpy_helper

    if any(s == 0 for s in std):
        raise InputError("--std must not be 0")
    src = Path(onnx_path)
    key = sha256_bytes(f"{sha256_file(src)}|{list(mean)!r}|{list(std)!r}".encode())
    target = cache_dir("models") / f"{key[:24]}.onnx"
    if target.is_file():
        return target
    try:
        model = onnx.load(str(src))
    except Exception as exc:  # onnx raises several unrelated types for a bad file
        raise ModelError(f"cannot read ONNX model: {exc}", path=str(src)) from None
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelError(f"expected one input tensor, found {len(inputs)}", path=str(src))
    old = inputs[0]
    shape = tuple(d.dim_value or 1 for d in old.type.tensor_type.shape.dim)
    new_name = f"{old.name}__pixels"
    graph = model.graph
    new_input = helper.make_tensor_value_info(new_name, old.type.tensor_type.elem_type, list(shape))
    graph.initializer.extend([numpy_helper.from_array(_per_channel(mean, shape), f"{old.name}__mean"),
                              numpy_helper.from_array(_per_channel(std, shape), f"{old.name}__std")])
    graph.node.insert(0, helper.make_node("Div", [f"{old.name}__centred", f"{old.name}__std"], [old.name]))
    graph.node.insert(0, helper.make_node("Sub", [new_name, f"{old.name}__mean"], [f"{old.name}__centred"]))
    graph.input.remove(old)
    graph.input.insert(0, new_input)
    atomic_write(target, model.SerializeToString())
    return target
