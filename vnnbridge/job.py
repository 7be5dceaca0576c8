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
from vnnbridge.search.names import DEFAULT_CROSS_EXAMINE as DEFAULT_STEPS
from vnnbridge.search.names import DEFAULT_DUAL, DEFAULT_MAX_CALLS, DEFAULT_METHOD

__all__ = ["CertifyJob", "CertifyOutcome", "confirmer_name", "default_out", "run_job", "terminate_as_interrupt"]

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
    cross_examine: int | None = DEFAULT_STEPS  # attack steps per unsat answer; None: no cross-examination
    confirm: str = "auto"  # "auto": embedded when the oracle is another one and the engine compiles the net; "none"


def confirmer_name(job: CertifyJob, onnx: str | Path) -> str | None:
    """The oracle that must confirm the final box (None: no confirmation)."""
    if job.confirm == "none":
        return None
    if job.confirm != "auto":
        return job.confirm
    if job.oracle.partition(":")[0] == "embedded":
        return None  # the main oracle already is the embedded one; the attack still cross-examines
    from vnnbridge.engine.graph import load_layer_net
    from vnnbridge.errors import ModelError

    try:
        load_layer_net(onnx)
    except ModelError:
        return None
    return "embedded"


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
    confirm: str | None = None  # the confirming oracle's name (None: no confirmation asked)

    @property
    def exit_code(self) -> int:
        """0 certified, 1 not certified or trivial, 130 interrupted after a certified box (kept in the certificate)."""
        if self.result.interrupted:
            return 130
        return 0 if self.result.status == "certified" else 1

    @property
    def refuted(self) -> int:
        """How many oracle answers were refuted (by the cross-examining attack or the confirming oracle)."""
        return len(self.prober.refutations)

    @property
    def unconfirmed(self) -> bool:
        """Certified by the main oracle, but the confirming oracle gave no ``unsat`` (timeout, unknown, ...)."""
        return self.confirm is not None and self.result.certified and self.result.confirmed is not True

    def to_json(self) -> dict[str, Any]:
        """What ``certify --json`` prints: status, box measures, calls, refutations and confirmation."""
        result, m = self.result, self.metrics
        return {
            "input": self.job.input, "label": self.instance.label, "status": str(result.status),
            "method": self.job.method, "oracle": self.prober.oracle.name,
            "apothem": m.get("apothem") if result.certified else None,
            "apothem_steps": result.cube_steps, "exact": result.exact,
            "calls": len(self.prober.calls), "seconds": self.seconds,
            "refuted": self.refuted, "confirm": self.confirm, "confirmed": result.confirmed,
            "unconfirmed": self.unconfirmed, "interrupted": result.interrupted,
            "certificate": str(self.out), "exit_code": self.exit_code,
        }

    def _trust_text(self) -> str:
        """What the summary says about refuted answers and the confirmation."""
        text = ""
        if self.refuted:
            by: dict[str, int] = {}
            for r in self.prober.refutations:
                by[r.by] = by.get(r.by, 0) + 1
            whose = sorted({r.oracle for r in self.prober.refutations})
            text += (f" {self.refuted} unsat answer{'s' if self.refuted > 1 else ''} of {', '.join(whose)} "
                     f"REFUTED with onnxruntime-confirmed counterexamples ("
                     + ", ".join(f"{n} by {k}" for k, n in sorted(by.items())) + ").")
        if self.confirm is not None and self.result.certified:
            conf = self.result.confirmation
            if self.result.confirmed:
                text += f" Confirmed by {self.confirm}."
            else:
                said = f"{conf.verdict.value}" + (f": {conf.reason}" if conf.reason else "") if conf else "not asked"
                text += f" UNCONFIRMED: {self.confirm} gave no unsat ({said})."
        return text

    def summary(self) -> str:
        """The one-line summary ``certify`` prints."""
        from vnnbridge.search.metrics import box_metrics

        job, instance, result, prober, m = self.job, self.instance, self.result, self.prober, self.metrics
        robust = sum(c.purpose == "robust" for c in prober.calls)
        member = sum(c.purpose == "member" for c in prober.calls)
        status = {"certified": "certified", "trivial": "TRIVIAL", "not certified": "NOT certified"}[result.status]
        if self.unconfirmed:
            status = "certified (UNCONFIRMED)"
        name = Path(job.input).name + ("" if job.index is None else f"[{job.index}]")
        text = (f"{name}: label {instance.label}, {status} by {job.method} with oracle "
                f"{prober.oracle.name} in {self.seconds:.2f} s ({robust} robustness calls")
        text += f", {member} dual calls)." if member else ")."
        text += self._trust_text()
        if result.status == "trivial":
            text += (" Only the input itself is robust: a counterexample lies one grid step away (apothem 0); "
                     "this is not a certification.")
        elif result.certified:
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
    from vnnbridge.search.base import Instance, Order, SearchOptions, Step
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
    try:
        order, step = Order(job.order), Step(job.step)
    except ValueError as exc:
        raise InputError(f"--order must be dfs or bfs and --step linear or bisect ({exc})") from None
    options = SearchOptions(timeout=job.timeout, order=order, step=step, jobs=job.jobs,
                            max_calls=job.max_calls, cross_examine=job.cross_examine)
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
    confirm = confirmer_name(job, onnx)
    confirmer = make_oracle(confirm) if confirm is not None else None
    start = time.perf_counter()
    result, dual, prober = certify(instance, oracle, job.method, job.dual, options, on_call, confirmer)
    seconds = time.perf_counter() - start
    normalization = None
    if job.mean is not None and job.std is not None:
        normalization = {"mean": list(job.mean), "std": list(job.std),
                         "original_network": str(Path(job.onnx).resolve())}
    extra: dict[str, Any] = {"normalization": normalization}
    if loaded.label is not None:
        extra["input_true_label"] = {"label": loaded.label, "source": loaded.label_source}
    write_certificate(out, prober, result, dual, source=loaded.source, shape=loaded.shape, seconds=seconds,
                      extra=extra, confirm=confirm)
    metrics = box_metrics(result.box, instance.x, instance.domain)
    return CertifyOutcome(job, instance, result, dual, prober, seconds, out, metrics, confirm)
