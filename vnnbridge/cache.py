"""The cache directory: derived models and written queries, keyed by content hash, never beside inputs.

`CallCache` keeps oracle answers in a folder of small JSON files, one per content key. Every
write goes through `atomic_write` (a private temp file, then a rename), so any number of
processes, on one machine or on a shared file system, may read and write it at once: a
reader sees a whole record or none, and two writers of one key write the same answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from vnnbridge.errors import InputError

__all__ = ["CallCache", "atomic_write", "cache_dir", "check_writable_folder", "file_digest", "sha256_bytes",
           "sha256_file"]


def cache_dir(kind: str = "") -> Path:
    """``$VNNBRIDGE_CACHE`` (default ``~/.cache/vnnbridge``), or its subfolder ``kind``, created."""
    root = Path(os.environ.get("VNNBRIDGE_CACHE") or Path.home() / ".cache" / "vnnbridge")
    path = root / kind if kind else root
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, remembered per (path, mtime, size): searches ask about the same model thousands of times."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_mtime_ns, st.st_size)
    digest = _DIGESTS.get(key)
    if digest is None:
        if len(_DIGESTS) > 256:
            _DIGESTS.clear()
        digest = _DIGESTS[key] = sha256_file(p)
    return digest


def _umask() -> int:
    """The process umask. Linux shows it in /proc; elsewhere os.umask can only read it by setting it
    (and at once back), which races with other threads creating files, hence the /proc path first."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temp file and a rename, so readers never see half a file.

    The file gets the mode a plain ``open(path, "w")`` would give (0666 less the umask), not
    mkstemp's private 0600: certificates, benchmarks and result files are meant to be shared.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as stream:
            stream.write(payload)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def check_writable_folder(out: str | os.PathLike[str], option: str) -> None:
    """Raise `InputError` unless folder ``out`` exists writable or can be made (creates nothing).

    Commands check their output folder (``option`` names it in the message) before any
    long work, so that minutes of search are never lost to a bad path.
    """
    target = Path(out)
    if target.exists() and not target.is_dir():
        raise InputError(f"{option}: this is a file; a folder is needed here", path=str(target))
    parent = target
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{option}: {parent} is a file, so no folder can be made inside it", path=str(target))
    try:  # a real try, not os.access: root passes access() in read-only places such as /proc
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".vnnbridge-probe-"))
    except OSError as exc:
        where = "" if parent == target else f" in {parent}"
        raise InputError(f"{option}: cannot write here{where}: {exc.strerror or exc}", path=str(target)) from None


class CallCache:
    """Records on disk, keyed by the sha256 of their key parts; safe for concurrent writers.

    The caller decides what is worth keeping (a batch keeps only definitive oracle answers).
    A record that cannot be read back (a foreign or damaged file) counts as absent.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    @staticmethod
    def key(parts: dict[str, Any]) -> str:
        """The content key of ``parts`` (JSON with sorted keys, hashed)."""
        return sha256_bytes(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode())

    def path(self, key: str) -> Path:
        """Where the record of ``key`` lives (two-letter fan-out keeps folders small)."""
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The record stored under ``key``, or None."""
        try:
            data = json.loads(self.path(key).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("key") == key else None

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Store ``record`` under ``key`` (atomically; a concurrent writer of the same key is harmless)."""
        atomic_write(self.path(key), json.dumps({**record, "key": key}, sort_keys=True))
