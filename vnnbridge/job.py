"""One certification from start to finish: load the input, search, write the certificate, summarise.

``vnnbridge certify`` is a thin layer over `run_job`, and so is any batch of many inputs:
both describe the work as a `CertifyJob` (plain values, picklable, so a job can travel to a
worker process) and get back a `CertifyOutcome` that knows its exit code and summary line.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from vnnbridge.errors import InputError
from vnnbridge.search.names import DEFAULT_DUAL, DEFAULT_MAX_CALLS, DEFAULT_METHOD

__all__ = ["CertifyJob", "CertifyOutcome", "default_out", "run_job", "terminate_as_interrupt"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CertifyJob:
    """What to certify and how: the arguments of ``vnnbridge certify`` as plain values."""

    onnx: str
    input: str
    index: int | None = None
    label: int | None = None
    method: str = DEFAULT_METHOD
    dual: str | None = DEFAULT_DUAL  # None: no dual
    oracle: str = "embedded"
    delta: float | None = None
    timeout: float = 60.0
    out: str | None = None  # None: default_out(job)
    jobs: int = 1
    margin: float = 0.0
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    order: str = "dfs"
    step: str = "bisect"
    max_calls: int = DEFAULT_MAX_CALLS  # per search phase


def default_out(job: CertifyJob) -> Path:
    """The certificate folder: ``--out``, else ``cert-<input stem>`` (``cert-<stem>-<K>`` for item K)."""
    if job.out:
        return Path(job.out)
    return Path(f"cert-{Path(job.input).stem}" + ("" if job.index is None else f"-{job.index}"))


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM acts as Ctrl-C: a certified box found so far is kept and written.

    Only in the main thread (Python delivers signals there); elsewhere a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class CertifyOutcome:
    """What one job produced: the search results, the prober with every call, and where it was written."""

    job: CertifyJob
    instance: Any  # search.base.Instance
    result: Any  # search.base.SearchResult
    dual: Any  # SearchResult | None
    prober: Any  # search.base.Prober
    seconds: float
    out: Path
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 certified, 1 not certified, 130 interrupted after a certified box (kept in the certificate)."""
        if self.result.interrupted:
            return 130
        return 0 if self.result.certified else 1

    def summary(self) -> str:
        """The one-line summary ``certify`` prints."""
        from vnnbridge.search.metrics import box_metrics

        job, instance, result, prober, m = self.job, self.instance, self.result, self.prober, self.metrics
        robust = sum(c.purpose == "robust" for c in prober.calls)
        member = len(prober.calls) - robust
        status = "certified" if result.certified else "NOT certified"
        name = Path(job.input).name + ("" if job.index is None else f"[{job.index}]")
        text = (f"{name}: label {instance.label}, {status} by {job.method} with oracle "
                f"{prober.oracle.name} in {self.seconds:.2f} s ({robust} robustness calls")
        text += f", {member} dual calls)." if member else ")."
        if result.certified:
            exact = " (grid-exact)" if result.exact else ""
            log_volume = m["log_volume"] if m["log_volume"] is None else round(m["log_volume"], 2)
            text += (f" Apothem {m['apothem']:.6g}{exact}; edges min {m['min_edge']:.4g}, "
                     f"avg {m['avg_edge']:.4g}, max {m['max_edge']:.4g}; log-volume {log_volume}; "
                     f"{m['complexity']} of {2 * instance.x.size} faces moved off x, "
                     f"{len(result.blocked())} blocked with a witness")
            if result.stuck_faces:
                text += f", {len(result.stuck_faces)} stopped without an answer"
            if result.open_faces:
                why = next((n for n in result.notes if "non-answers" in n), "")
                text += (f", {len(result.open_faces)} still open after repeated non-answers (not maximal)" if why
                         else f", {len(result.open_faces)} still open when the call budget (--max-calls) ran out")
            text += "."
        if self.dual is not None:
            dm = box_metrics(self.dual.box, instance.x, instance.domain)
            text += f" Dual ({job.dual}): apothem <= {dm['apothem']:.6g}, avg edge {dm['avg_edge']:.4g}."
        return text + f" Certificate: {self.out}/"


def _check_labels(job: CertifyJob, loaded: Any, instance: Any) -> None:
    """Warn loudly when the prediction at x disagrees with a given or recorded true label."""
    predicted = instance.net.predict(instance.x)
    if job.label is not None and job.label != predicted:
        log.warning("--label %d: x itself is misclassified for it (the network predicts %d), so no box can be "
                    "certified; the search stops at its first call, without a dual. If the network expects "
                    "normalised input, give --mean/--std", job.label, predicted)
    elif loaded.label is not None and loaded.label != predicted:
        hint = ("" if job.mean is not None else
                "; if the network was trained on normalised input, give --mean/--std (see README)")
        log.warning("the network predicts %d at %s, but its true label is %d (%s): the certificate is about "
                    "label %d%s", predicted, loaded.source, loaded.label, loaded.label_source, instance.label, hint)


def run_job(job: CertifyJob, on_call: Callable[[Any], None] | None = None, oracle: Any = None) -> CertifyOutcome:
    """Certify one input and write its certificate folder.

    ``oracle`` may be an oracle already made (a batch worker keeps one warm); otherwise the
    job's oracle name is made here. Bad input (the input, the model, the options, the oracle
    name, an ``--out`` that cannot be written) raises `InputError` before any oracle call.
    """
    from vnnbridge.box import Box
    from vnnbridge.cache import check_writable_folder
    from vnnbridge.certificate import write_certificate
    from vnnbridge.derived import prepare_model
    from vnnbridge.inputs import check_input, load_input
    from vnnbridge.network import load_network
    from vnnbridge.oracles.registry import make_oracle
    from vnnbridge.search.base import Instance, SearchOptions
    from vnnbridge.search.compose import certify, parse_method
    from vnnbridge.search.metrics import box_metrics

    parse_method(job.method)  # fail on a bad name before loading anything
    out = default_out(job)
    check_writable_folder(out, "--out")
    loaded = load_input(job.input, job.index)
    onnx = Path(job.onnx)
    if (job.mean is None) != (job.std is None):
        raise InputError("--mean and --std go together")
    if job.mean is not None and job.std is not None:
        # Softmax stays: the certificate is about exactly net((x - mean) / std).
        onnx = prepare_model(onnx, job.mean, job.std, strip_softmax=False)
    options = SearchOptions(timeout=job.timeout, order=job.order, step=job.step, jobs=job.jobs,
                            max_calls=job.max_calls)
    net = load_network(onnx)
    domain = loaded.domain or Box.from_arrays([0.0] * loaded.x.size, [1.0] * loaded.x.size)
    check_input(loaded, net.inputs, domain)
    try:
        instance = Instance.make(onnx, loaded.x, job.label, domain, job.delta, job.margin)
    except InputError as exc:
        # Shape, domain and grid problems are about the input: name its file in the one-line error.
        exc.path = exc.path or loaded.source
        raise
    _check_labels(job, loaded, instance)
    if oracle is None:
        oracle = make_oracle(job.oracle)
    start = time.perf_counter()
    result, dual, prober = certify(instance, oracle, job.method, job.dual, options, on_call)
    seconds = time.perf_counter() - start
    normalization = None
    if job.mean is not None and job.std is not None:
        normalization = {"mean": list(job.mean), "std": list(job.std),
                         "original_network": str(Path(job.onnx).resolve())}
    extra: dict[str, Any] = {"normalization": normalization}
    if loaded.label is not None:
        extra["input_true_label"] = {"label": loaded.label, "source": loaded.label_source}
    write_certificate(out, prober, result, dual, source=loaded.source, shape=loaded.shape, seconds=seconds,
                      extra=extra)
    metrics = box_metrics(result.box, instance.x, instance.domain)
    return CertifyOutcome(job, instance, result, dual, prober, seconds, out, metrics)
