"""Audit of Marabou-based certificates on the paper's 99 reference instances, refereed independently.

Configurations (each a row per image):

- ``ref-bisect``: the reference's cube bisection at delta 1/16, oracle Marabou, no cross-examination,
  no confirmation (the answers taken at their word, as the reference code does);
- ``ref-exact``: the grid-exact cube search (``apothem``, delta 1/255), same trust as above;
- ``default``: ``vnnbridge certify --oracle marabou`` as shipped (apothem, cross-examination by the
  attack and confirmation by the embedded oracle), to measure what the defences catch and cost;
- ``truth``: the embedded oracle's grid-exact r* at delta 1/255 and 1/16 (the yardstick).

Every claimed box is refereed by the embedded oracle (complete: a validated witness or unsat)
and by a stronger attack than the search's (16 restarts x 200 steps); a box with an
onnxruntime-confirmed counterexample is *refuted*, with its counterexample margin (best other
logit minus the label's). Rows go to a CSV as they finish; a rerun skips rows already there,
so a capped run can be resumed (``--deadline`` stops starting new rows after N seconds).

    python benchmarks/audit.py --datasets fmnist --deadline 3000      # all 50 Fashion-MNIST images
    python benchmarks/audit.py --summary-only
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
from vnnbridge.oracles.base import Verdict
from vnnbridge.oracles.registry import make_oracle
from vnnbridge.search.base import Instance, Prober, Purpose, SearchOptions
from vnnbridge.search.compose import certify
from vnnbridge.search.crossexam import Falsifier, counterexample_margin

from reference import paper_images  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VNNBRIDGE_SHARED") or ROOT.parent / "shared")
DATASETS = {"mnist": "mnist_784_32_10.onnx", "fmnist": "fmnist_784_32_10.onnx"}
# name -> (method, delta, cross-examine, confirm)
CONFIGS = {
    "ref-bisect": ("cube-bisect", 1 / 16, False, False),
    "ref-exact": ("apothem", 1 / 255, False, False),
    "default": ("apothem", 1 / 255, True, True),
}
FIELDS = ["dataset", "image", "config", "label", "status", "radius", "steps", "calls", "seconds", "refuted_answers",
          "trust_seconds", "referee", "counterexample_margin", "true_steps", "true_steps_16"]


def _done(path: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    if not path.is_file():
        return {}
    with path.open() as stream:
        return {(r["dataset"], r["image"], r["config"]): r for r in csv.DictReader(stream)}


def _referee(prober: Prober, box: object, timeout: float) -> tuple[str, float | None]:
    """'holds', 'refuted' (with the counterexample margin) or 'undecided' for a claimed box."""
    query = prober.query(Purpose.ROBUST, box)  # type: ignore[arg-type]
    point = Falsifier(steps=200, restarts=16, seed=7).refute(query, seconds=timeout)
    verdict = None
    if point is None:
        res = make_oracle("embedded").check(query, timeout)
        verdict = res.verdict
        point = res.witness if res.verdict is Verdict.SAT else None
    if point is not None:
        return "refuted", counterexample_margin(prober.instance.net.run(point), prober.instance.label)
    return ("holds" if verdict is Verdict.UNSAT else f"undecided ({verdict.value if verdict else '?'})"), None


def _truth(instance: Instance, delta: float, timeout: float) -> int | None:
    inst = Instance.make(instance.onnx, instance.x, instance.label, delta=delta)
    result, _, _ = certify(inst, make_oracle("embedded"), "apothem", options=SearchOptions(timeout=timeout))
    return result.cube_steps if result.exact else None


def _run(dataset: str, image: Path, config: str, args: argparse.Namespace) -> dict[str, object]:
    net = SHARED / "data" / "paper" / "networks" / DATASETS[dataset]
    x = load_input(image).x
    if config == "truth":
        inst = Instance.make(net, x, None)
        return {"dataset": dataset, "image": image.stem, "config": config, "label": inst.label,
                "true_steps": _truth(inst, 1 / 255, args.referee_timeout),
                "true_steps_16": _truth(inst, 1 / 16, args.referee_timeout)}
    method, delta, examine, confirm = CONFIGS[config]
    inst = Instance.make(net, x, None, delta=delta)
    options = SearchOptions(timeout=args.timeout, max_calls=200, cross_examine=30 if examine else None)
    confirmer = make_oracle("embedded") if confirm else None
    start = time.perf_counter()
    result, _, prober = certify(inst, make_oracle(args.oracle), method, None, options, None, confirmer)
    seconds = time.perf_counter() - start
    trust = sum(c.examine_seconds for c in prober.calls) + sum(c.seconds for c in prober.calls
                                                               if c.purpose == Purpose.CONFIRM)
    row: dict[str, object] = {
        "dataset": dataset, "image": image.stem, "config": config, "label": inst.label, "status": result.status,
        "radius": (result.cube_steps or 0) * delta if result.certified else "", "steps": result.cube_steps,
        "calls": len(prober.calls), "seconds": round(seconds, 3), "refuted_answers": len(prober.refutations),
        "trust_seconds": round(trust, 4)}
    if result.certified:
        row["referee"], row["counterexample_margin"] = _referee(prober, result.box, args.referee_timeout)
    return row


def _summary(path: Path) -> str:
    with path.open() as stream:
        rows = list(csv.DictReader(stream))
    truth = {(r["dataset"], r["image"]): r for r in rows if r["config"] == "truth"}
    lines = [f"{'data set':<9}{'config':<12}{'n':>4}{'claimed':>8}{'trivial':>8}{'refuted':>8}{'undec':>6}"
             f"{'max cex margin':>15}{'radius':>8}{'true r*':>8}{'>r*':>5}{'=r*':>5}{'<r*':>5}"
             f"{'refuted ans':>12}{'secs':>8}{'trust%':>8}"]
    for dataset in DATASETS:
        for config in CONFIGS:
            rs = [r for r in rows if r["dataset"] == dataset and r["config"] == config]
            if not rs:
                continue
            claimed = [r for r in rs if r["status"] == "certified"]
            refuted = [r for r in claimed if r["referee"] == "refuted"]
            undecided = [r for r in claimed if r["referee"].startswith("undecided")]
            margins = [float(r["counterexample_margin"]) for r in refuted]
            key = "true_steps_16" if CONFIGS[config][1] == 1 / 16 else "true_steps"
            cmp = [(int(r["steps"]), int(truth[(dataset, r["image"])][key])) for r in rs
                   if r["steps"] not in ("", "None") and (dataset, r["image"]) in truth
                   and truth[(dataset, r["image"])][key] not in ("", "None")]
            delta = CONFIGS[config][1]
            true_r = [t * delta for _, t in cmp]
            secs = sum(float(r["seconds"]) for r in rs)
            trust = sum(float(r["trust_seconds"] or 0) for r in rs)
            lines.append(
                f"{dataset:<9}{config:<12}{len(rs):>4}{len(claimed):>8}"
                f"{sum(r['status'] == 'trivial' for r in rs):>8}{len(refuted):>8}{len(undecided):>6}"
                f"{(max(margins) if margins else 0.0):>15.4g}"
                f"{np.mean([float(r['radius']) for r in claimed]) if claimed else float('nan'):>8.4f}"
                f"{np.mean(true_r) if true_r else float('nan'):>8.4f}"
                f"{sum(s > t for s, t in cmp):>5}{sum(s == t for s, t in cmp):>5}{sum(s < t for s, t in cmp):>5}"
                f"{sum(int(r['refuted_answers']) for r in rs):>12}{secs:>8.1f}{100 * trust / secs if secs else 0:>8.1f}")
    lines.append("claimed: status certified (trivial = apothem 0, never counted); refuted: the referee (embedded "
                 "oracle + attack 16x200) found an onnxruntime-confirmed counterexample in the claimed box; "
                 ">r*/=r*/<r*: the search's radius against the embedded grid-exact r* on the same grid (rows with "
                 "both known); refuted ans: oracle answers refuted during the search; trust%: cross-examination + "
                 "confirmation seconds as % of the search's wall time.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run (or resume) the audit and print its table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="fmnist,mnist")
    ap.add_argument("--configs", default="truth,ref-bisect,ref-exact,default")
    ap.add_argument("--oracle", default="marabou")
    ap.add_argument("--limit", type=int, default=0, help="first N images per dataset (0: all)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per Marabou call")
    ap.add_argument("--referee-timeout", type=float, default=120.0, help="seconds per embedded referee call")
    ap.add_argument("--deadline", type=float, default=0.0, help="start no new row after this many seconds (0: none)")
    ap.add_argument("--csv", default=str(ROOT / "benchmarks" / "results" / "audit.csv"))
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    out = Path(args.csv)
    t0 = time.perf_counter()
    if not args.summary_only:
        out.parent.mkdir(parents=True, exist_ok=True)
        done = _done(out)
        new_file = not out.is_file()
        with out.open("a", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=FIELDS)
            if new_file:
                writer.writeheader()
            for dataset in args.datasets.split(","):
                images = paper_images(dataset)[: args.limit or None]
                for image in images:
                    for config in args.configs.split(","):
                        if (dataset, image.stem, config) in done:
                            continue
                        if args.deadline and time.perf_counter() - t0 > args.deadline:
                            print("deadline reached; rerun to resume", file=sys.stderr)
                            break
                        try:
                            row = _run(dataset, image, config, args)
                        except VnnbridgeError as exc:
                            print(f"{dataset} {image.stem} {config}: {exc}", file=sys.stderr, flush=True)
                            continue
                        writer.writerow(row)
                        stream.flush()
                        print(" ".join(f"{k}={v}" for k, v in row.items()), file=sys.stderr, flush=True)
    if out.is_file():
        print(_summary(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
