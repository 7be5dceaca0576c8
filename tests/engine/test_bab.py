"""Branch and bound on torch bounds agrees with the exact MIP on small random networks, both verdicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from vnnbridge.box import Box  # noqa: E402
from vnnbridge.engine.attack import Objective, pgd  # noqa: E402
from vnnbridge.engine.bab import BabOptions, verify_polytope, verify_polytopes  # noqa: E402
from vnnbridge.engine.bounds import layer_bounds  # noqa: E402
from vnnbridge.engine.crown import intermediate_bounds  # noqa: E402
from vnnbridge.engine.milp import MilpStatus, solve_polytope  # noqa: E402
from vnnbridge.engine.torchnet import torch_net  # noqa: E402
from vnnbridge.network import load_network  # noqa: E402
from vnnbridge.oracles.base import Query, Verdict  # noqa: E402
from vnnbridge.oracles.embedded import EmbeddedOracle  # noqa: E402
from vnnbridge.vnnlib.model import robustness_spec  # noqa: E402

from vnnbridge.engine.graph import Affine, LayerNet, Relu  # noqa: E402
from vnnbridge.engine.ops import DenseOp  # noqa: E402


def random_net(rng: np.random.Generator, widths: list[int], partial: bool = False) -> LayerNet:
    """A dense ReLU network with normal weights (every third unit passing through if ``partial``)."""
    affines = [Affine(DenseOp(rng.normal(size=(b, a))), rng.normal(size=b) * 0.5) for a, b in zip(widths, widths[1:])]
    masks = [np.ones(w, dtype=bool) for w in widths[1:-1]]
    for m in masks:
        m[::3] = not partial
    return LayerNet((1, widths[0]), affines, [Relu(m) for m in masks])


def _decide(net, lo, hi, c, d, opts):  # type: ignore[no-untyped-def]
    tn = torch_net(net)
    lower, upper = intermediate_bounds(net, tn, lo, hi, iters=5)
    obj = Objective.from_polytopes([(c, d)])
    rng = np.random.default_rng(0)

    def value(x: np.ndarray) -> float:
        return float(np.max(net.forward(x) @ c.T - d))

    def confirm(x: np.ndarray) -> np.ndarray | None:
        return x if value(x) <= 0 else None

    def polish(x0: np.ndarray) -> np.ndarray | None:
        x, v = pgd(net, obj, lo, hi, x0, 30, rng, 0.1, 1e-4)
        return x if v <= 0 else None

    import time

    out = verify_polytope(net, tn, lower, upper, lo, hi, c, d, np.full(len(d), 1e-7), time.perf_counter() + 60,
                          confirm, polish, opts)
    return out, value


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("last_mile", [0, 100])
def test_branch_and_bound_matches_the_mip_on_both_sides(seed: int, last_mile: int) -> None:
    rng = np.random.default_rng(seed)
    net = random_net(rng, [3, 8, 6, 3], partial=seed % 4 == 3)
    lo = rng.uniform(-1, 0, 3)
    hi = lo + rng.uniform(0.5, 1.5, 3)
    rows = 1 + seed % 2
    c = rng.normal(size=(rows, 3))
    d0 = np.zeros(rows)
    exact = solve_polytope(net, layer_bounds(net, lo, hi), c, d0, np.inf, -np.inf, 60, method="mip")
    assert exact.status is MilpStatus.FEASIBLE
    best = float(exact.value)  # min over the box of max_r (c_r y)
    # lp_unstable=0: every domain is split down to its last unstable unit (beta-CROWN and
    # branching at work); 100: the exact MILP takes the domains (the last mile).
    opts = BabOptions(batch=4, root_iters=10, iters=5, lp_unstable=last_mile)
    below, _ = _decide(net, lo, hi, c, np.full(rows, best - 0.05), opts)
    assert below.status == "unsat", below
    above, value = _decide(net, lo, hi, c, np.full(rows, best + 0.05), opts)
    assert above.status == "sat", above
    assert value(above.x) <= 0 and np.all(above.x >= lo) and np.all(above.x <= hi)


@pytest.mark.parametrize("seed", range(4))
def test_one_search_decides_a_disjunction_of_polytopes(seed: int) -> None:
    """Three polytopes searched together (as a robustness query's classes): unsat only when every
    one is infeasible; sat, with a point of a feasible one, when one of them is feasible."""
    import time

    rng = np.random.default_rng(100 + seed)
    net = random_net(rng, [3, 8, 6, 3])
    lo = rng.uniform(-1, 0, 3)
    hi = lo + rng.uniform(0.5, 1.5, 3)
    rows = [1 + (seed + i) % 2 for i in range(3)]
    cs = [rng.normal(size=(r, 3)) for r in rows]  # polytopes of 1 and 2 rows: padding is exercised
    best = []
    for c in cs:
        exact = solve_polytope(net, layer_bounds(net, lo, hi), c, np.zeros(len(c)), np.inf, -np.inf, 60, method="mip")
        assert exact.status is MilpStatus.FEASIBLE
        best.append(float(exact.value))
    tn = torch_net(net)
    lower, upper = intermediate_bounds(net, tn, lo, hi, iters=5)
    # Odd seeds branch by filtered smart branching (three candidates), even ones by BaBSR (the default).
    opts = BabOptions(batch=4, root_iters=10, iters=5, lp_unstable=0, candidates=1 + 2 * (seed % 2))

    def decide(ds: list[np.ndarray]):  # type: ignore[no-untyped-def]
        polys = [(c, d, np.full(len(d), 1e-7)) for c, d in zip(cs, ds)]

        def confirm(x: np.ndarray) -> np.ndarray | None:
            y = net.forward(x)
            return x if any(np.max(y @ c.T - d) <= 0 for c, d in zip(cs, ds)) else None

        return verify_polytopes(net, tn, lower, upper, lo, hi, polys, time.perf_counter() + 60, confirm,
                                lambda x0, i: None, opts)

    below = [np.full(len(c), b - 0.05) for c, b in zip(cs, best)]
    out = decide(below)
    assert out.status == "unsat", out
    open_one = seed % 3
    above = list(below)
    above[open_one] = np.full(len(cs[open_one]), best[open_one] + 0.05)
    out = decide(above)
    assert out.status == "sat", out
    y = net.forward(out.x)
    assert np.max(y @ cs[open_one].T - above[open_one]) <= 0  # only this polytope has points
    assert np.all(out.x >= lo) and np.all(out.x <= hi)


@pytest.mark.parametrize("radius", [30, 36])
def test_the_embedded_engines_agree_on_the_paper_network(shared: Path, tmp_path: Path, radius: int) -> None:
    onnx = shared / "data/paper/networks/mnist_784_32_10.onnx"
    x = np.loadtxt(shared / "data/paper/mnist/images/0-1.csv").ravel()
    label = load_network(onnx).predict(x)
    unit = Box.from_arrays(np.zeros(784), np.ones(784))
    spec = robustness_spec(Box.cube(x, radius / 255, unit), label, 10)
    q = Query.build(onnx, spec, tmp_path)
    milp = EmbeddedOracle(engine="milp").check(q, 60)
    bab = EmbeddedOracle(engine="bab").check(q, 60)
    assert milp.verdict in (Verdict.SAT, Verdict.UNSAT)
    assert bab.verdict is milp.verdict
    # r* = 33 steps for this image (tests/search/test_reference.py): 30 is certified, 36 is not.
    assert milp.verdict is (Verdict.UNSAT if radius < 33 else Verdict.SAT)


def test_device_option_is_checked_and_cpu_is_the_default() -> None:
    from vnnbridge.errors import InputError

    assert EmbeddedOracle().device == "cpu"
    with pytest.raises(InputError):
        EmbeddedOracle(device="tpu")
    with pytest.raises(InputError):
        EmbeddedOracle(engine="fast")
