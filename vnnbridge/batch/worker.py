"""Certify one item of a batch in whatever process runs it, keeping the oracle warm between items.

`certify_item` is a plain module-level function of picklable arguments, so the same code runs
in the driver (serial), in local worker processes and in Dask workers. A worker process keeps
its oracle (and, through the loaders' in-memory caches, the parsed network and its
onnxruntime session) for every later item. Whatever goes wrong with one input becomes that
input's row with the error; only an interrupt propagates.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from vnnbridge.batch.sources import Item
from vnnbridge.errors import VnnbridgeError
from vnnbridge.search.names import DEFAULT_DUAL, DEFAULT_MAX_CALLS, DEFAULT_METHOD

__all__ = ["BatchSpec", "certify_item", "failed_row", "init_worker", "supports_confirm"]

CALLS = "calls"  # the call cache folder inside the batch folder
CALL_LOG = "calls.log"  # every answer an oracle gave, one line each
INPUT_FILE = "input.npy"  # an item of a collection, as certified
RUNNING = ".running"  # per worker process: the item it is on (names the culprit when a process dies)


@dataclass(frozen=True)
class BatchSpec:
    """The settings of one batch (``certify-batch``'s arguments that decide the results)."""

    onnx: str
    input: str
    out: str
    index: str | None = None
    method: str = DEFAULT_METHOD
    dual: str | None = DEFAULT_DUAL
    oracle: str = "embedded"
    confirm: str | None = None  # passed on only where CertifyJob knows it
    timeout: float = 60.0
    delta: float | None = None
    margin: float = 0.0
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    max_calls: int = DEFAULT_MAX_CALLS  # per search phase, as certify
    order: str = "dfs"
    step: str = "bisect"


def supports_confirm() -> bool:
    """Whether this vnnbridge's CertifyJob takes a ``confirm`` oracle (cross-examination)."""
    from vnnbridge.job import CertifyJob

    return "confirm" in {f.name for f in dataclasses.fields(CertifyJob)}


_WARM: dict[tuple[str, str], Any] = {}


def _oracle(spec: BatchSpec) -> Any:
    from vnnbridge.batch.calls import CachedOracle
    from vnnbridge.cache import CallCache
    from vnnbridge.oracles.registry import make_oracle

    key = (spec.oracle, spec.out)
    if key not in _WARM:
        out = Path(spec.out)
        _WARM[key] = CachedOracle(make_oracle(spec.oracle), CallCache(out / CALLS), spec.oracle, out / CALL_LOG)
    return _WARM[key]


def failed_row(item: Item, error: str, seconds: float = 0.0, oracle: str = "") -> dict[str, object]:
    """The row of an input that could not be certified because something failed."""
    return {"id": item.id, "source": item.path, "index": item.index, "true_label": item.true_label,
            "status": "failed", "seconds": round(seconds, 3), "oracle": oracle, "error": " ".join(error.split())}


def _input_file(spec: BatchSpec, item: Item) -> tuple[str, int | None]:
    """Where the job reads its input: an item of a collection is written to ``OUT/<id>/input.npy``.

    Decoding a collection once per worker instead of once per item (gunzip of the MNIST test
    set: about 0.15 s, a fifth of a certification) is the point; the certificate folder then
    also holds exactly the input it certifies.
    """
    import io

    import numpy as np

    from vnnbridge.batch.sources import item_array
    from vnnbridge.cache import atomic_write

    arr = item_array(item)
    if arr is None:
        return item.path, None
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    target = Path(spec.out) / item.id / INPUT_FILE
    atomic_write(target, buf.getvalue())
    return str(target), None


def _job(spec: BatchSpec, item: Item) -> Any:
    from vnnbridge.job import CertifyJob

    extra: dict[str, Any] = {"confirm": spec.confirm} if spec.confirm is not None and supports_confirm() else {}
    path, index = _input_file(spec, item)
    return CertifyJob(onnx=spec.onnx, input=path, index=index, method=spec.method, dual=spec.dual,
                      oracle=spec.oracle, delta=spec.delta, timeout=spec.timeout,
                      out=str(Path(spec.out) / item.id), jobs=1, margin=spec.margin, mean=spec.mean, std=spec.std,
                      order=spec.order, step=spec.step, max_calls=spec.max_calls, **extra)


def certify_item(spec: BatchSpec, item: Item) -> dict[str, object]:
    """Certify ``item`` (its certificate goes to ``OUT/<id>/``) and return its results row."""
    from vnnbridge.job import run_job

    start = time.perf_counter()
    running = Path(spec.out) / RUNNING / str(os.getpid())
    try:
        running.parent.mkdir(parents=True, exist_ok=True)
        running.write_text(item.id)
        oracle = _oracle(spec)
        outcome = run_job(_job(spec, item), oracle=oracle)
        if outcome.result.interrupted:
            raise KeyboardInterrupt  # a half-finished input is not a finished one
        return _row(spec, item, outcome)
    except VnnbridgeError as exc:
        return failed_row(item, exc.located(), time.perf_counter() - start, spec.oracle)
    except Exception as exc:  # one input's failure must never stop the batch
        folder = Path(spec.out) / item.id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "error.txt").write_text(traceback.format_exc())
        return failed_row(item, f"{type(exc).__name__}: {exc} (traceback in {folder / 'error.txt'})",
                          time.perf_counter() - start, spec.oracle)
    finally:
        running.unlink(missing_ok=True)


def _row(spec: BatchSpec, item: Item, outcome: Any) -> dict[str, object]:
    m, result = outcome.metrics, outcome.result
    try:
        status = json.loads((Path(outcome.out) / "certificate.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        status = "certified" if result.certified else "not certified"
    certified = status != "not certified"
    return {"id": item.id, "source": item.path, "index": item.index, "label": outcome.instance.label,
            "true_label": item.true_label, "status": status,
            "apothem": m["apothem"] if certified else "", "exact": int(bool(result.exact)),
            "min_edge": m["min_edge"] if certified else "", "avg_edge": m["avg_edge"] if certified else "",
            "max_edge": m["max_edge"] if certified else "", "calls": len(outcome.prober.calls),
            "refuted": int(getattr(outcome, "refuted", 0) or 0), "seconds": round(outcome.seconds, 3),
            "oracle": outcome.prober.oracle.name, "error": ""}


def init_worker(parent: int | None = None, threads: int | None = None) -> None:
    """Set up a local worker process: leave Ctrl-C to the driver, and exit when the driver is gone.

    Without the watch, a worker of a driver killed with -9 would go on certifying an input
    that the resumed batch certifies again. ``threads``: the worker's share of the cores for
    the engine's torch threads (unless ``$VNNBRIDGE_THREADS`` says otherwise), so that N workers
    do not each start one thread per core.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if threads:
        os.environ.setdefault("VNNBRIDGE_THREADS", str(threads))
    parent = parent or os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="vnnbridge-parent-watch").start()
