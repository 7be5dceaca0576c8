"""Reference instances (the paper's MNIST net) with the embedded oracle, cross-checked by Marabou."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vnnbridge.inputs import load_input
from vnnbridge.oracles.base import Query, Verdict
from vnnbridge.oracles.registry import is_available, make_oracle
from vnnbridge.oracles.witness import confirm_witness
from vnnbridge.search.base import Instance, misclassified
from vnnbridge.search.compose import certify
from vnnbridge.vnnlib.model import robustness_spec

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "tests" / "data" / "paper"
R_STAR = 33  # of the bundled image 0-1, in 1/255 steps (embedded oracle; Marabou agrees, see below)

needs_marabou = pytest.mark.skipif(not is_available("marabou"), reason="Marabou is not installed")


@pytest.fixture(scope="module")
def reference() -> Instance:
    return Instance.make(PAPER / "mnist_784_32_10.onnx", load_input(PAPER / "mnist_0-1.csv").x, None)


def test_apothem_and_cube_topdown_agree_on_the_reference_image(reference: Instance) -> None:
    embedded = make_oracle("embedded")
    result, _, prober = certify(reference, embedded, "apothem")
    assert result.certified and result.cube_steps == R_STAR and result.exact
    (w,) = result.witnesses
    assert misclassified(reference.net.run(w.point), reference.label)
    assert prober.grid.cube_include(w.point) == R_STAR + 1
    assert len(prober.calls) <= int(np.log2(prober.grid.diameter)) + 3
    top, _, tprober = certify(reference, embedded, "cube-topdown")
    assert top.certified and top.cube_steps == R_STAR
    assert len(tprober.calls) <= tprober.grid.diameter + 1


@needs_marabou
def test_marabou_confirms_the_apothem_on_a_linear_net(linear_net: tuple) -> None:
    path, _, _, x = linear_net
    instance = Instance.make(path, x, None)
    marabou = make_oracle("marabou")
    result, _, prober = certify(instance, make_oracle("embedded"), "apothem")
    g = prober.grid
    unsat = marabou.check(Query.build(path, robustness_spec(result.box, instance.label, instance.outputs)), 120)
    assert unsat.verdict is Verdict.UNSAT
    beyond = g.cube(result.cube_steps + 1)
    sat = marabou.check(Query.build(path, robustness_spec(beyond, instance.label, instance.outputs)), 120)
    assert sat.verdict is Verdict.SAT and beyond.contains(sat.witness)


@needs_marabou
@pytest.mark.slow
@pytest.mark.marabou
def test_marabou_confirms_the_reference_apothem(reference: Instance) -> None:
    # About 1-2 minutes: Marabou's unsat on the 784-input cube is the slow part.
    result, _, prober = certify(reference, make_oracle("embedded"), "apothem")
    marabou = make_oracle("marabou")
    query = Query.build(reference.onnx, robustness_spec(result.box, reference.label, reference.outputs))
    assert marabou.check(query, 400).verdict is Verdict.UNSAT
    beyond = Query.build(reference.onnx, robustness_spec(prober.grid.cube(R_STAR + 1), reference.label,
                                                          reference.outputs))
    sat = marabou.check(beyond, 400)
    assert sat.verdict is Verdict.SAT
    confirm_witness(beyond, sat.witness)  # raises BogusWitness if onnxruntime disagrees
    confirm_witness(beyond, result.witnesses[0].point)


def test_slack_grows_the_reference_cube_with_validated_blocked_faces(reference: Instance) -> None:
    from vnnbridge.search.base import SearchOptions

    result, _, prober = certify(reference, make_oracle("embedded"), "apothem+slack",
                                options=SearchOptions(max_calls=25))
    g = prober.grid
    assert result.certified and result.proof is not None and result.proof.verdict is Verdict.UNSAT
    assert result.box.contains_box(g.cube(R_STAR)) and result.box != g.cube(R_STAR)
    assert len(prober.calls) <= 2 * 25
    blocked = result.blocked()
    assert blocked  # the slack phase blocks faces with onnxruntime-only witnesses
    unproven = set(result.stuck_faces) | set(result.open_faces)
    for face in range(2 * g.n):
        if result.steps[face] == g.reach[face] or face in unproven:
            continue
        assert face in blocked, f"face {face}: not on the boundary, not blocked, not listed as open or stuck"
        grown = result.steps.copy()
        grown[face] += 1
        p = blocked[face].point
        assert g.box(grown).contains(p) and not result.box.contains(p)
        assert misclassified(reference.net.run(p), reference.label)
