"""Compare oracles on equal footing: the harness's per-instance flow for each, then the scorer's judgement.

Every oracle runs every instance of a benchmark folder through the same runner: a fresh
``python -m vnnbridge vnncomp-prepare`` (600 s limit) and ``vnncomp-run`` (killed at
TIMEOUT + 60 s), with the oracle chosen by ``VNNBRIDGE_ORACLE``, the same timeout, the same
BLAS/OpenMP thread limit and a result file pre-filled with ``no_result_in_file``. As in the
harness, the first line of the result file with all whitespace removed is the answer, and an
answer that took longer than TIMEOUT counts as `timeout` (newer scoring).

Judgement: a `sat` is correct only when its witness passes the scorer's checks
(`scoring.check_counterexample`); an `unsat` is wrong when another oracle gave a valid witness
for the same instance. Correct answers score +10, wrong ones -150, anything else 0.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import statistics
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from vnnbridge.cache import atomic_write, sha256_bytes
from vnnbridge.errors import InputError, VnnbridgeError
from vnnbridge.vnncomp.export import read_instances
from vnnbridge.vnncomp.scoring import CORRECT_POINTS, WRONG_POINTS

__all__ = ["KILL_AFTER", "PREFILL", "PREPARE_LIMIT", "OracleComparison", "Outcome", "Summary", "compare_oracles",
           "draw_cactus", "format_table", "run_one"]

log = logging.getLogger(__name__)

PREFILL = "no_result_in_file"
PREPARE_LIMIT = 600.0
KILL_AFTER = 60.0  # the harness kills run_instance.sh at TIMEOUT + 60 s
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


@dataclass
class OracleComparison:
    """All outcomes, the per-oracle summaries and the instances on which the oracles disagree."""

    outcomes: list[Outcome]
    oracles: list[str]
    disagreements: list[str] = field(default_factory=list)

    def summaries(self) -> list[Summary]:
        """One summary per oracle, in the order given."""
        rows = []
        for name in self.oracles:
            mine = [o for o in self.outcomes if o.oracle == name]
            times = [o.run_time for o in mine]
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
                score=sum(o.score for o in mine)))
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


def run_one(oracle: str, category: str, onnx: Path, vnnlib: Path, timeout: float, folder: Path,
            cwd: Path, threads: int = 1) -> Outcome:
    """The harness flow for one instance with one oracle; the result file goes into ``folder``."""
    from vnnbridge.oracles.process import run_command

    name = f"{Path(onnx).stem}__{Path(vnnlib).name.removesuffix('.gz').removesuffix('.vnnlib')}"
    stem = f"{name[:80]}-{sha256_bytes(f'{onnx}|{vnnlib}'.encode())[:8]}"
    folder.mkdir(parents=True, exist_ok=True)
    results = folder / f"{stem}.counterexample"
    # Own scope: a prepare elsewhere never ends this comparison's tools.
    env = {"VNNBRIDGE_ORACLE": oracle, "VNNBRIDGE_RUN_SCOPE": f"compare-{os.getpid()}"}
    args = ["--category", category, "--onnx", str(onnx), "--vnnlib", str(vnnlib)]
    prep = run_command([*_python(), "vnncomp-prepare", *args, "--no-cleanup"], timeout=PREPARE_LIMIT,
                       slack=0.0, log=folder / f"{stem}.prepare.log", env=env, cwd=cwd, threads=threads)
    results.write_text(PREFILL)
    run = run_command([*_python(), "vnncomp-run", *args, "--results", str(results.resolve()),
                       "--timeout", repr(float(timeout))], timeout=timeout, slack=KILL_AFTER,
                      log=folder / f"{stem}.log", env=env, cwd=cwd, threads=threads)
    word = _first_word(results)
    reason = ""
    if run.seconds > timeout and word in ("sat", "unsat"):
        reason = f"answered {word} after {run.seconds:.1f} s > TIMEOUT"
        word = "timeout"
    elif word not in _WORDS:
        reason = f"result file says {word[:40]!r}"
        word = "error"
    outcome = Outcome(oracle, category, Path(onnx), Path(vnnlib), timeout, prep.seconds, word, run.seconds,
                      results, reason=reason or ("" if run.returncode == 0 else f"exit {run.returncode}"))
    if word == "sat":
        ok, why = _check_witness(results, Path(cwd) / onnx, Path(cwd) / vnnlib)
        outcome = replace(outcome, witness_ok=ok, wrong=not ok, reason=why or outcome.reason)
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
    work = [(o, onnx, vnnlib, timeout or t) for o in oracles for onnx, vnnlib, t in rows]
    done: list[Outcome] = []
    lock = threading.Lock()

    def _job(item: tuple[str, Path, Path, float]) -> Outcome:
        oracle, onnx, vnnlib, limit = item
        # The harness's working directory is the benchmark folder and paths are relative to it.
        outcome = run_one(oracle, cat, onnx.relative_to(root), vnnlib.relative_to(root), limit,
                          out_dir / _folder_name(oracle), root, threads)
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
    comparison = OracleComparison(outcomes, list(oracles), _disagreements(outcomes))
    for name in oracles:
        _write_results(out_dir / _folder_name(name) / "results.csv", [o for o in outcomes if o.oracle == name])
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
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    for o in outcomes:
        writer.writerow([o.category, str(o.onnx), str(o.vnnlib), f"{o.prepare_time:.6f}", o.result,
                         f"{o.run_time:.6f}"])
    atomic_write(path, text.getvalue())


def format_table(comparison: OracleComparison) -> str:
    """The comparison table as aligned text, followed by the disagreements."""
    head = ("oracle", "sat", "unsat", "timeout", "unknown", "error", "bogus", "wrong", "median s", "total s",
            "score")
    rows = [head] + [(s.oracle, str(s.sat), str(s.unsat), str(s.timeout), str(s.unknown), str(s.error),
                      str(s.bogus), str(s.wrong), f"{s.median_s:.2f}", f"{s.total_s:.1f}", str(s.score))
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
    return "\n".join(lines)


def draw_cactus(comparison: OracleComparison, path: str | Path) -> Path:
    """A cactus plot (instances solved correctly vs time) per oracle, written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from vnnbridge.plot import save_figure

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name in comparison.oracles:
        times = sorted(o.run_time for o in comparison.outcomes if o.oracle == name and o.solved)
        ax.step(times, range(1, len(times) + 1), where="post", label=f"{name} ({len(times)})")
    ax.set_xlabel("time per instance (s)")
    ax.set_ylabel("instances solved")
    ax.set_xscale("log")
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    return save_figure(fig, path, dpi=120)
