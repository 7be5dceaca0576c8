"""Compare oracles on equal footing: the harness's per-instance flow for each, then the scorer's judgement.

Every oracle runs every instance of a benchmark folder through the same runner: a fresh
``python -m vnnbridge vnncomp-prepare`` (600 s limit) and ``vnncomp-run`` (killed at
TIMEOUT + 60 s), with the oracle chosen by ``VNNBRIDGE_ORACLE``, the same timeout, the same
BLAS/OpenMP thread limit and a result file pre-filled with ``no_result_in_file``. As in the
harness, the first line of the result file with all whitespace removed is the answer, and an
answer that took longer than TIMEOUT counts as `timeout` (newer scoring).

Equal footing: tools start slowly (abcrown ~8 s, nnenum ~2.5 s of interpreter and imports before
any solving, the embedded oracle well under a second). Before the instances, each oracle's start-up
is measured on its own (``vnnbridge oracles --check``: the tiny bundled instance, whose solving
takes no time) and each oracle then gets TIMEOUT *plus its own start-up* per instance; the
solving time reported is the run time minus that start-up, and an answer whose solving time
exceeds TIMEOUT counts as `timeout`. The start-up is its own column. Tool output is unbuffered
(``PYTHONUNBUFFERED=1``), and every instance leaves under ``--out/ORACLE/``: the harness log
(``STEM.log``), the tool's own log (``STEM.tool.log``), the result file, and a line in
``outcomes.csv`` with the reason of every answer that is not a plain sat/unsat. Every oracle sees
the same derived model (`vnnbridge.vnncomp.run`: Softmax stripped as `query` does).

Judgement: a `sat` is correct only when its witness passes the scorer's checks
(`scoring.check_counterexample`); an `unsat` is wrong when another oracle gave a valid witness
for the same instance. Correct answers score +10, wrong ones -150, anything else 0.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import statistics
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from vnnbridge.cache import atomic_write, sha256_bytes
from vnnbridge.errors import InputError, VnnbridgeError
from vnnbridge.vnncomp.export import read_instances
from vnnbridge.vnncomp.scoring import CORRECT_POINTS, WRONG_POINTS

__all__ = ["KILL_AFTER", "PREFILL", "PREPARE_LIMIT", "STARTUP_LIMIT", "OracleComparison", "Outcome", "Startup",
           "Summary", "compare_oracles", "draw_cactus", "format_table", "measure_startup", "run_one"]

log = logging.getLogger(__name__)

PREFILL = "no_result_in_file"
PREPARE_LIMIT = 600.0
KILL_AFTER = 60.0  # the harness kills run_instance.sh at TIMEOUT + 60 s
STARTUP_LIMIT = 180.0  # seconds a tool may take on the tiny instance when its start-up is measured
# The largest tool log copied under --out (bytes); a longer one is referred to by its path.
_TOOL_LOG_CAP = 4 * 1024 * 1024
_WORDS = {"sat", "unsat", "timeout", "unknown", "error"}
# The 2021 harness words, still written by some tools.
_ALIASES = {"holds": "unsat", "violated": "sat"}


@dataclass(frozen=True)
class Outcome:
    """One oracle on one instance: what the harness saw and how the scorer judges it."""

    oracle: str
    category: str
    onnx: Path
    vnnlib: Path
    timeout: float
    prepare_time: float
    result: str  # harness word (sat, unsat, timeout, unknown, error, or what the file said)
    run_time: float
    result_file: Path
    witness_ok: bool | None = None  # for sat: whether the witness passes the scorer's checks
    reason: str = ""
    wrong: bool = False
    startup: float = 0.0  # the oracle's measured start-up, added to its time limit, subtracted here

    @property
    def solve_time(self) -> float:
        """The run time less the oracle's start-up: the time it spent solving."""
        return max(0.0, self.run_time - self.startup)

    @property
    def recovered(self) -> bool:
        """A sat whose witness vnnbridge found (the tool gave none that holds)."""
        from vnnbridge.oracles.witness import RECOVERED

        return self.result == "sat" and self.reason.startswith(RECOVERED)

    @property
    def key(self) -> tuple[str, str]:
        """The instance this outcome is about."""
        return (str(self.onnx), str(self.vnnlib))

    @property
    def solved(self) -> bool:
        """A correct sat or unsat."""
        return self.result in ("sat", "unsat") and not self.wrong

    @property
    def score(self) -> int:
        """Points under the current scoring: +10 correct, -150 wrong, else 0."""
        return WRONG_POINTS if self.wrong else CORRECT_POINTS if self.solved else 0


@dataclass(frozen=True)
class Summary:
    """One table row: counts, times and score of one oracle."""

    oracle: str
    sat: int
    unsat: int
    timeout: int
    unknown: int
    error: int
    bogus: int
    wrong: int
    median_s: float
    total_s: float
    score: int
    startup_s: float = 0.0
    recovered: int = 0


@dataclass
class OracleComparison:
    """All outcomes, the per-oracle summaries and the instances on which the oracles disagree."""

    outcomes: list[Outcome]
    oracles: list[str]
    disagreements: list[str] = field(default_factory=list)
    startups: dict[str, Startup] = field(default_factory=dict)

    def summaries(self) -> list[Summary]:
        """One summary per oracle, in the order given."""
        rows = []
        for name in self.oracles:
            mine = [o for o in self.outcomes if o.oracle == name]
            times = [o.solve_time for o in mine]
            rows.append(Summary(
                name,
                sat=sum(o.result == "sat" and not o.wrong for o in mine),
                unsat=sum(o.result == "unsat" and not o.wrong for o in mine),
                timeout=sum(o.result == "timeout" for o in mine),
                unknown=sum(o.result == "unknown" for o in mine),
                error=sum(o.result not in ("sat", "unsat", "timeout", "unknown") for o in mine),
                bogus=sum(o.result == "sat" and o.witness_ok is False for o in mine),
                wrong=sum(o.wrong for o in mine),
                median_s=statistics.median(times) if times else 0.0,
                total_s=sum(times),
                score=sum(o.score for o in mine),
                startup_s=self.startups[name].seconds if name in self.startups else 0.0,
                recovered=sum(o.recovered and not o.wrong for o in mine)))
        return rows


def _first_word(path: Path) -> str:
    try:
        with path.open("r", errors="replace") as stream:
            line = stream.readline()
    except OSError:
        return "error"
    word = "".join(line.split()).lower()
    return _ALIASES.get(word, word)


def _python() -> list[str]:
    return [sys.executable, "-m", "vnnbridge"]


@dataclass(frozen=True)
class Startup:
    """An oracle's start-up as measured on the tiny instance: seconds, whether it answered, and why not."""

    seconds: float
    ready: bool
    reason: str = ""


def measure_startup(oracle: str, folder: Path, threads: int = 1) -> Startup:
    """Run ``vnnbridge oracles --check ORACLE`` once; its seconds are the oracle's start-up.

    A portfolio's start-up is its slowest member's (each measured alone), so that every member
    gets the full solving time, as it would alone.
    """
    from vnnbridge.oracles.process import run_command

    kind, _, members = oracle.partition(":")
    if kind == "portfolio":
        from vnnbridge.oracles.portfolio import split_members

        ups = [measure_startup(m, folder / f"member{i}", threads) for i, m in enumerate(split_members(members))]
        reasons = "; ".join(u.reason for u in ups if not u.ready)
        return Startup(max(u.seconds for u in ups), any(u.ready for u in ups), reasons)

    folder.mkdir(parents=True, exist_ok=True)
    check: dict[str, Any] | None = None
    for attempt in (1, 2):
        # A check that wrote no answer at all (the process died) is tried once more: a lost
        # measurement would mark the tool "did not start" for a whole comparison. A "not ready"
        # answer is the tool's and is not retried.
        log_file = folder / ("startup.log" if attempt == 1 else "startup-2.log")
        run = run_command([*_python(), "oracles", "--check", oracle, "--json", "--timeout", repr(STARTUP_LIMIT)],
                          timeout=STARTUP_LIMIT, slack=30.0, log=log_file, threads=threads)
        check = _check_answer(run.output())
        if check is not None:
            break
        log.warning("%s: the start-up check wrote no answer (attempt %d): %s", oracle, attempt, run.tail(300))
    if check is None:
        return Startup(0.0, False, f"the check wrote no answer: {run.tail(300)}")
    ready, seconds = bool(check["ready"]), float(check["seconds"])
    if not ready:
        tail = " | ".join(check.get("tail") or [])
        return Startup(0.0, False, f"not ready: {check.get('reason', '')}" + (f"; log: {tail[-300:]}" if tail else ""))
    return Startup(seconds, True)


def _check_answer(output: str) -> dict[str, Any] | None:
    """The JSON answer of ``oracles --check --json`` in ``output`` (its last line starting "["), or None."""
    line = next((ln for ln in reversed(output.splitlines()) if ln.startswith("[")), "")
    try:
        check = json.loads(line)[0]
        bool(check["ready"]), float(check["seconds"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return check if isinstance(check, dict) else None


def _read_answer(path: Path) -> dict[str, object]:
    try:
        answer = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return answer if isinstance(answer, dict) else {}


def _keep_tool_log(answer: dict[str, object], target: Path) -> None:
    source = Path(str(answer.get("log") or ""))
    if not answer.get("log") or not source.is_file():
        return
    try:
        if source.stat().st_size <= _TOOL_LOG_CAP:
            shutil.copyfile(source, target)
        else:
            target.write_text(f"(log too large to copy: {source})\n")
    except OSError as exc:
        log.warning("cannot copy the tool log %s: %s", source, exc)


def run_one(oracle: str, category: str, onnx: Path, vnnlib: Path, timeout: float, folder: Path,
            cwd: Path, threads: int = 1, startup: float = 0.0) -> Outcome:
    """The harness flow for one instance with one oracle; the result file goes into ``folder``.

    The oracle gets ``timeout + startup`` seconds; the solving time is the run time less ``startup``.
    """
    from vnnbridge.oracles.process import run_command
    from vnnbridge.vnncomp.run import ANSWER_JSON, STARTUP_VARIABLE

    name = f"{Path(onnx).stem}__{Path(vnnlib).name.removesuffix('.gz').removesuffix('.vnnlib')}"
    stem = f"{name[:80]}-{sha256_bytes(f'{onnx}|{vnnlib}'.encode())[:8]}"
    folder.mkdir(parents=True, exist_ok=True)
    results = folder / f"{stem}.counterexample"
    answer_file = folder / f"{stem}.answer.json"
    answer_file.unlink(missing_ok=True)
    # Own scope: a prepare elsewhere never ends this comparison's tools.
    env = {"VNNBRIDGE_ORACLE": oracle, "VNNBRIDGE_RUN_SCOPE": f"compare-{os.getpid()}",
           ANSWER_JSON: str(answer_file.resolve()), STARTUP_VARIABLE: repr(float(startup))}
    args = ["--category", category, "--onnx", str(onnx), "--vnnlib", str(vnnlib)]
    prep = run_command([*_python(), "vnncomp-prepare", *args, "--no-cleanup"], timeout=PREPARE_LIMIT,
                       slack=0.0, log=folder / f"{stem}.prepare.log", env=env, cwd=cwd, threads=threads)
    results.write_text(PREFILL)
    limit = timeout + startup
    run = run_command([*_python(), "vnncomp-run", *args, "--results", str(results.resolve()),
                       "--timeout", repr(float(limit))], timeout=limit, slack=KILL_AFTER,
                      log=folder / f"{stem}.log", env=env, cwd=cwd, threads=threads)
    word = _first_word(results)
    answer = _read_answer(answer_file)
    _keep_tool_log(answer, folder / f"{stem}.tool.log")
    reason = str(answer.get("reason") or "")
    solve = max(0.0, run.seconds - startup)
    if solve > timeout and word in ("sat", "unsat"):
        reason = f"answered {word} after {solve:.1f} s of solving > TIMEOUT"
        word = "timeout"
    elif word not in _WORDS:
        reason = f"result file says {word[:40]!r}; log: {run.tail(200)}"
        word = "error"
    elif not reason and word not in ("sat", "unsat"):
        reason = f"exit {run.returncode}; log: {run.tail(200)}"
    outcome = Outcome(oracle, category, Path(onnx), Path(vnnlib), timeout, prep.seconds, word, run.seconds,
                      results, reason=reason, startup=startup)
    if word == "sat":
        ok, why = _check_witness(results, Path(cwd) / onnx, Path(cwd) / vnnlib)
        outcome = replace(outcome, witness_ok=ok, wrong=not ok, reason=reason if ok else why)
    return outcome


def _check_witness(results: Path, onnx: Path, vnnlib: Path) -> tuple[bool, str]:
    from vnnbridge.network import load_network
    from vnnbridge.vnncomp.results import read_result
    from vnnbridge.vnncomp.scoring import check_counterexample
    from vnnbridge.vnnlib.parser import parse_file

    try:
        answer = read_result(results)
        net = load_network(onnx)
        spec = parse_file(vnnlib)
    except (VnnbridgeError, ValueError) as exc:
        return False, f"witness unreadable: {exc}"
    if answer.x is None:
        return False, "sat without a witness"
    check = check_counterexample(net, spec, answer.x, answer.y)
    return check.ok, check.reason


def compare_oracles(folder: str | Path, oracles: Sequence[str], out: str | Path, timeout: float | None = None,
                    jobs: int = 1, threads: int = 1, category: str | None = None) -> OracleComparison:
    """Run every oracle on every instance of the benchmark ``folder``; write results.csv per oracle."""
    if not oracles:
        raise InputError("give at least one --oracle")
    if len(set(oracles)) != len(oracles):
        raise InputError("an oracle is named twice")
    if jobs < 1 or threads < 1:
        raise InputError("--jobs and --threads must be >= 1")
    root = Path(folder).resolve()
    rows = read_instances(root)
    cat = category or root.name
    out_dir = Path(out).resolve()
    startups = {o: measure_startup(o, out_dir / _folder_name(o), threads) for o in oracles}
    for name, up in startups.items():
        log.info("%s: start-up %.1f s%s", name, up.seconds, "" if up.ready else f" ({up.reason})")
    work = [(o, onnx, vnnlib, timeout or t) for o in oracles for onnx, vnnlib, t in rows]
    done: list[Outcome] = []
    lock = threading.Lock()

    def _job(item: tuple[str, Path, Path, float]) -> Outcome:
        oracle, onnx, vnnlib, limit = item
        # The harness's working directory is the benchmark folder and paths are relative to it.
        outcome = run_one(oracle, cat, onnx.relative_to(root), vnnlib.relative_to(root), limit,
                          out_dir / _folder_name(oracle), root, threads, startups[oracle].seconds)
        with lock:
            done.append(outcome)
            log.info("%s %s %s: %s %.1f s", oracle, onnx.name, vnnlib.name, outcome.result, outcome.run_time)
        return outcome

    if jobs == 1:
        outcomes = [_job(item) for item in work]
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            outcomes = list(pool.map(_job, work))
    outcomes = [_resolve(outcomes, o) for o in outcomes]
    comparison = OracleComparison(outcomes, list(oracles), _disagreements(outcomes), startups)
    for name in oracles:
        mine = [o for o in outcomes if o.oracle == name]
        _write_results(out_dir / _folder_name(name) / "results.csv", mine)
        _write_outcomes(out_dir / _folder_name(name) / "outcomes.csv", mine, startups[name])
    return comparison


def _folder_name(oracle: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in oracle)


def _resolve(outcomes: list[Outcome], outcome: Outcome) -> Outcome:
    """Mark an unsat wrong when another oracle has a valid witness for the same instance."""
    if outcome.result != "unsat":
        return outcome
    refuting = [o.oracle for o in outcomes if o.key == outcome.key and o.result == "sat" and o.witness_ok]
    if refuting:
        return replace(outcome, wrong=True, reason=f"unsat, but {', '.join(refuting)} gave a valid witness")
    return outcome


def _disagreements(outcomes: list[Outcome]) -> list[str]:
    lines = []
    keys = sorted({o.key for o in outcomes})
    for key in keys:
        mine = [o for o in outcomes if o.key == key]
        verdicts = {o.result for o in mine if o.result in ("sat", "unsat")}
        if len(verdicts) > 1 or any(o.wrong for o in mine):
            said = ", ".join(f"{o.oracle}={o.result}" + (" (wrong: " + o.reason + ")" if o.wrong else "")
                             for o in mine)
            lines.append(f"{Path(key[0]).name} {Path(key[1]).name}: {said}")
    return lines


def _write_results(path: Path, outcomes: list[Outcome]) -> None:
    # The harness's results.csv, with the solving time (start-up subtracted) as the run time.
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    for o in outcomes:
        writer.writerow([o.category, str(o.onnx), str(o.vnnlib), f"{o.prepare_time:.6f}", o.result,
                         f"{o.solve_time:.6f}"])
    atomic_write(path, text.getvalue())


def _write_outcomes(path: Path, outcomes: list[Outcome], startup: Startup) -> None:
    # One line per instance with the reason of every answer; the start-up check's line first.
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["onnx", "vnnlib", "result", "solve_s", "run_s", "startup_s", "witness_ok", "reason"])
    writer.writerow(["(start-up check)", "", "ready" if startup.ready else "not ready", "", "",
                     f"{startup.seconds:.3f}", "", startup.reason])
    for o in outcomes:
        writer.writerow([str(o.onnx), str(o.vnnlib), o.result, f"{o.solve_time:.3f}", f"{o.run_time:.3f}",
                         f"{o.startup:.3f}", "" if o.witness_ok is None else str(o.witness_ok), o.reason])
    atomic_write(path, text.getvalue())


def format_table(comparison: OracleComparison) -> str:
    """The comparison table as aligned text, followed by the disagreements."""
    head = ("oracle", "sat", "unsat", "timeout", "unknown", "error", "bogus", "wrong", "sat by vnnbridge",
            "start-up s", "median s", "total s", "score")
    rows = [head] + [(s.oracle, str(s.sat), str(s.unsat), str(s.timeout), str(s.unknown), str(s.error),
                      str(s.bogus), str(s.wrong), str(s.recovered), f"{s.startup_s:.1f}", f"{s.median_s:.2f}",
                      f"{s.total_s:.1f}", str(s.score))
                     for s in comparison.summaries()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    if comparison.disagreements:
        lines.append(f"disagreements ({len(comparison.disagreements)}):")
        lines += [f"  {d}" for d in comparison.disagreements]
    else:
        lines.append("disagreements: none")
    reasons = [f"  {o.oracle} {Path(o.vnnlib).name}: {o.result}: {o.reason[:200]}"
               for o in comparison.outcomes if o.result in ("error", "unknown") or o.wrong]
    not_ready = [f"  {name}: {up.reason[:300]}" for name, up in comparison.startups.items() if not up.ready]
    if not_ready:
        lines.append("oracles that did not start on the tiny instance:")
        lines += not_ready
    if reasons:
        lines.append(f"reasons of errors and unknowns ({len(reasons)}):")
        lines += reasons
    return "\n".join(lines)


def draw_cactus(comparison: OracleComparison, path: str | Path) -> Path:
    """A cactus plot (instances solved correctly vs solving time) per oracle, written to ``path``.

    Raises a one-line `VnnbridgeError` naming the ``plot`` extra when matplotlib is missing.
    """
    try:
        import matplotlib
    except ImportError:
        raise VnnbridgeError("--plot needs matplotlib: pip install 'vnnbridge[plot]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from vnnbridge.plot import save_figure

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name in comparison.oracles:
        times = sorted(o.solve_time for o in comparison.outcomes if o.oracle == name and o.solved)
        ax.step(times, range(1, len(times) + 1), where="post", label=f"{name} ({len(times)})")
    ax.set_xlabel("time per instance (s)")
    ax.set_ylabel("instances solved")
    ax.set_xscale("log")
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    return save_figure(fig, path, dpi=120)
