"""Marabou through its command vs its Python API in a child process, and the runner's own cost.

Part 1, the runner: ``run_command(["true"])`` against a bare ``subprocess.run(["true"])`` in
the same process (the price of a new session, a log file, the group kill and the reader).

Part 2, Marabou: the same robustness queries (paper networks, first N images, l-inf cubes
at the given radii) through ``marabou`` (the command, 6-decimal witnesses) and
``marabou`` with ``mode="api"`` (maraboupy in a child process, full-precision witnesses).
Printed per mode: sat/unsat/other, witnesses that needed the local repair, median and p90
seconds, and the median ratio of the query's time to the command's.

    .venv/bin/python benchmarks/marabou_modes.py [--images 4] [--radii 0.02,0.08,0.2] [--runs 50]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vnnbridge.box import Box
from vnnbridge.network import load_network
from vnnbridge.oracles.base import Query, Verdict
from vnnbridge.oracles.process import run_command
from vnnbridge.oracles.registry import is_available, make_oracle
from vnnbridge.vnnlib.model import robustness_spec

UNIT = Box.from_arrays(np.zeros(784), np.ones(784))


class _RepairCounter(logging.Handler):
    """Counts the witness module's 'repaired' messages."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "repaired" in record.getMessage()


def _p90(values: list[float]) -> float:
    return float(np.percentile(values, 90)) if values else float("nan")


def runner_overhead(runs: int, folder: Path) -> None:
    """Print the runner's per-call cost against a bare subprocess.run."""
    bare, ours = [], []
    for i in range(runs):
        start = time.perf_counter()
        subprocess.run(["true"], check=True)
        bare.append(time.perf_counter() - start)
        start = time.perf_counter()
        run_command(["true"], timeout=10, log=folder / f"log{i}.txt")
        ours.append(time.perf_counter() - start)
    b, o = statistics.median(bare), statistics.median(ours)
    print(f"{'call':<28}{'median ms':>10}{'p90 ms':>10}{'ratio':>8}")
    print(f"{'subprocess.run(true)':<28}{b * 1e3:>10.2f}{_p90(bare) * 1e3:>10.2f}{1.0:>8.2f}")
    print(f"{'run_command(true)':<28}{o * 1e3:>10.2f}{_p90(ours) * 1e3:>10.2f}{o / b:>8.2f}")


def marabou_modes(shared: Path, images: int, radii: list[float], timeout: float, folder: Path) -> None:
    """Print the command-vs-API table over the same queries."""
    queries = []
    for data in ("mnist", "fmnist"):
        onnx = shared / "data" / "paper" / "networks" / f"{data}_784_32_10.onnx"
        net = load_network(onnx)
        for path in sorted((shared / "data" / "paper" / data / "images").glob("*.csv"))[:images]:
            x = np.loadtxt(path).ravel()
            for r in radii:
                queries.append(Query.build(onnx, robustness_spec(Box.cube(x, r, UNIT), net.predict(x), 10), folder))
    counter = _RepairCounter()
    logging.getLogger("vnnbridge.oracles.witness").addHandler(counter)
    logging.getLogger("vnnbridge.oracles.witness").setLevel(logging.INFO)
    table: dict[str, dict[str, object]] = {}
    times: dict[str, list[float]] = {}
    for mode in ("command", "api"):
        oracle = make_oracle("marabou", mode=mode)
        counter.count, verdicts, seconds = 0, [], []
        for query in queries:
            start = time.perf_counter()
            verdicts.append(oracle.check(query, timeout).verdict)
            seconds.append(time.perf_counter() - start)
        times[mode] = seconds
        table[mode] = {"sat": verdicts.count(Verdict.SAT), "unsat": verdicts.count(Verdict.UNSAT),
                       "other": sum(v not in (Verdict.SAT, Verdict.UNSAT) for v in verdicts),
                       "repaired": counter.count}
    print(f"\n{len(queries)} queries (paper networks, {images} images each, radii {radii})")
    print(f"{'mode':<10}{'sat':>5}{'unsat':>7}{'other':>7}{'repaired':>10}{'median s':>10}{'p90 s':>8}{'ratio':>8}")
    for mode, row in table.items():
        ratio = statistics.median(a / b for a, b in zip(times[mode], times["command"]))
        print(f"{mode:<10}{row['sat']:>5}{row['unsat']:>7}{row['other']:>7}{row['repaired']:>10}"
              f"{statistics.median(times[mode]):>10.2f}{_p90(times[mode]):>8.2f}{ratio:>8.2f}")


def main() -> int:
    """Run both parts and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--radii", default="0.02,0.08,0.2")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runner_overhead(args.runs, Path(tmp))
        if not is_available("marabou"):
            print("marabou is not installed: part 2 skipped", file=sys.stderr)
            return 0
        marabou_modes(Path(args.shared), args.images, [float(r) for r in args.radii.split(",")],
                      args.timeout, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
