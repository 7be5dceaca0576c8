"""The embedded verifier's engines side by side: mnistfc instances and apothem searches.

Part ``mnistfc``: the VNN-COMP 2021 mnistfc instances (``data/vnnlib/mnistfc``: props 0-9,
eps 0.03/0.05, the ``mnist-net_256x{2,4,6}`` networks), each answered by every engine in the
same run: ``new`` (the embedded oracle as shipped: torch bounds and branch and bound above
``milp_binaries`` unstable ReLUs), ``old`` (``engine="milp"``: CROWN bounds and HiGHS
branch and bound only, the engine before the torch bounds) and, with ``--abcrown``, the
alpha-beta-CROWN command line of ``/tmp/peers/READY.md`` (its witnesses are re-checked with
onnxruntime here). "wrong" counts an ``unsat`` against which another engine holds a
validated witness. Printed: solved, sat, unsat, timeouts, wrong, median and total seconds,
and the ratio of total seconds to the old engine's (and the peer's).

Part ``compare``: the same mnistfc instances as a VNN-COMP benchmark folder (instances.csv,
symlinks into ``../shared``), run through `vnnbridge compare` (the harness flow: prepare,
run_instance with the measured start-up added to each tool's limit, witnesses re-checked) for
``embedded`` and each ``--peer`` (e.g. ``abcrown:/tmp/peers/abcrown``, installed per
``../shared/PEERS.md``), ``--jobs`` runs side by side with ``--threads`` threads each. Printed:
compare's own table, then solved / wrong / median and total solving seconds (a timeout counts
as the timeout) with the ratio of totals to each other oracle, and solved per network.
``--report DIR`` prints the same tables again from a finished run's ``outcomes.csv`` files.

Part ``apothem``: an apothem search (`vnnbridge.search.compose.certify`, method "apothem")
on the first N MNIST / Fashion-MNIST test images (the network's prediction as label; all
five networks take pixels in [0, 1]) per network and engine: grid-exact apothems (the upper
step confirmed by a witness), median seconds per certificate and oracle calls. An ``--engines``
entry that is not an engine name is an oracle spec (``abcrown:/tmp/peers/abcrown``): the same
searches with a peer as the oracle.

Part ``inputsplit``: random ACAS Xu-sized networks (5 inputs, six ReLU layers of 50, 5 outputs,
He-initialised; no few-input network is in ``../shared``) and robustness boxes of several widths
around random points, decided by the embedded oracle with input splitting (as shipped for
networks with at most 8 inputs) and with branch and bound on ReLU phases
(``BabOptions(input_split=0)``): solved, agreement, median and total seconds.

    .venv/bin/python benchmarks/engine.py --part inputsplit [--call-timeout 30]
    .venv/bin/python benchmarks/engine.py --part compare --peer abcrown:/tmp/peers/abcrown \
        --peer nnenum:/tmp/peers/nnenum --jobs 2 --threads 1 [--out DIR]
    .venv/bin/python benchmarks/engine.py --report DIR
    nice .venv/bin/python benchmarks/engine.py [--part mnistfc,apothem] [--nets 256x2,256x4]
        [--props 0-9] [--eps 0.03,0.05] [--limit N] [--timeout 60] [--engines new,old]
        [--abcrown] [--images 3] [--apothem-nets 256x4,Convnet_maxpool] [--call-timeout 30]
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vnnbridge.network import load_network
from vnnbridge.oracles.base import OracleResult, Query, Verdict
from vnnbridge.oracles.registry import make_oracle
from vnnbridge.vnnlib.parser import parse_file

ROOT = Path(__file__).resolve().parents[1]
ENGINES = {"new": {"engine": "auto"}, "old": {"engine": "milp"}}
APOTHEM_NETS = {
    "mnist-net_256x4": ("mnist", "mnist/mnist-net_256x4.onnx"),
    "mnist-net_256x6": ("mnist", "mnist/mnist-net_256x6.onnx"),
    "Convnet_maxpool": ("mnist", "mnist/Convnet_maxpool.onnx"),
    "mnistconvSmallRELUDiffAI": ("mnist", "mnist/mnistconvSmallRELUDiffAI.onnx"),
    "fmnist_cnn_c32-c64-fc128": ("fmnist", "fmnist/fmnist_cnn_c32-c64-fc128.onnx"),
}
ABCROWN = Path("/tmp/peers/abcrown/complete_verifier")
ABCROWN_PY = Path("/tmp/peers/abc/bin/python")
ABCROWN_CFG = Path("/tmp/peers/abc_cpu.yaml")


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)), flush=True)


def _abcrown(onnx: Path, vnnlib: Path, timeout: float, folder: Path) -> OracleResult:
    """alpha-beta-CROWN's own command line; a sat's witness is re-checked with onnxruntime."""
    result = folder / f"abc-{onnx.stem}-{vnnlib.stem}.txt"
    result.unlink(missing_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.perf_counter()
    try:
        subprocess.run([str(ABCROWN_PY), "abcrown.py", "--config", str(ABCROWN_CFG), "--onnx_path", str(onnx),
                        "--vnnlib_path", str(vnnlib), "--timeout", str(int(timeout)), "--results_file",
                        str(result), "--save_adv_example"], cwd=ABCROWN, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=timeout + 60, check=False)
    except subprocess.TimeoutExpired:
        pass
    secs = time.perf_counter() - start
    text = result.read_text() if result.is_file() else ""
    word = text.split("\n", 1)[0].strip().lower()
    if word in ("unsat", "holds"):
        return OracleResult(Verdict.UNSAT, "abcrown", "", secs)
    if word in ("sat", "violated"):
        xs = [float(v) for k, v in re.findall(r"\(X_(\d+)\s+([-+0-9.eE]+)\)", text)]
        spec = parse_file(vnnlib)
        if xs and spec.violated_by(xs, load_network(onnx).run(np.array(xs))):
            return OracleResult(Verdict.SAT, "abcrown", "", secs, np.array(xs))
        return OracleResult(Verdict.ERROR, "abcrown", "", secs, reason="bogus or missing witness")
    if word == "timeout" or not word:
        return OracleResult(Verdict.TIMEOUT, "abcrown", "", secs)
    return OracleResult(Verdict.UNKNOWN, "abcrown", "", secs, reason=word)


def mnistfc(args: argparse.Namespace, folder: Path) -> None:
    data = args.shared / "data"
    instances = [(f"mnist-net_{n}", int(p), e) for n in args.nets.split(",") for e in args.eps.split(",")
                 for p in _range(args.props)]
    if args.limit:
        # A spread subset: every k-th instance, so each network and eps stays represented.
        step = max(1, len(instances) // args.limit)
        instances = instances[::step][:args.limit]
    engines = {e: make_oracle("embedded", **ENGINES[e]) for e in args.engines.split(",")}
    names = list(engines) + (["abcrown"] if args.abcrown else [])
    print(f"mnistfc: {len(instances)} instances at {args.timeout:g} s; engines {', '.join(names)}", flush=True)
    results: dict[str, list[OracleResult]] = {n: [] for n in names}
    for net, prop, eps in instances:
        onnx = data / "networks/mnist" / f"{net}.onnx"
        vnnlib = data / "vnnlib/mnistfc" / f"prop_{prop}_{eps}.vnnlib"
        q = Query.build(onnx, parse_file(vnnlib), folder / "queries")
        line = [f"{net} prop_{prop}_{eps}"]
        for n, oracle in engines.items():
            r = oracle.check(q, args.timeout)
            results[n].append(r)
            line.append(f"{n}={r.verdict.value}:{r.seconds:.1f}s")
        if args.abcrown:
            r = _abcrown(onnx, vnnlib, args.timeout, folder)
            results["abcrown"].append(r)
            line.append(f"abcrown={r.verdict.value}:{r.seconds:.1f}s")
        print("  " + "  ".join(line), flush=True)
    base = results.get("old")
    rows = [["engine", "solved", "sat", "unsat", "timeout", "other", "wrong", "median_s", "total_s",
             "total/old", "total/abcrown"]]
    for n in names:
        rs = results[n]
        v = [r.verdict for r in rs]
        wrong = sum(r.verdict is Verdict.UNSAT and any(results[o][i].verdict is Verdict.SAT for o in names if o != n)
                    for i, r in enumerate(rs))
        secs = np.array([min(r.seconds, args.timeout) for r in rs])
        total = float(secs.sum())

        def ratio(other: list | None, total: float = total) -> str:
            if other is None:
                return "-"
            return f"{total / max(1e-9, sum(min(r.seconds, args.timeout) for r in other)):.2f}"

        rows.append([n, str(v.count(Verdict.SAT) + v.count(Verdict.UNSAT)), str(v.count(Verdict.SAT)),
                     str(v.count(Verdict.UNSAT)), str(v.count(Verdict.TIMEOUT)),
                     str(len(v) - v.count(Verdict.SAT) - v.count(Verdict.UNSAT) - v.count(Verdict.TIMEOUT)),
                     str(wrong), f"{np.median(secs):.1f}", f"{secs.sum():.1f}", ratio(base),
                     ratio(results.get("abcrown"))])
    _table(rows)


def _images(data: Path, dataset: str, n: int) -> list[np.ndarray]:
    from vnnbridge.inputs import load_input

    path = data / "datasets" / dataset / "t10k-images-idx3-ubyte.gz"
    return [load_input(path, index=i).x for i in range(n)]


def apothem(args: argparse.Namespace, folder: Path) -> None:
    from vnnbridge.search.base import Instance, SearchOptions
    from vnnbridge.search.compose import certify

    data = args.shared / "data"
    nets = [n for n in args.apothem_nets.split(",") if n]
    rows = [["network", "engine", "images", "certified", "grid_exact", "median_s", "max_s", "calls", "r*_steps"]]
    print(f"apothem: {args.images} images per network, {args.call_timeout:g} s per call, engines {args.engines}",
          flush=True)
    for name in nets:
        dataset, rel = APOTHEM_NETS[name]
        onnx = data / "networks" / rel
        xs = _images(data, dataset, args.images)
        for e in args.engines.split(","):
            # An engine name of ENGINES is the embedded oracle so configured; anything else is an
            # oracle spec (a peer: "abcrown:/tmp/peers/abcrown"), searched the same way.
            oracle = make_oracle("embedded", **ENGINES[e]) if e in ENGINES else make_oracle(e)
            secs, exact, cert, calls, steps = [], 0, 0, 0, []
            for x in xs:
                inst = Instance.make(onnx, x, None)
                t0 = time.perf_counter()
                result, _, prober = certify(inst, oracle, "apothem", options=SearchOptions(timeout=args.call_timeout))
                secs.append(time.perf_counter() - t0)
                exact += bool(result.exact)
                cert += result.status == "certified"  # apothem 0 is `trivial`, not a certificate
                calls += len(prober.calls)
                steps.append(str(result.cube_steps))
                print(f"  {name} {e}: r*={result.cube_steps} exact={result.exact} {secs[-1]:.1f}s "
                      f"{len(prober.calls)} calls", flush=True)
            rows.append([name, e, str(len(xs)), str(cert), str(exact), f"{np.median(secs):.1f}",
                         f"{max(secs):.1f}", str(calls), "/".join(steps)])
    _table(rows)


def compare(args: argparse.Namespace, folder: Path) -> None:
    from vnnbridge.vnncomp.compare import compare_oracles, format_table

    data = args.shared / "data"
    bench = folder / "mnistfc"
    (bench / "onnx").mkdir(parents=True)
    (bench / "vnnlib").mkdir()
    lines = []
    for n in args.nets.split(","):
        (bench / "onnx" / f"mnist-net_{n}.onnx").symlink_to(data / "networks/mnist" / f"mnist-net_{n}.onnx")
        for e in args.eps.split(","):
            for p in _range(args.props):
                name = f"prop_{p}_{e}.vnnlib"
                if not (bench / "vnnlib" / name).exists():
                    (bench / "vnnlib" / name).symlink_to(data / "vnnlib/mnistfc" / name)
                lines.append(f"onnx/mnist-net_{n}.onnx,vnnlib/{name},{args.timeout:g}")
    (bench / "instances.csv").write_text("\n".join(lines) + "\n")
    out = Path(args.out) if args.out else folder / "compare"
    oracles = ["embedded", *args.peer]
    print(f"compare: {len(lines)} mnistfc instances at {args.timeout:g} s; {', '.join(oracles)}; "
          f"--jobs {args.jobs} --threads {args.threads}; results in {out}", flush=True)
    comparison = compare_oracles(bench, oracles, out, jobs=args.jobs, threads=args.threads)
    print(format_table(comparison), flush=True)
    report(out, args.timeout)


def report(out: Path, timeout: float) -> None:
    """Solved, wrong, median/total solving seconds, ratios of totals and solved per network, from outcomes.csv."""
    runs: dict[str, list[dict[str, str]]] = {}
    for path in sorted(Path(out).glob("*/outcomes.csv")):
        rows = list(csv.DictReader(path.open()))[1:]  # the first line is the start-up check
        runs[path.parent.name] = rows
    if not runs:
        raise SystemExit(f"no outcomes.csv under {out}")

    def limit(row: dict[str, str]) -> float:
        # A timeout (or any other non-answer) counts as the instances' timeout.
        return float(row["solve_s"]) if row["result"] in ("sat", "unsat") else timeout

    def solved(row: dict[str, str]) -> bool:
        return row["result"] in ("sat", "unsat") and not row["reason"].startswith("unsat, but")

    totals = {}
    table = [["oracle", "instances", "solved", "sat", "unsat", "wrong", "median_s", "total_s"]]
    for name, rows in runs.items():
        secs = [limit(r) for r in rows]
        totals[name] = sum(secs)
        table.append([name, str(len(rows)), str(sum(map(solved, rows))),
                      str(sum(r["result"] == "sat" for r in rows)), str(sum(r["result"] == "unsat" for r in rows)),
                      str(sum(r["reason"].startswith("unsat, but") for r in rows)), f"{np.median(secs):.1f}",
                      f"{sum(secs):.1f}"])
    for row, name in zip(table[1:], runs):
        row += [f"{totals[name] / max(1e-9, totals[o]):.2f}" for o in runs]
    table[0] += [f"total/{o.split('_')[0]}" for o in runs]
    _table(table)
    nets = sorted({Path(r["onnx"]).stem for rows in runs.values() for r in rows})
    per = [["network", *[o.split("_")[0] for o in runs]]]
    for net in nets:
        per.append([net, *[str(sum(solved(r) for r in rows if Path(r["onnx"]).stem == net)) for rows in runs.values()]])
    _table(per)


def _acas_like(path: Path, seed: int) -> Path:
    """A random 5-50x6-5 ReLU network as ONNX (Gemm + Relu), He-initialised."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    widths = [5] + [50] * 6 + [5]
    nodes, inits, name = [], [], "x"
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        w = (rng.normal(size=(b, a)) * np.sqrt(2.0 / a)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(
            (rng.normal(size=b) * 0.1).astype(np.float32), f"b{i}")]
        nodes.append(helper.make_node("Gemm", [name, f"w{i}", f"b{i}"], [f"z{i}"], transB=1))
        name = f"z{i}"
        if i < len(widths) - 2:
            nodes.append(helper.make_node("Relu", [name], [f"r{i}"]))
            name = f"r{i}"
    graph = helper.make_graph(nodes, "acas_like", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5])],
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def inputsplit(args: argparse.Namespace, folder: Path) -> None:
    from vnnbridge.box import Box
    from vnnbridge.engine.bab import BabOptions
    from vnnbridge.vnnlib.model import robustness_spec

    engines = {"input split": make_oracle("embedded", engine="bab"),
               "ReLU split": make_oracle("embedded", engine="bab", bab=BabOptions(input_split=0))}
    got: dict[str, list[OracleResult]] = {e: [] for e in engines}
    n = 0
    for seed in range(3):
        onnx_path = _acas_like(folder / f"acas_like_{seed}.onnx", seed)
        runtime = load_network(onnx_path)
        rng = np.random.default_rng(100 + seed)
        for width in (0.02, 0.05, 0.1, 0.2):
            for _ in range(2):
                centre = rng.uniform(-0.5, 0.5, 5)
                box = Box.from_arrays(centre - width, centre + width)
                q = Query.build(onnx_path, robustness_spec(box, runtime.predict(centre), 5), folder / f"q{n}")
                n += 1
                line = []
                for e, oracle in engines.items():
                    r = oracle.check(q, args.call_timeout)
                    got[e].append(r)
                    line.append(f"{e} {r.verdict.value} {r.seconds:.2f}s")
                print(f"  net {seed} width {width:g}: " + ", ".join(line), flush=True)
    rows = [["engine", "instances", "solved", "sat", "unsat", "median s", "total s", "total / ReLU split"]]
    base = sum(r.seconds for r in got["ReLU split"])
    for e, rs in got.items():
        total = sum(r.seconds for r in rs)
        solved = [r for r in rs if r.verdict in (Verdict.SAT, Verdict.UNSAT)]
        rows.append([e, str(len(rs)), str(len(solved)), str(sum(r.verdict is Verdict.SAT for r in rs)),
                     str(sum(r.verdict is Verdict.UNSAT for r in rs)), f"{np.median([r.seconds for r in rs]):.2f}",
                     f"{total:.1f}", f"{total / base:.2f}"])
    disagree = sum({a.verdict, b.verdict} == {Verdict.SAT, Verdict.UNSAT}
                   for a, b in zip(got["input split"], got["ReLU split"]))
    _table(rows)
    print(f"disagreements (sat against unsat): {disagree}")


def _range(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the chosen parts and print their tables."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", default="mnistfc,apothem")
    p.add_argument("--nets", default="256x2,256x4,256x6")
    p.add_argument("--props", default="0-9")
    p.add_argument("--eps", default="0.03,0.05")
    p.add_argument("--limit", type=int, default=0, help="at most this many mnistfc instances (spread)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per mnistfc instance")
    p.add_argument("--engines", default="new,old")
    p.add_argument("--abcrown", action="store_true", help="also run alpha-beta-CROWN from /tmp/peers")
    p.add_argument("--images", type=int, default=10)
    p.add_argument("--apothem-nets", default=",".join(APOTHEM_NETS))
    p.add_argument("--call-timeout", type=float, default=60.0, help="seconds per oracle call of a search")
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    p.add_argument("--peer", action="append", default=[], help="part compare: another oracle (repeat)")
    p.add_argument("--jobs", type=int, default=1, help="part compare: runs side by side")
    p.add_argument("--threads", type=int, default=1, help="part compare: threads per run")
    p.add_argument("--out", default="", help="part compare: where compare writes its results")
    p.add_argument("--report", default="", help="print the compare tables of a finished run in DIR")
    args = p.parse_args(argv)
    if args.report:
        report(Path(args.report), args.timeout)
        return 0
    # The one-time torch import (seconds under load) is nobody's per-query time.
    from vnnbridge.engine.torchnet import set_threads

    set_threads()
    folder = Path(tempfile.mkdtemp(prefix="vnnbridge-engine-bench-"))
    os.environ.setdefault("VNNBRIDGE_CACHE", str(folder / "cache"))
    parts = args.part.split(",")
    if "mnistfc" in parts:
        mnistfc(args, folder)
    if "compare" in parts:
        compare(args, folder)
    if "apothem" in parts:
        apothem(args, folder)
    if "inputsplit" in parts:
        inputsplit(args, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
