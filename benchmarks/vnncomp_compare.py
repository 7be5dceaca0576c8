"""Export a reference benchmark of certification queries and compare oracles on it, harness style.

For the first K images of each paper network, the queries that the ``apothem`` search asks
(the embedded oracle drives it) are exported as a VNN-COMP benchmark folder, one per network.
Then every oracle answers every instance through the same runner (`vnnbridge compare`): the
harness flow, the same timeout and one BLAS/OpenMP thread each. The script prints the
comparison table per network, and the ratio of each oracle's median time to the baseline's
(the first oracle given), measured in the same run.

    python benchmarks/vnncomp_compare.py [--images 3] [--timeout 30] [--oracle embedded --oracle marabou]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from vnnbridge.inputs import load_input
from vnnbridge.vnncomp.compare import compare_oracles, draw_cactus, format_table
from vnnbridge.vnncomp.export import export_queries, method_queries

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def main() -> int:
    """Export, compare, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--oracle", action="append", default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/vnncomp")
    args = parser.parse_args()
    oracles = args.oracle or ["marabou", "embedded"]
    for kind in ("mnist", "fmnist"):
        onnx = SHARED / f"data/paper/networks/{kind}_784_32_10.onnx"
        images = sorted((SHARED / f"data/paper/{kind}/images").glob("*.csv"))[: args.images]
        start = time.perf_counter()
        queries = []
        for image in images:
            queries += method_queries(onnx, load_input(image).x, f"{kind}_{image.stem}", "apothem", "embedded",
                                      args.timeout)
        bench = args.out / f"{kind}_apothem"
        export_queries(onnx, queries, bench, args.timeout,
                       f"The queries of the apothem search on the first {len(images)} {kind} paper images.")
        print(f"\n## {kind}: {len(queries)} queries of the apothem search on {len(images)} images "
              f"(exported in {time.perf_counter() - start:.1f} s)\n")
        comparison = compare_oracles(bench, oracles, bench / "compare", timeout=args.timeout)
        print(format_table(comparison))
        medians = {s.oracle: s.median_s for s in comparison.summaries()}
        base = oracles[0]
        for name in oracles:
            print(f"median time ratio {name} / {base}: {medians[name] / medians[base]:.2f}")
        solved = {n: [o.run_time for o in comparison.outcomes if o.oracle == n and o.solved] for n in oracles}
        print("mean time of solved instances: " + ", ".join(
            f"{n} {statistics.mean(t):.2f} s" for n, t in solved.items() if t))
        print(f"cactus plot: {draw_cactus(comparison, bench / 'cactus.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
