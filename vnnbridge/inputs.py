"""Loading the input point x: CSV, NPY, PNG, idx (``.gz`` too), or a VNN-LIB property.

Every loader returns the values in C order as float64. CSV accepts any row/column layout
(a 28x28 grid or one row of 784; commas, semicolons or blanks). ``idx`` files of unsigned
bytes and PNG images are scaled to [0, 1] by /255, the convention of the reference networks.
A VNN-LIB property gives its input box as the domain and the box's centre as x.
(Normalisation outside the graph, ``--mean/--std``, is composed into the model by
`vnnbridge.derived.prepare_model`.)
"""

from __future__ import annotations

import gzip
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vnnbridge.box import Box
from vnnbridge.errors import InputError, require_file

__all__ = ["LoadedInput", "check_input", "load_input", "read_idx"]

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class LoadedInput:
    """The input point (flat, float64), its natural shape, and a domain when the file states one.

    ``source`` names the file, with ``[K]`` appended for item K of a collection; ``label`` is
    the true label when the file comes with one (an idx labels file beside idx images).
    """

    x: np.ndarray
    shape: tuple[int, ...]
    source: str
    domain: Box | None = None
    index: int | None = None
    label: int | None = None
    label_source: str = ""


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


def read_idx(path: Path) -> np.ndarray:
    """The whole array of an idx file (``.gz`` too), in its stored type."""
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
    return np.frombuffer(body, dtype=dtype, count=count).reshape(dims)


def _load_idx(path: Path, index: int | None) -> np.ndarray:
    arr = read_idx(path)
    dims, ndim = arr.shape, arr.ndim
    if ndim > 1 or index is not None:
        k = 0 if index is None else index
        if index is None and dims[0] != 1:
            raise InputError(f"the idx file holds {dims[0]} items; pick one with --index K", path=str(path))
        if not 0 <= k < dims[0]:
            raise InputError(f"--index {k} is out of range (0..{dims[0] - 1})", path=str(path))
        arr = arr[k]
    out = np.asarray(arr, dtype=np.float64)
    return out / 255.0 if arr.dtype == np.dtype(">u1") else out


def _labels_beside(path: Path) -> Path | None:
    """The idx labels file that the MNIST naming puts beside an idx images file, if it is there."""
    name = path.name
    for images, labels in (("images-idx3", "labels-idx1"), ("images.idx3", "labels.idx1")):
        if images in name:
            candidate = path.with_name(name.replace(images, labels))
            return candidate if candidate.is_file() else None
    return None


def _true_label(path: Path, index: int) -> int | None:
    """Item ``index`` of the labels file beside ``path`` (None when there is none or it does not fit)."""
    labels = _labels_beside(path)
    if labels is None:
        return None
    try:
        values = read_idx(labels)
    except InputError:
        return None
    return int(values[index]) if values.ndim == 1 and 0 <= index < values.size else None


def _load_vnnlib(path: Path) -> tuple[np.ndarray, Box]:
    from vnnbridge.vnnlib.parser import parse_file

    spec = parse_file(path)
    if len(spec.cases) != 1:
        raise InputError(f"the property has {len(spec.cases)} input boxes; certify needs one", path=str(path))
    box = spec.single_box
    return box.center(), box


def _is_idx(name: str) -> bool:
    return "idx" in name or name.endswith("-ubyte") or name.endswith("-ubyte.gz")


def load_input(path: str | Path, index: int | None = None) -> LoadedInput:
    """Load x from ``path``; ``index`` picks one item of an idx or npy collection."""
    p = require_file(path, "input file")
    name = p.name.lower()
    if index is not None and not (name.endswith(".npy") or _is_idx(name)):
        raise InputError(f"--index {index} picks an item of an idx or .npy collection; this file is one input",
                         path=str(p))
    domain, label, label_source = None, None, ""
    if name.endswith(".csv") or name.endswith(".txt"):
        arr = _load_csv(p)
    elif name.endswith(".npy"):
        arr = _load_npy(p, index)
    elif name.endswith(".png"):
        arr = _load_png(p)
    elif name.endswith(".vnnlib") or name.endswith(".vnnlib.gz"):
        arr, domain = _load_vnnlib(p)
    elif _is_idx(name):
        arr = _load_idx(p, index)
        label = _true_label(p, 0 if index is None else index)
        label_source = str(_labels_beside(p)) if label is not None else ""
    else:
        raise InputError("unknown input format; use .csv, .npy, .png, an idx file (.gz too) or .vnnlib",
                         path=str(p))
    if not np.all(np.isfinite(arr)):
        raise InputError("the input holds non-finite values", path=str(p))
    source = str(p) if index is None else f"{p}[{index}]"
    return LoadedInput(np.ascontiguousarray(arr, dtype=np.float64).ravel(), tuple(arr.shape), source, domain,
                       index, label, label_source)


def check_input(loaded: LoadedInput, inputs: int, domain: Box) -> None:
    """Raise a one-line `InputError` (with a hint) unless ``loaded`` fits a network of ``inputs`` values in ``domain``.

    A stack of inputs without ``--index`` and pixel values in 0..255 are the usual slips; the
    error says which coordinate is out of the domain and what to do.
    """
    x, shape = loaded.x, loaded.shape
    if x.size != inputs:
        hint = ""
        if loaded.index is None and len(shape) > 1 and shape[0] > 1 and x.size == shape[0] * inputs:
            hint = f"; the file holds {shape[0]} inputs of {inputs} values: pick one with --index K"
        raise InputError(f"the input has {x.size} values, the network expects {inputs}{hint}", path=loaded.source)
    if domain.dim != x.size:
        raise InputError(f"the domain has {domain.dim} coordinates, the input {x.size}", path=loaded.source)
    lo, hi = domain.arrays()
    outside = np.nonzero((x < lo) | (x > hi))[0]
    if outside.size == 0:
        return
    i = int(outside[0])
    where = f"coordinate {i}" + (f" {tuple(int(k) for k in np.unravel_index(i, shape))}" if len(shape) > 1 else "")
    text = (f"the input lies outside the domain: {where} is {float(x[i])!r}, not in "
            f"[{float(lo[i])!r}, {float(hi[i])!r}]"
            f" ({outside.size} of {x.size} values outside)")
    if (np.all(lo == 0.0) and np.all(hi == 1.0) and x.min() >= 0.0 and 1.0 < x.max() <= 255.0
            and np.array_equal(x, np.round(x))):
        text += "; the values look like 0-255 pixels: divide them by 255 (the domain is [0, 1])"
    raise InputError(text, path=loaded.source)
