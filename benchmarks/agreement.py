"""Agreement campaign: the embedded oracle against Marabou (and peers), every disagreement resolved.

Queries (robustness of the predicted class on an l-inf cube clipped to [0, 1], plus the mnistfc
benchmark's own VNN-LIB files):

- ``paper``: the 99 reference images on their 784-32-10 networks, radii r* + {-3, -2, -1, 0, 1, 2, 4}
  steps of 1/255 around each image's grid-exact r* (the hard ones are right at r*);
- ``mnistfc``: the VNN-COMP mnistfc networks (256x2/4/6) with their 88 benchmark properties, and
  the first MNIST test images at radii {1, 2, 3, 5, 8}/255;
- ``testset``: the same two 784-32-10 networks on the first test-set images of their data set
  (not the paper's), radii r* + {-1, 0, 1};
- ``conv``: the conv and MLP nets in ``../shared/data/networks`` on the first test images of their
  data set at radii {1, 2, 4, 8}/255.

Each query is asked to every oracle of ``--oracles`` (SAT witnesses are validated with
onnxruntime by the registry). The truth: *sat* when anyone (an oracle, or a 16x200 attack run
on every ``unsat``) has an onnxruntime-confirmed witness; otherwise *unsat* when the second
complete method, the embedded engine's plain HiGHS MIP (``method="mip"``, no branch and bound),
proves it; otherwise unresolved. A wrong answer is an ``unsat`` where the truth is sat (a
``sat`` cannot be wrong: its witness was re-run) or a ``sat`` where the MIP proved unsat (would
mean a validation bug). Rows are appended to a CSV as they finish; a rerun resumes.

    python benchmarks/agreement.py --families paper --oracles embedded,marabou --deadline 3000
    python benchmarks/agreement.py --summary-only
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from vnnbridge.errors import VnnbridgeError
from vnnbridge.inputs import load_input
from vnnbridge.oracles.base import Query
from vnnbridge.oracles.registry import make_oracle
from vnnbridge.search.base import Grid, Instance, SearchOptions
from vnnbridge.search.compose import certify
from vnnbridge.search.crossexam import Falsifier
from vnnbridge.vnnlib.model import robustness_spec

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VNNBRIDGE_SHARED") or ROOT.parent / "shared")
DATA = SHARED / "data"
FIELDS = ["family", "net", "item", "steps", "sha256", "oracle", "verdict", "seconds", "reason"]
PAPER_OFFSETS = (-3, -2, -1, 0, 1, 2, 4)
MNISTFC_RADII = (1, 2, 3, 5, 8)
CONV_RADII = (1, 2, 4, 8)


def _cube_query(onnx: Path, x: np.ndarray, steps: int) -> Query:
    inst = Instance.make(onnx, x, None, delta=1 / 255)
    box = Grid(inst.x, inst.domain, inst.delta).cube(steps)
    return Query.build(onnx, robustness_spec(box, inst.label, inst.outputs))


def _paper(limit: int) -> Iterator[tuple[str, str, int, Query]]:
    for dataset in ("fmnist", "mnist"):
        onnx = DATA / "paper" / "networks" / f"{dataset}_784_32_10.onnx"
        images = sorted((DATA / "paper" / dataset / "images").glob("*.csv"))[: limit or None]
        for image in images:
            x = load_input(image).x
            inst = Instance.make(onnx, x, None)
            r = certify(inst, make_oracle("embedded"), "apothem", options=SearchOptions(timeout=120))[0].cube_steps
            for off in PAPER_OFFSETS:
                if r is not None and r + off >= 0:
                    yield onnx.name, f"{dataset}/{image.stem}", r + off, _cube_query(onnx, x, r + off)


def _testset(limit: int) -> Iterator[tuple[str, str, int, Query]]:
    for dataset in ("fmnist", "mnist"):
        onnx = DATA / "paper" / "networks" / f"{dataset}_784_32_10.onnx"
        images = DATA / "datasets" / dataset / "t10k-images-idx3-ubyte.gz"
        for i in range(limit or 60):
            x = load_input(images, i).x
            inst = Instance.make(onnx, x, None)
            r = certify(inst, make_oracle("embedded"), "apothem", options=SearchOptions(timeout=120))[0].cube_steps
            for off in (-1, 0, 1):
                if r is not None and r + off >= 0:
                    yield onnx.name, f"{dataset}[{i}]", r + off, _cube_query(onnx, x, r + off)


def _mnistfc(limit: int) -> Iterator[tuple[str, str, int, Query]]:
    from vnnbridge.vnnlib.parser import parse_file
    from vnnbridge.cache import sha256_file

    folder = DATA / "vnnlib" / "mnistfc"
    with (folder / "mnistfc_instances.csv").open() as stream:
        for onnx_name, prop, _ in csv.reader(stream):
            onnx = DATA / "networks" / "mnist" / onnx_name
            path = folder / prop
            if not path.is_file():  # the instance list names more properties than the shared copy holds
                continue
            yield onnx_name, prop, -1, Query(onnx, parse_file(path), path, sha256_file(path))
    images = DATA / "datasets" / "mnist" / "t10k-images-idx3-ubyte.gz"
    for name in ("mnist-net_256x2.onnx", "mnist-net_256x4.onnx", "mnist-net_256x6.onnx"):
        for i in range(limit or 8):
            x = load_input(images, i).x
            for k in MNISTFC_RADII:
                yield name, f"mnist[{i}]", k, _cube_query(DATA / "networks" / "mnist" / name, x, k)


def _conv(limit: int) -> Iterator[tuple[str, str, int, Query]]:
    nets = {"mnist": ("Convnet_avgpool.onnx", "Convnet_maxpool.onnx", "mnistconvSmallRELUDiffAI.onnx"),
            "fmnist": ("fmnist_cnn_c32-c64-fc128.onnx", "fmnist_cnn_c64-c128-fc128-fc128.onnx",
                       "fmnist_mlp_784-128-10.onnx", "fmnist_mlp_784-32-10.onnx")}
    for dataset, names in nets.items():
        images = DATA / "datasets" / dataset / "t10k-images-idx3-ubyte.gz"
        for name in names:
            for i in range(limit or 5):
                x = load_input(images, i).x
                for k in CONV_RADII:
                    yield name, f"{dataset}[{i}]", k, _cube_query(DATA / "networks" / dataset / name, x, k)


FAMILIES = {"paper": _paper, "testset": _testset, "mnistfc": _mnistfc, "conv": _conv}


def _done(path: Path) -> set[tuple[str, str]]:
    if not path.is_file():
        return set()
    with path.open() as stream:
        return {(r["sha256"] + r["net"], r["oracle"]) for r in csv.DictReader(stream)}


def _row(family: str, net: str, item: str, steps: int, q: Query, oracle: str, verdict: str, seconds: float,
         reason: str = "") -> dict[str, object]:
    return {"family": family, "net": net, "item": item, "steps": steps, "sha256": q.sha256, "oracle": oracle,
            "verdict": verdict, "seconds": round(seconds, 3), "reason": reason[:200]}


def _ask(oracle: object, q: Query, timeout: float) -> tuple[str, float, str]:
    start = time.perf_counter()
    try:
        res = oracle.check(q, timeout)  # type: ignore[attr-defined]
        return res.verdict.value, time.perf_counter() - start, res.reason
    except VnnbridgeError as exc:
        return "error", time.perf_counter() - start, str(exc)


def _summary(path: Path) -> str:
    with path.open() as stream:
        rows = list(csv.DictReader(stream))
    by_query: dict[str, dict[str, dict[str, str]]] = {}
    for r in rows:
        by_query.setdefault(r["sha256"] + r["net"], {})[r["oracle"]] = r
    oracles = sorted({r["oracle"] for r in rows} - {"attack", "mip"})
    truth: dict[str, str] = {}
    for key, answers in by_query.items():
        if any(a["verdict"] == "sat" for a in answers.values()):
            truth[key] = "sat"
        elif answers.get("mip", {}).get("verdict") == "unsat":
            truth[key] = "unsat"
        else:
            truth[key] = "unresolved"
    lines = []
    fams = sorted({r["family"] for r in rows})
    lines.append(f"queries: {len(by_query)} ("
                 + ", ".join(f"{f} {sum(1 for a in by_query.values() if next(iter(a.values()))['family'] == f)}"
                             for f in fams)
                 + f"); truth: sat {sum(t == 'sat' for t in truth.values())}, "
                 f"unsat {sum(t == 'unsat' for t in truth.values())}, "
                 f"unresolved {sum(t == 'unresolved' for t in truth.values())}")
    lines.append(f"{'oracle':<12}{'asked':>7}{'sat':>6}{'unsat':>7}{'timeout':>8}{'unknown':>8}{'error':>7}"
                 f"{'wrong unsat':>12}{'wrong sat':>10}{'disagree':>9}{'secs/q':>8}")
    for o in oracles + ["mip"]:
        mine = {k: a[o] for k, a in by_query.items() if o in a}
        if not mine:
            continue
        v = [m["verdict"] for m in mine.values()]
        wrong_unsat = sum(m["verdict"] == "unsat" and truth[k] == "sat" for k, m in mine.items())
        wrong_sat = sum(m["verdict"] == "sat" and truth[k] == "unsat" for k, m in mine.items())
        disagree = sum(1 for k, m in mine.items() if m["verdict"] in ("sat", "unsat") and any(
            a["verdict"] in ("sat", "unsat") and a["verdict"] != m["verdict"]
            for n, a in by_query[k].items() if n in oracles and n != o))
        secs = np.mean([float(m["seconds"]) for m in mine.values()])
        lines.append(f"{o:<12}{len(mine):>7}{v.count('sat'):>6}{v.count('unsat'):>7}{v.count('timeout'):>8}"
                     f"{v.count('unknown'):>8}{v.count('error'):>7}{wrong_unsat:>12}{wrong_sat:>10}{disagree:>9}"
                     f"{secs:>8.2f}")
    wrong = [(k, o) for k, a in by_query.items() for o, r in a.items()
             if o in oracles and r["verdict"] == "unsat" and truth[k] == "sat"]
    for fam in fams:
        sub = {o: sum(1 for k, oo in wrong if oo == o and next(iter(by_query[k].values()))["family"] == fam)
               for o in oracles}
        lines.append(f"wrong unsat in {fam}: " + ", ".join(f"{o} {n}" for o, n in sub.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run (or resume) the campaign and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="paper,testset,mnistfc,conv")
    ap.add_argument("--oracles", default="embedded,marabou", help="comma list of oracle specs")
    ap.add_argument("--limit", type=int, default=0, help="images per net (0: the defaults above)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per oracle call")
    ap.add_argument("--mip-timeout", type=float, default=60.0)
    ap.add_argument("--skip-slow", type=float, default=0.0,
                    help="stop asking an oracle about a net after it timed out this many times (0: never)")
    ap.add_argument("--deadline", type=float, default=0.0, help="start no new query after this many seconds")
    ap.add_argument("--csv", default=str(ROOT / "benchmarks" / "results" / "agreement.csv"))
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    out = Path(args.csv)
    t0 = time.perf_counter()
    if not args.summary_only:
        from vnnbridge.oracles.embedded import EmbeddedOracle
        from vnnbridge.oracles.registry import Validating

        out.parent.mkdir(parents=True, exist_ok=True)
        done = _done(out)
        oracles = {}
        for spec in args.oracles.split(","):
            try:
                oracles[spec.split(":")[0]] = make_oracle(spec)
            except VnnbridgeError as exc:
                print(f"oracle {spec}: {exc}; left out", file=sys.stderr)
        mip = Validating(EmbeddedOracle(method="mip"))
        falsifier = Falsifier(steps=200, restarts=16, seed=11)
        timeouts: dict[tuple[str, str], int] = {}
        new_file = not out.is_file()
        with out.open("a", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=FIELDS)
            if new_file:
                writer.writeheader()

            def put(row: dict[str, object]) -> None:
                writer.writerow(row)
                stream.flush()

            for family in args.families.split(","):
                for net, item, steps, q in FAMILIES[family](args.limit):
                    if args.deadline and time.perf_counter() - t0 > args.deadline:
                        print("deadline reached; rerun to resume", file=sys.stderr)
                        break
                    key, verdicts = q.sha256 + net, {}
                    for name, oracle in oracles.items():
                        if (key, name) in done:
                            continue
                        if args.skip_slow and timeouts.get((name, net), 0) >= args.skip_slow:
                            continue
                        verdict, secs, reason = _ask(oracle, q, args.timeout)
                        verdicts[name] = verdict
                        if verdict == "timeout":
                            timeouts[(name, net)] = timeouts.get((name, net), 0) + 1
                        put(_row(family, net, item, steps, q, name, verdict, secs, reason))
                    if "sat" not in verdicts.values() and (key, "attack") not in done:
                        start = time.perf_counter()
                        found = falsifier.refute(q, seconds=args.timeout) if falsifier.supports(str(q.onnx)) else None
                        verdicts["attack"] = "sat" if found is not None else "none"
                        put(_row(family, net, item, steps, q, "attack", verdicts["attack"],
                                 time.perf_counter() - start))
                    # The second complete method, for every query nobody has a witness for.
                    if "sat" not in verdicts.values() and "unsat" in verdicts.values() and (key, "mip") not in done:
                        verdict, secs, reason = _ask(mip, q, args.mip_timeout)
                        put(_row(family, net, item, steps, q, "mip", verdict, secs, reason))
                    print(f"{family} {net} {item} k={steps}: " + " ".join(f"{n}={v}" for n, v in verdicts.items()),
                          file=sys.stderr, flush=True)
    if out.is_file():
        print(_summary(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
