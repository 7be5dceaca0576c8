"""The same robustness queries through every available oracle, in one run.

Queries: for the first N images of each paper network (784-32-10 MNIST and Fashion-MNIST),
the image's robustness radius is found by bisection with the embedded oracle; the queries are
l-inf cubes (clipped to [0, 1]) at FACTORS times that radius, so they sit on both sides of it
(factors near 1 are the hard ones). Every oracle (witness-validating, as `make_oracle` builds
them) answers every query in turn. Printed per oracle: sat / unsat answers, timeouts, unknown,
errors, bogus witnesses, disagreements (a sat where another oracle said unsat, or the
reverse), wrong unsat answers (disagreements settled by the other side's validated witness),
median and p90 seconds, and the median over queries of the time ratio to Marabou.

Goal (issue 3): embedded median <= Marabou's, zero disagreements, zero bogus witnesses.

    .venv/bin/python benchmarks/oracles.py [--images 10] [--factors 0.5,0.9,1.1,2]
        [--timeout 60] [--oracles embedded,marabou] [--shared ../shared] [--csv OUT]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vnnbridge.box import Box
from vnnbridge.network import load_network
from vnnbridge.oracles.base import OracleResult, Query, Verdict
from vnnbridge.oracles.registry import BUILTIN, is_available, make_oracle
from vnnbridge.vnnlib.model import robustness_spec

UNIT = Box.from_arrays(np.zeros(784), np.ones(784))


def robustness_radius(onnx: Path, x: np.ndarray, label: int, folder: Path, steps: int = 14) -> float:
    """The l-inf robustness radius of ``x`` to 2^-steps relative precision, by the embedded oracle."""
    oracle = make_oracle("embedded")
    lo, hi = 0.0, 0.5
    for _ in range(steps):
        mid = (lo + hi) / 2
        verdict = oracle.check(Query.build(onnx, robustness_spec(Box.cube(x, mid, UNIT), label, 10), folder), 60).verdict
        if verdict is Verdict.UNSAT:
            lo = mid
        elif verdict is Verdict.SAT:
            hi = mid
        else:
            break  # inside the tolerance band: the radius is known well enough
    return (lo + hi) / 2


def queries(shared: Path, images: int, factors: list[float], folder: Path) -> list[tuple[str, Query]]:
    """(label for the table, query) for both paper networks."""
    out = []
    for data in ("mnist", "fmnist"):
        onnx = shared / f"data/paper/networks/{data}_784_32_10.onnx"
        runtime = load_network(onnx)
        for path in sorted((shared / f"data/paper/{data}/images").glob("*.csv"))[:images]:
            x = np.loadtxt(path).ravel()
            label = runtime.predict(x)
            radius = robustness_radius(onnx, x, label, folder)
            for f in factors:
                spec = robustness_spec(Box.cube(x, radius * f, UNIT), label, 10)
                out.append((f"{data}/{path.stem}@{f:g}r", Query.build(onnx, spec, folder)))
    return out


def _row(name: str, results: list[OracleResult], others: dict[str, list[OracleResult]],
         reference: list[float] | None) -> list[str]:
    verdicts = [r.verdict for r in results]
    bogus = sum(r.verdict is Verdict.ERROR and r.reason.startswith("bogus witness") for r in results)
    disagree = refuted = 0
    for i, r in enumerate(results):
        if r.verdict not in (Verdict.SAT, Verdict.UNSAT):
            continue
        opposite = Verdict.UNSAT if r.verdict is Verdict.SAT else Verdict.SAT
        clash = any(o[i].verdict is opposite for n, o in others.items() if n != name)
        disagree += clash
        # Every SAT here carries an onnxruntime-validated witness: an unsat against it is wrong.
        refuted += clash and r.verdict is Verdict.UNSAT
    secs = np.array([r.seconds for r in results])
    ratio = "-"
    if reference is not None:
        ratio = f"{np.median(secs / np.maximum(np.array(reference), 1e-6)):.4f}"
    return [name, str(verdicts.count(Verdict.SAT)), str(verdicts.count(Verdict.UNSAT)),
            str(verdicts.count(Verdict.TIMEOUT)), str(verdicts.count(Verdict.UNKNOWN)),
            str(verdicts.count(Verdict.ERROR)), str(bogus), str(disagree), str(refuted),
            f"{np.median(secs):.4f}", f"{np.percentile(secs, 90):.4f}", ratio]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10, help="images per paper network")
    parser.add_argument("--factors", default="0.5,0.9,1.1,2", help="radius factors, comma separated")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per query and oracle")
    parser.add_argument("--oracles", default="", help="comma separated (default: every available one)")
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared")
    parser.add_argument("--csv", type=Path, help="also write every answer to this CSV file")
    args = parser.parse_args(argv)
    factors = [float(f) for f in args.factors.split(",")]
    names = [n for n in args.oracles.split(",") if n] or \
        [n for n in BUILTIN if n not in ("fake",) and is_available(n)]
    oracles = {n: make_oracle(n) for n in names}
    folder = Path(tempfile.mkdtemp(prefix="vnnbridge-bench-"))
    os.environ.setdefault("VNNBRIDGE_CACHE", str(folder / "cache"))
    start = time.perf_counter()
    qs = queries(args.shared, args.images, factors, folder)
    print(f"{len(qs)} queries ({args.images} images x 2 networks x factors {factors}), "
          f"built in {time.perf_counter() - start:.1f} s; oracles: {', '.join(names)}", flush=True)
    results: dict[str, list[OracleResult]] = {n: [] for n in names}
    for n, oracle in oracles.items():
        oracle.check(qs[0][1], args.timeout)  # warm-up (compiled network, imports), not timed
        for _, q in qs:
            results[n].append(oracle.check(q, args.timeout))
        print(f"  {n}: done in {sum(r.seconds for r in results[n]):.1f} s", flush=True)
    reference = [r.seconds for r in results["marabou"]] if "marabou" in results else None
    header = ["oracle", "sat", "unsat", "timeout", "unknown", "error", "bogus", "disagree", "wrong_unsat",
              "median_s", "p90_s", "median_ratio_to_marabou"]
    rows = [header] + [_row(n, results[n], results, reference) for n in names]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    if args.csv:
        with args.csv.open("w", newline="") as stream:
            out = csv.writer(stream)
            out.writerow(["query", *names])
            for i, (label, _) in enumerate(qs):
                out.writerow([label, *(f"{results[n][i].verdict.value}:{results[n][i].seconds:.4f}" for n in names)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
