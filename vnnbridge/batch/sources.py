"""The inputs of a batch: one item per input of a collection, each with a stable id.

A collection is an idx file (``.gz`` too) or an ``.npy`` stack (items along the first axis,
id = the index, zero-padded to the collection's size so that names sort), a folder of input
files (id = file stem), a list file (``.list``/``.lst``, or ``.txt`` holding paths; one path a
line, relative to the list's folder, ``#`` comments), or one input file. Two items never share
an id, so never a certificate folder.

True labels come from a sibling labels file when there is one: the idx convention
(``t10k-images-idx3-ubyte.gz`` beside ``t10k-labels-idx1-ubyte.gz``) or, for ``X.npy``,
``X-labels.npy`` / ``X_labels.npy``.
"""

from __future__ import annotations

import gzip
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vnnbridge.errors import InputError
from vnnbridge.inputs import read_idx

__all__ = ["INPUT_SUFFIXES", "Item", "collect", "item_array", "parse_range"]

# Files a folder contributes (the single-input formats of `vnnbridge.inputs.load_input`).
INPUT_SUFFIXES = (".csv", ".png", ".npy", ".vnnlib", ".vnnlib.gz")

_IDX_BYTES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


@dataclass(frozen=True)
class Item:
    """One input of a batch: its id (folder name), file, index in the file, and true label if known."""

    id: str
    path: str
    index: int | None = None
    true_label: int | None = None


def parse_range(text: str | None, count: int) -> range:
    """``A:B`` (either side may be empty, Python slice rules) or ``K`` as a range of item positions."""
    if text is None or text.strip() == "":
        return range(count)
    parts = text.split(":")
    try:
        if len(parts) == 1:
            k = int(parts[0])
            if not 0 <= k < count:
                raise InputError(f"--index {k} is out of range (0..{count - 1})")
            return range(k, k + 1)
        if len(parts) == 2:
            a = int(parts[0]) if parts[0].strip() else None
            b = int(parts[1]) if parts[1].strip() else None
            return range(count)[slice(a, b)]
    except ValueError:
        pass
    raise InputError(f"--index must be K or A:B (A or B may be left out), got {text!r}")


def _natural(name: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _is_idx(name: str) -> bool:
    return "idx" in name or name.endswith("-ubyte") or name.endswith("-ubyte.gz")


def _idx_header(path: Path) -> tuple[int, tuple[int, ...]]:
    """(type code, dims) of an idx file, reading only its header."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            head = stream.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_BYTES:
                raise InputError("not an idx file (bad magic number)", path=str(path))
            raw = stream.read(4 * head[3])
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read idx file: {exc}", path=str(path)) from None
    if len(raw) < 4 * head[3]:
        raise InputError("idx header is truncated", path=str(path))
    return head[2], struct.unpack(f">{head[3]}I", raw)


def _idx_labels(path: Path, count: int) -> np.ndarray | None:
    """The integer labels of an idx labels file (1-D, one per item), or None when it does not fit."""
    code, dims = _idx_header(path)
    if len(dims) != 1 or dims[0] != count or code not in (0x08, 0x09, 0x0B, 0x0C):
        return None
    try:
        return read_idx(path).astype(np.int64)
    except InputError:
        return None


_STACKS: dict[tuple[str, int, int], np.ndarray] = {}


def item_array(item: Item) -> np.ndarray | None:
    """The input of an item of an idx or npy collection, as `vnnbridge.inputs.load_input` gives it
    (float64, ubyte idx scaled by /255), with the whole collection decoded once per process; None
    for an item that is a file of its own.
    """
    if item.index is None:
        return None
    path = Path(item.path)
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    stack = _STACKS.get(key)
    if stack is None:
        _STACKS.clear()  # one collection per batch: keep one in memory
        if path.name.lower().endswith(".npy"):
            stack = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            stack = read_idx(path)
        _STACKS[key] = stack
    arr = np.asarray(stack[item.index], dtype=np.float64)
    return arr / 255.0 if stack.dtype == np.dtype(">u1") and not path.name.lower().endswith(".npy") else arr


def _idx_items(path: Path) -> list[Item]:
    _, dims = _idx_header(path)
    if not dims:
        raise InputError("the idx file holds a single number, not a collection", path=str(path))
    n = dims[0] if len(dims) > 1 else 1
    labels = None
    sibling = path.with_name(path.name.replace("images", "labels").replace("idx3", "idx1"))
    if sibling != path and sibling.is_file():
        labels = _idx_labels(sibling, n)
    width = len(str(max(n - 1, 0)))
    return [Item(f"{k:0{width}d}", str(path), k if len(dims) > 1 else None,
                 None if labels is None else int(labels[k])) for k in range(n)]


def _npy_items(path: Path) -> list[Item]:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot read .npy file: {exc}", path=str(path)) from None
    if arr.ndim < 2:
        raise InputError(f"an .npy collection stacks inputs along its first axis; this one has shape {arr.shape}",
                         path=str(path))
    n = arr.shape[0]
    labels = None
    for name in (f"{path.stem}-labels.npy", f"{path.stem}_labels.npy"):
        sibling = path.with_name(name)
        if sibling.is_file():
            lab = np.load(sibling, allow_pickle=False)
            if lab.shape == (n,) and np.issubdtype(lab.dtype, np.integer):
                labels = lab.astype(np.int64)
            break
    width = len(str(max(n - 1, 0)))
    return [Item(f"{k:0{width}d}", str(path), k, None if labels is None else int(labels[k])) for k in range(n)]


def _file_items(paths: list[Path], where: str) -> list[Item]:
    seen: dict[str, Path] = {}
    items = []
    for p in paths:
        stem = p.name[:-len(".vnnlib.gz")] if p.name.endswith(".vnnlib.gz") else p.stem
        if stem in seen:
            raise InputError(f"two inputs would share the certificate folder {stem!r}: {seen[stem]} and {p}",
                             path=where)
        seen[stem] = p
        items.append(Item(stem, str(p)))
    return items


def _is_list_file(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith((".list", ".lst")):
        return True
    if not name.endswith(".txt"):
        return False
    # A .txt input is numbers (a CSV point); a list file names files.
    for line in path.read_text(errors="replace").splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            return not re.fullmatch(r"[-+0-9.eE,;\s]+", text)
    return False


def _list_items(path: Path) -> list[Item]:
    paths = []
    for line_no, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        p = Path(text) if Path(text).is_absolute() else path.parent / text
        if not p.is_file():
            raise InputError(f"no such input file: {text}", path=str(path), line=line_no, column=1)
        paths.append(p)
    if not paths:
        raise InputError("the list file names no inputs", path=str(path))
    return _file_items(paths, str(path))


def collect(source: str | Path) -> list[Item]:
    """Every item of the collection ``source`` in its natural order (see the module docstring)."""
    p = Path(source)
    if p.is_dir():
        files = sorted((f for f in p.iterdir() if f.is_file() and f.name.lower().endswith(INPUT_SUFFIXES)
                        and not f.name.startswith(".")), key=lambda f: _natural(f.name))
        if not files:
            raise InputError(f"the folder holds no inputs ({', '.join(INPUT_SUFFIXES)})", path=str(p))
        return _file_items(files, str(p))
    if not p.is_file():
        raise InputError("no such input file or folder", path=str(p))
    name = p.name.lower()
    if name.endswith(".npy"):
        return _npy_items(p)
    if _is_list_file(p):
        return _list_items(p)
    if name.endswith(INPUT_SUFFIXES) or name.endswith(".txt"):
        return _file_items([p], str(p))
    if _is_idx(name):
        return _idx_items(p)
    raise InputError("unknown input collection; use an idx file (.gz too), an .npy stack, a folder of "
                     "inputs or a list file", path=str(p))
