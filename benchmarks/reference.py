"""The reference benchmark: the paper's 99 images (MNIST and Fashion-MNIST, 784-32-10 ReLU nets).

For every image and method: certified?, apothem (and whether it is grid-exact), min/avg/max
edge, calls, seconds, and the dual's apothem. Rows are appended to a CSV as they finish, and a
rerun skips the (dataset, image, method, oracle) rows already there, so an interrupted run
resumes. The summary table prints the upstream reference numbers (data/paper/SOURCES.md)
alongside, and ratios against the ``cube-bisect`` baseline measured in the same run.

    python benchmarks/reference.py                       # everything (long)
    python benchmarks/reference.py --limit 5 --methods apothem,cube-bisect
    python benchmarks/reference.py --summary-only        # just print the table from the CSV
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from vnnbridge.errors import VnnbridgeError
from vnnbridge.inputs import load_input
from vnnbridge.oracles.registry import make_oracle
from vnnbridge.search.base import Instance, SearchOptions
from vnnbridge.search.compose import certify
from vnnbridge.search.metrics import box_metrics

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VNNBRIDGE_SHARED") or ROOT.parent / "shared")
DATASETS = {"mnist": "mnist_784_32_10.onnx", "fmnist": "fmnist_784_32_10.onnx"}
# Upstream results (SOURCES.md): top-down box min edge, cube bisection radius and its calls.
REFERENCE = {"mnist": {"min_edge": 0.13, "cube_radius": 0.066, "cube_calls": 4},
             "fmnist": {"min_edge": 0.175, "cube_radius": 0.1175, "cube_calls": 4}}
FIELDS = ["dataset", "image", "true_class", "label", "method", "dual", "oracle", "certified", "apothem",
          "apothem_steps", "exact", "min_edge", "avg_edge", "max_edge", "log_volume", "complexity", "blocked",
          "stuck", "calls", "dual_calls", "dual_apothem", "seconds", "dual_seconds"]


def paper_images(dataset: str) -> list[Path]:
    """The reference instances of one paper data set, in the reference's order (0-1, 0-2, ..., 9-5)."""
    folder = SHARED / "data" / "paper" / dataset / "images"
    return sorted(folder.glob("*.csv"), key=lambda p: [int(t) for t in p.stem.replace("_", "-").split("-")])


def _done(path: Path) -> set[tuple[str, str, str, str]]:
    if not path.is_file():
        return set()
    with path.open() as stream:
        return {(r["dataset"], r["image"], r["method"], r["oracle"]) for r in csv.DictReader(stream)}


def _run_one(dataset: str, image: Path, method: str, dual: str | None, oracle_name: str,
             options: SearchOptions) -> dict[str, object]:
    net = SHARED / "data" / "paper" / "networks" / DATASETS[dataset]
    x = load_input(image).x
    true_class = int(image.stem.replace("_", "-").split("-")[0])
    instance = Instance.make(net, x, None)
    oracle = make_oracle(oracle_name)
    start = time.perf_counter()
    result, _, prober = certify(instance, oracle, method, None, options)
    seconds = time.perf_counter() - start
    search_calls = len(prober.calls)
    dual_apothem, dual_seconds = "", 0.0
    if dual:
        from vnnbridge.search.compose import run_dual

        t0 = time.perf_counter()
        dres = run_dual(dual, prober, result if result.certified else None)
        dual_seconds = time.perf_counter() - t0
        dual_apothem = box_metrics(dres.box, instance.x, instance.domain)["apothem"]
    m = box_metrics(result.box, instance.x, instance.domain)
    return {
        "dataset": dataset, "image": image.stem, "true_class": true_class, "label": instance.label,
        # a trivial result (apothem 0: only x itself) is never counted as certified
        "method": method, "dual": dual or "", "oracle": oracle_name, "certified": int(result.status == "certified"),
        "apothem": m["apothem"] if result.certified else 0.0,
        "apothem_steps": "" if result.cube_steps is None else result.cube_steps, "exact": int(result.exact),
        "min_edge": m["min_edge"], "avg_edge": m["avg_edge"], "max_edge": m["max_edge"],
        "log_volume": "" if m["log_volume"] is None else m["log_volume"], "complexity": m["complexity"],
        "blocked": len(result.blocked()), "stuck": len(result.stuck_faces), "calls": search_calls,
        "dual_calls": len(prober.calls) - search_calls, "dual_apothem": dual_apothem,
        "seconds": round(seconds, 3), "dual_seconds": round(dual_seconds, 3),
    }


def _summary(path: Path) -> str:
    with path.open() as stream:
        rows = list(csv.DictReader(stream))
    lines = []
    for dataset in DATASETS:
        sub = [r for r in rows if r["dataset"] == dataset]
        if not sub:
            continue
        ref = REFERENCE[dataset]
        lines.append(f"\n{dataset}: reference (upstream, Marabou, delta 0.1): top-down min edge "
                     f"{ref['min_edge']}, cube bisection radius {ref['cube_radius']} in {ref['cube_calls']} calls")
        head = (f"{'method':<22}{'n':>4}{'cert%':>7}{'exact%':>7}{'apothem':>9}{'min_e':>8}{'avg_e':>8}"
                f"{'max_e':>7}{'calls':>8}{'secs':>8}{'dual_ap':>8}{'ap/bis':>7}{'calls/bis':>10}")
        lines.append(head)
        base = [r for r in sub if r["method"] == "cube-bisect"]
        b_ap = np.mean([float(r["apothem"]) for r in base]) if base else float("nan")
        b_calls = np.mean([float(r["calls"]) for r in base]) if base else float("nan")
        for method in sorted({r["method"] for r in sub}, key=lambda m: (len(m), m)):
            rs = [r for r in sub if r["method"] == method]

            def mean(key: str, rs: list[dict[str, str]] = rs) -> float:
                vals = [float(r[key]) for r in rs if r[key] not in ("", None)]
                return float(np.mean(vals)) if vals else float("nan")

            lines.append(f"{method:<22}{len(rs):>4}{100 * mean('certified'):>7.0f}{100 * mean('exact'):>7.0f}"
                         f"{mean('apothem'):>9.4f}{mean('min_edge'):>8.4f}{mean('avg_edge'):>8.4f}"
                         f"{mean('max_edge'):>7.3f}{mean('calls'):>8.1f}{mean('seconds'):>8.2f}"
                         f"{mean('dual_apothem'):>8.3f}{mean('apothem') / b_ap:>7.2f}"
                         f"{mean('calls') / b_calls:>10.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run (or resume) the benchmark and print the summary."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="cube-bisect,apothem,cube-topdown,apothem+grow")
    ap.add_argument("--dual", default="dual-faces", help="dual method for every row, or none")
    ap.add_argument("--oracle", default="embedded")
    ap.add_argument("--datasets", default="mnist,fmnist")
    ap.add_argument("--limit", type=int, default=0, help="first N images per dataset (0: all)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per oracle call")
    ap.add_argument("--max-calls", type=int, default=5000, help="call budget per search")
    ap.add_argument("--csv", default=str(ROOT / "benchmarks" / "results" / "reference.csv"))
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    out = Path(args.csv)
    if not args.summary_only:
        out.parent.mkdir(parents=True, exist_ok=True)
        done = _done(out)
        options = SearchOptions(timeout=args.timeout, max_calls=args.max_calls)
        dual = None if args.dual == "none" else args.dual
        new_file = not out.is_file()
        with out.open("a", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=FIELDS)
            if new_file:
                writer.writeheader()
            for dataset in args.datasets.split(","):
                images = paper_images(dataset)
                images = images[: args.limit] if args.limit else images
                for image in images:
                    for method in args.methods.split(","):
                        if (dataset, image.stem, method, args.oracle) in done:
                            continue
                        try:
                            row = _run_one(dataset, image, method, dual, args.oracle, options)
                        except VnnbridgeError as exc:
                            print(f"{dataset} {image.stem} {method}: {exc}", file=sys.stderr, flush=True)
                            continue
                        writer.writerow(row)
                        stream.flush()
                        os.fsync(stream.fileno())
                        print(f"{dataset} {image.stem:>5} {method:<18} cert={row['certified']} "
                              f"apothem={float(row['apothem']):.4f} min_edge={float(row['min_edge']):.4f} "
                              f"calls={row['calls']} {row['seconds']}s", file=sys.stderr, flush=True)
    if out.is_file():
        print(_summary(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
