"""The batch driver: check the batch folder, skip finished inputs, run the rest, keep the table.

The folder holds ``batch.json`` (the settings that decide the results, compared on every
start: a different command on the same folder is an error naming what differs),
``results.csv`` (one row per finished input), ``<id>/`` per input (its certificate folder),
``calls/`` (the call cache) and ``calls.log``. One driver at a time holds ``.lock``.

Inputs run serially in this process, in ``jobs`` local worker processes, or on a Dask
distributed cluster (``scheduler``); rows are written only here, as results come back.
Ctrl-C stops the run: finished rows stay, unfinished inputs run on the next start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generator, Iterator, Sequence

from vnnbridge.batch.sources import Item, collect, parse_range
from vnnbridge.batch.table import RESULTS, append_row, class_summary, read_rows, write_rows
from vnnbridge.batch.worker import RUNNING, BatchSpec, certify_item, failed_row, init_worker, supports_confirm
from vnnbridge.cache import atomic_write, file_digest
from vnnbridge.errors import InputError, VnnbridgeError

__all__ = ["BatchReport", "fingerprint", "plan", "run_batch"]

log = logging.getLogger(__name__)

SETTINGS = "batch.json"
LOCK = ".lock"


@dataclass
class BatchReport:
    """What a run did: every row of the table (all runs), how many ran now, whether it was stopped."""

    rows: list[dict[str, str]]
    total: int
    skipped: int  # finished before this run
    ran: int = 0
    interrupted: bool = False
    summary: list[dict[str, object]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Rows whose input failed."""
        return sum(r.get("status") == "failed" for r in self.rows)

    @property
    def exit_code(self) -> int:
        """0 every input has a row and none failed, 1 some failed, 130 interrupted."""
        return 130 if self.interrupted else (1 if self.failed else 0)


def fingerprint(spec: BatchSpec, items: Sequence[Item]) -> dict[str, Any]:
    """The settings a resumed run must share: contents (not paths) of network and inputs, and every option."""
    import hashlib

    listing = hashlib.sha256()
    for it in items:
        listing.update(f"{it.id}\0{Path(it.path).name}\0{it.index}\0".encode())
        if it.index is None:  # a folder or list: each file's content; a collection file is hashed once below
            listing.update(file_digest(it.path).encode())
    source = Path(spec.input)
    data = dataclasses.asdict(spec)
    data.pop("out")
    data["onnx_sha256"] = file_digest(spec.onnx)
    data["input_sha256"] = file_digest(source) if source.is_file() else None
    data["items"] = len(items)
    data["items_sha256"] = listing.hexdigest()
    data["mean"] = None if spec.mean is None else [float(v) for v in spec.mean]
    data["std"] = None if spec.std is None else [float(v) for v in spec.std]
    return data


# Paths may differ between runs (a moved data set); their content may not.
_INFORMATIONAL = {"onnx", "input"}


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        if key in _INFORMATIONAL or old.get(key) == new.get(key):
            continue
        hashed = {"onnx_sha256": "the network's content (--onnx)", "input_sha256": "the input file's content",
                  "items_sha256": "the inputs' files or content"}
        if key in hashed:
            if key != "items_sha256" or old.get("items") == new.get("items"):
                out.append(f"{hashed[key]} differs")
            continue
        name = "number of inputs" if key == "items" else "--" + key.replace("_", "-")
        out.append(f"{name}: was {old.get(key)!r}, now {new.get(key)!r}")
    return out


def plan(spec: BatchSpec) -> list[Item]:
    """The items of the batch: the collection, sliced by ``--index``."""
    items = collect(spec.input)
    return [items[k] for k in parse_range(spec.index, len(items))]


def _check_folder(spec: BatchSpec, items: Sequence[Item]) -> None:
    out = Path(spec.out)
    new = fingerprint(spec, items)
    path = out / SETTINGS
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            raise InputError("the batch settings file is damaged; remove it to start afresh", path=str(path)) from None
        diff = _differences(old, new)
        if diff:
            raise InputError(f"{out} holds a batch started with a different command ({'; '.join(diff)}); "
                             "use another --out, or the same command to resume", path=str(path))
    elif (out / RESULTS).is_file():
        raise InputError(f"{out} holds results but no {SETTINGS}; use another --out", path=str(out))
    else:
        atomic_write(path, json.dumps(new, indent=1, sort_keys=True) + "\n")


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK, "w") as stream:
        try:
            fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InputError("another certify-batch is running on this folder", path=str(out)) from None
        yield  # the lock goes with the process, kill -9 included


Results = Generator[tuple[Item, dict[str, object]], None, None]  # closed to stop the workers


def _serial(spec: BatchSpec, items: Sequence[Item]) -> Results:
    for item in items:
        yield item, certify_item(spec, item)


def _local(spec: BatchSpec, items: Sequence[Item], jobs: int) -> Results:
    import multiprocessing

    # spawn: a fresh interpreter per worker (forking a process with onnxruntime threads is unsafe).
    context = multiprocessing.get_context("spawn")
    pending = list(items)
    blind = 0  # pool breaks in a row that named no culprit
    while pending:
        pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=init_worker,
                                   initargs=(os.getpid(), max(1, (os.cpu_count() or 1) // jobs)))
        futures: dict[Future[dict[str, object]], Item] = {pool.submit(certify_item, spec, it): it for it in pending}
        processes = getattr(pool, "_processes", None) or {}  # pid -> Process; filled as workers start
        finished: set[str] = set()
        broken = False
        try:
            remaining = set(futures)
            while remaining:
                done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                for fut in done:
                    try:
                        row = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        continue
                    finished.add(futures[fut].id)
                    yield futures[fut], row
        finally:
            dead = dict(processes)
            _stop(pool)
        pending = [it for it in pending if it.id not in finished]
        if broken:
            # A worker died (a crash in native code, a kill): the input it was on becomes a failed row;
            # the others, including those of workers stopped because the pool broke, run again.
            culprits = _culprits(spec, pending, dead)
            blind = 0 if culprits else blind + 1
            if blind >= 3:  # never loop forever on a crash that leaves no trace
                culprits, blind = pending[:1], 0
            for item in culprits:
                yield item, failed_row(item, "the worker process died while certifying this input", 0.0, spec.oracle)
            named = {it.id for it in culprits}
            pending = [it for it in pending if it.id not in named]


def _culprits(spec: BatchSpec, pending: Sequence[Item], processes: dict[int, Any]) -> list[Item]:
    """The items that workers which died by themselves (not stopped by us with SIGTERM) were on."""
    import signal

    folder = Path(spec.out) / RUNNING
    names = set()
    for pid, proc in processes.items():
        marker = folder / str(pid)
        if proc.exitcode not in (None, 0, -signal.SIGTERM):
            with contextlib.suppress(OSError):
                names.add(marker.read_text().strip())
        marker.unlink(missing_ok=True)
    return [it for it in pending if it.id in names]


def _stop(pool: ProcessPoolExecutor) -> None:
    # The processes first: shutdown() forgets them, and would then wait for their current inputs.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        with contextlib.suppress(Exception):
            proc.terminate()
    for proc in processes:
        with contextlib.suppress(Exception):
            proc.join(5)


def _dask(spec: BatchSpec, items: Sequence[Item], address: str) -> Results:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise InputError("--scheduler needs Dask: pip install 'vnnbridge[batch]'") from None
    try:
        client = Client(address, timeout="30s")
    except (OSError, TimeoutError) as exc:
        raise VnnbridgeError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    try:
        futures = {client.submit(certify_item, spec, it, key=f"vnnbridge-certify-{it.id}-{time.time_ns()}",
                                 pure=False): it for it in items}
        for fut in as_completed(futures):
            item = futures[fut]
            try:
                row = fut.result()
            except Exception as exc:  # KilledWorker and friends: that input failed, the batch goes on
                row = failed_row(item, f"Dask: {type(exc).__name__}: {exc}", 0.0, spec.oracle)
            yield item, row
    finally:
        with contextlib.suppress(Exception):
            client.cancel(list(futures))
        client.close()


class _Progress:
    """tqdm's bar (rate, ETA) with the counts; silent when tqdm is missing or stderr is not a terminal."""

    def __init__(self, total: int, done: int, counts: dict[str, int], enabled: bool) -> None:
        self.counts, self.bar = counts, None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=total, initial=done, unit="input", file=sys.stderr, dynamic_ncols=True,
                            disable=None, smoothing=0.1)
            self._postfix()

    def _postfix(self, refresh: bool = True) -> None:
        if self.bar is not None:
            text = ", ".join(f"{k} {v}" for k, v in self.counts.items())
            self.bar.set_postfix_str(text.replace("not certified", "not"), refresh=refresh)

    def update(self) -> None:
        if self.bar is not None:
            self._postfix(refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _count(rows: Sequence[dict[str, str]]) -> dict[str, int]:
    counts = {"certified": 0, "not certified": 0, "failed": 0}  # and any other status a certificate states
    for r in rows:
        status = r.get("status", "") or "?"
        counts[status] = counts.get(status, 0) + 1
    return counts


def run_batch(spec: BatchSpec, jobs: int = 1, scheduler: str | None = None, progress: bool = True,
              retry_failed: bool = False, on_row: Callable[[dict[str, object]], None] | None = None) -> BatchReport:
    """Certify every item of ``spec`` not finished yet; return the whole table and what this run did."""
    if jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {jobs}")
    if scheduler and jobs > 1:
        raise InputError("--jobs and --scheduler exclude each other (the cluster's workers do the work)")
    if spec.confirm is not None and not supports_confirm():
        raise InputError("--confirm needs a vnnbridge whose certify has --confirm")
    # Absolute paths: workers of a cluster do not share the driver's working directory.
    spec = dataclasses.replace(spec, onnx=str(Path(spec.onnx).absolute()), input=str(Path(spec.input).absolute()),
                               out=str(Path(spec.out).absolute()))
    from vnnbridge.network import load_network

    load_network(spec.onnx)  # one clear error now rather than one failed row per input
    items = plan(spec)
    out = Path(spec.out)
    with _locked(out):
        _check_folder(spec, items)
        path = out / RESULTS
        order = {it.id: k for k, it in enumerate(items)}
        rows = [r for r in read_rows(path, repair=True) if r["id"] in order]
        if retry_failed and any(r["status"] == "failed" for r in rows):
            rows = [r for r in rows if r["status"] != "failed"]
            write_rows(path, rows)
        finished = {r["id"] for r in rows}
        todo = [it for it in items if it.id not in finished]
        report = BatchReport(rows, len(items), len(finished))
        counts = _count(rows)
        bar = _Progress(len(items), len(finished), counts, progress)
        if scheduler:
            results = _dask(spec, todo, scheduler)
        elif jobs > 1 and len(todo) > 1:
            results = _local(spec, todo, min(jobs, len(todo)))
        else:
            results = _serial(spec, todo)
        try:
            for _, row in results:
                append_row(path, row)
                text_row = {k: "" if v is None else str(v) for k, v in row.items()}
                rows.append(text_row)
                report.ran += 1
                for key, value in _count([text_row]).items():
                    counts[key] = counts.get(key, 0) + value
                bar.update()
                if on_row is not None:
                    on_row(row)
        except KeyboardInterrupt:
            report.interrupted = True
        finally:
            with contextlib.suppress(BaseException):
                results.close()  # stops the workers
            bar.close()
            rows.sort(key=lambda r: order.get(r["id"], len(order)))
            write_rows(path, rows)
    report.rows = rows
    report.summary = class_summary(rows)
    return report
