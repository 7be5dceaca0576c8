"""The searches against an exact oracle whose truth is known in closed form, and against fakes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vnnbridge.box import Box
from vnnbridge.oracles.registry import Validating, make_oracle
from vnnbridge.search.base import Grid, Instance, Prober, SearchOptions, misclassified
from vnnbridge.search.compose import certify, parse_method, run_dual
from vnnbridge.search.metrics import apothem, box_metrics
from vnnbridge.errors import InputError

LinearNet = tuple[Path, np.ndarray, np.ndarray, np.ndarray]


def robust_truth(w: np.ndarray, c: np.ndarray, label: int, box: Box) -> bool:
    """Closed form: every other logit stays below the label's over the box (a linear network)."""
    w32, c32 = w.astype(np.float32).astype(np.float64), c.astype(np.float32).astype(np.float64)
    lo, hi = box.arrays()
    for j in range(len(c32)):
        if j == label:
            continue
        d = w32[label] - w32[j]
        worst = np.sum(np.where(d > 0, d * lo, d * hi)) + c32[label] - c32[j]
        if worst <= 1e-6:
            return False
    return True


@pytest.fixture()
def instance(linear_net: LinearNet) -> Instance:
    path, _, _, x = linear_net
    return Instance.make(path, x, None)


@pytest.fixture()
def truth_r(linear_net: LinearNet, instance: Instance) -> int:
    """The largest grid radius whose clipped cube is robust, by closed form (independent of Grid)."""
    _, w, c, x = linear_net
    best = -1
    for k in range(0, 256):
        if robust_truth(w, c, instance.label, Box.cube(x, k / 255, instance.domain)):
            best = k
        else:
            break
    assert 0 < best < 255  # the fixture is meant to be a non-trivial instance
    return best


def test_apothem_is_grid_exact_with_a_witness_one_step_beyond(instance: Instance, linear_oracle: Validating,
                                                              truth_r: int) -> None:
    result, _, prober = certify(instance, linear_oracle, "apothem")
    g = prober.grid
    assert result.certified and result.cube_steps == truth_r and result.exact
    assert result.proof is not None and result.proof.verdict.value == "unsat"
    assert result.box == g.cube(truth_r)
    (witness,) = result.witnesses
    assert misclassified(instance.net.run(witness.point), instance.label)
    assert np.max(np.abs(witness.point - instance.x)) <= (truth_r + 1) / 255 + 1e-12
    assert apothem(result.box, instance.x, instance.domain) == pytest.approx(truth_r / 255)
    assert len(prober.calls) <= int(np.log2(g.diameter)) + 3


def test_cube_topdown_and_bisect_find_the_same_radius(instance: Instance, linear_oracle: Validating,
                                                      truth_r: int) -> None:
    for method, bound in (("cube-topdown", Grid(instance.x, instance.domain, instance.delta).diameter + 1),
                          ("cube-bisect", 10)):
        result, _, prober = certify(instance, linear_oracle, method)
        assert result.certified and result.cube_steps == truth_r, method
        assert len(prober.calls) <= bound, method


@pytest.mark.parametrize("method", ["box-topdown", "greedy", "grow", "apothem+grow", "apothem+greedy",
                                    "apothem+fill+grow", "cube-bisect+grow", "edge+grow", "apothem+fill",
                                    "slack", "apothem+slack"])
def test_box_methods_are_certified_and_maximal(linear_net: LinearNet, instance: Instance,
                                               linear_oracle: Validating, truth_r: int, method: str) -> None:
    _, w, c, _ = linear_net
    result, dual, prober = certify(instance, linear_oracle, method, "dual-faces")
    g = prober.grid
    assert result.certified and robust_truth(w, c, instance.label, result.box)
    assert result.box.contains(instance.x)
    if method.startswith(("apothem", "cube")):
        assert result.box.contains_box(g.cube(truth_r))
        assert apothem(result.box, instance.x, instance.domain) == pytest.approx(truth_r / 255)
    assert dual is not None and dual.box.contains_box(result.box)
    if method.endswith(("grow", "greedy", "slack")):
        # every face is on the boundary or blocked by a witness one step beyond it
        blocked = result.blocked()
        for face in range(2 * g.n):
            if result.steps[face] == g.reach[face]:
                continue
            assert face in blocked, f"{method}: face {face} neither on the boundary nor blocked"
            grown = result.steps.copy()
            grown[face] += 1
            p = blocked[face].point
            assert g.box(grown).contains(p) and not result.box.contains(p)
            assert misclassified(instance.net.run(p), instance.label)
            assert not robust_truth(w, c, instance.label, g.box(grown))


@pytest.mark.parametrize("dual_name", ["dual-faces", "dual-box", "dual-cube"])
def test_every_certification_lies_inside_its_dual(linear_net: LinearNet, instance: Instance,
                                                  linear_oracle: Validating, dual_name: str) -> None:
    prober = Prober(instance, linear_oracle)
    dual = run_dual(dual_name, prober, None)
    for method in ("apothem", "apothem+grow", "greedy"):
        result, _, _ = certify(instance, linear_oracle, method)
        assert dual.box.contains_box(result.box), (dual_name, method)
        assert box_metrics(result.box, instance.x, instance.domain)["apothem"] <= \
            box_metrics(dual.box, instance.x, instance.domain)["apothem"]


@pytest.mark.parametrize("answer", ["timeout", "unknown", "error", "sat"])
@pytest.mark.parametrize("method", ["apothem", "cube-topdown", "cube-bisect", "box-topdown", "greedy",
                                    "apothem+grow", "apothem+slack"])
def test_an_oracle_without_proofs_never_certifies(instance: Instance, method: str, answer: str) -> None:
    # "sat" here is the fake's bogus claim (box centre as witness): the validator turns it into error
    oracle = make_oracle(f"fake:{answer}")
    result, _, prober = certify(instance, oracle, method, options=SearchOptions(max_calls=2000))
    assert not result.certified and result.proof is None
    assert all(c.verdict.value != "unsat" for c in prober.calls)


class _Flaky:
    """The exact oracle, except that every third call times out."""

    name = "flaky"

    def __init__(self, inner: Validating) -> None:
        self.inner, self.calls = inner, 0

    def version(self) -> str:
        return "0"

    def check(self, query, timeout):  # type: ignore[no-untyped-def]
        from vnnbridge.oracles.base import OracleResult, Verdict

        self.calls += 1
        if self.calls % 3 == 0:
            return OracleResult(Verdict.TIMEOUT, self.name, reason="scripted timeout")
        return self.inner.check(query, timeout)


@pytest.mark.parametrize("method", ["apothem", "cube-topdown", "apothem+grow", "greedy"])
def test_non_answers_keep_results_sound(instance: Instance, linear_net: LinearNet, linear_oracle: Validating,
                                        truth_r: int, method: str) -> None:
    _, w, c, _ = linear_net
    result, _, _ = certify(instance, _Flaky(linear_oracle), method)
    assert result.certified and robust_truth(w, c, instance.label, result.box)
    if result.cube_steps is not None:
        assert result.cube_steps <= truth_r


class _NoWitnesses:
    """The exact oracle, except that it never finds a counterexample: its sats are timeouts."""

    name = "no-witnesses"

    def __init__(self, inner: Validating) -> None:
        self.inner = inner

    def version(self) -> str:
        return "0"

    def check(self, query, timeout):  # type: ignore[no-untyped-def]
        from vnnbridge.oracles.base import OracleResult, Verdict

        got = self.inner.check(query, timeout)
        if got.verdict is Verdict.SAT:
            return OracleResult(Verdict.TIMEOUT, self.name, reason="scripted timeout")
        return got


@pytest.mark.parametrize("cross_examine", [30, None])
def test_a_timeout_above_the_apothem_is_broken_by_the_falsifier(instance: Instance, linear_oracle: Validating,
                                                                 truth_r: int, cross_examine: int | None) -> None:
    result, _, prober = certify(instance, _NoWitnesses(linear_oracle), "apothem",
                                options=SearchOptions(cross_examine=cross_examine))
    assert result.certified and result.cube_steps == truth_r  # the lower bound needs only the unsats
    cube = [w for w in result.witnesses if w.kind == "cube"]
    if cross_examine is None:  # no falsifier: a timeout bounds nothing, so the apothem is not exact
        assert not result.exact and not cube
    else:  # the falsifier's counterexample (no oracle call) bounds it one step above
        assert result.exact and cube and cube[0].call is None
        assert prober.grid.cube_include(cube[0].point) == truth_r + 1
        assert instance.misclassified(cube[0].point)


def test_method_names_are_checked() -> None:
    with pytest.raises(InputError, match="unknown method"):
        parse_method("apothem+nope")
    with pytest.raises(InputError, match="cannot continue"):
        parse_method("apothem+cube-bisect")


def test_delta_is_required_off_grid(linear_net: LinearNet) -> None:
    path, _, _, x = linear_net
    with pytest.raises(InputError, match="--delta"):
        Instance.make(path, np.clip(x + 1e-4, 0, 1), None)
    assert Instance.make(path, np.clip(x + 1e-4, 0, 1), None, delta=0.01).delta == 0.01


@pytest.mark.parametrize("order", ["dfs", "bfs"])
@pytest.mark.parametrize("step", ["linear", "bisect"])
def test_greedy_orders_and_steps_give_certified_maximal_boxes(linear_net: LinearNet, instance: Instance,
                                                              linear_oracle: Validating, order: str,
                                                              step: str) -> None:
    _, w, c, _ = linear_net
    options = SearchOptions(order=order, step=step)
    result, _, prober = certify(instance, linear_oracle, "apothem+greedy", options=options)
    g = prober.grid
    assert result.certified and robust_truth(w, c, instance.label, result.box)
    for face in range(2 * g.n):
        if result.steps[face] < g.reach[face]:
            grown = result.steps.copy()
            grown[face] += 1
            assert face in result.blocked() and not robust_truth(w, c, instance.label, g.box(grown))


def test_the_call_budget_keeps_the_certified_box(linear_net: LinearNet, instance: Instance,
                                                 linear_oracle: Validating, truth_r: int) -> None:
    _, w, c, _ = linear_net
    full, _, _ = certify(instance, linear_oracle, "apothem+grow")
    result, _, prober = certify(instance, linear_oracle, "apothem+grow", options=SearchOptions(max_calls=8))
    g = prober.grid
    # grow ran out of its 8 calls: faces are left open, and the box kept is the last certified one
    assert result.open_faces and not full.open_faces
    assert sum(c.purpose == "robust" for c in prober.calls) <= 8 + 8
    assert result.certified and result.proof is not None and result.proof.verdict.value == "unsat"
    assert prober.query(result.proof.purpose, result.box).sha256 == result.proof.sha256  # the proof is of this box
    assert robust_truth(w, c, instance.label, result.box) and g.cube(truth_r) != result.box
    assert bool(np.all(result.steps >= g.cube_steps(truth_r))) and bool(np.any(result.steps < full.steps))
