"""Trust when the oracle is wrong: liars are cross-examined and confirmed away, checks cannot be fooled."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from vnnbridge.certificate import check_certificate, read_certificate, write_certificate
from vnnbridge.cli import main
from vnnbridge.job import CertifyJob, run_job
from vnnbridge.oracles.base import OracleResult, Query, Verdict
from vnnbridge.oracles.registry import Validating, is_available
from vnnbridge.search.base import Instance, SearchOptions
from vnnbridge.search.compose import certify

from tests.search.conftest import LinearOracle, ScriptedOracle, write_linear_onnx
from tests.search.test_search import robust_truth

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "tests" / "data" / "paper"
LinearNet = tuple[Path, np.ndarray, np.ndarray, np.ndarray]


def _liar() -> ScriptedOracle:
    """Says unsat on every box, counterexamples or not."""
    return ScriptedOracle(lambda q: OracleResult(Verdict.UNSAT, "liar", "0"))


@pytest.fixture()
def instance(linear_net: LinearNet) -> Instance:
    path, _, _, x = linear_net
    return Instance.make(path, x, None)


def _true_r(linear_net: LinearNet, instance: Instance) -> int:
    _, w, c, x = linear_net
    from vnnbridge.box import Box

    return max(k for k in range(256) if robust_truth(w, c, instance.label, Box.cube(x, k / 255, instance.domain)))


def test_a_liar_never_certifies_a_box_with_a_counterexample(linear_net: LinearNet, instance: Instance) -> None:
    _, w, c, _ = linear_net
    r = _true_r(linear_net, instance)
    # taken at its word (no cross-examination, no confirmation) the liar certifies the whole domain:
    # the instance really can be fooled, so the two runs below show the defences working
    naive, _, _ = certify(instance, _liar(), "apothem", options=SearchOptions(cross_examine=None))
    assert naive.certified and not robust_truth(w, c, instance.label, naive.box)
    # 1. cross-examination alone (no confirmation): every lie with a counterexample is refuted
    result, _, prober = certify(instance, _liar(), "apothem+grow")
    assert result.certified and robust_truth(w, c, instance.label, result.box) and result.cube_steps == r
    assert prober.refutations and all(r.by.startswith("attack") and r.oracle == "liar" for r in prober.refutations)
    assert all(prober.calls[f.call].refuted_by for f in prober.refutations)
    assert all(instance.misclassified(f.point) and f.margin >= 0 for f in prober.refutations)
    # 2. confirmation alone (no cross-examination): the confirmer's witness refutes, the search goes on
    confirmer = Validating(LinearOracle(w, c))
    result, _, prober = certify(instance, _liar(), "apothem", options=SearchOptions(cross_examine=None),
                                confirmer=confirmer)
    assert result.certified and result.confirmed and robust_truth(w, c, instance.label, result.box)
    assert result.cube_steps == r and prober.refutations
    assert {f.by for f in prober.refutations} == {"linear-lp"}
    assert [c.purpose for c in prober.calls].count("confirm") == len(prober.refutations) + 1


def test_refutations_are_recorded_in_the_certificate_and_rechecked(linear_net: LinearNet, instance: Instance,
                                                                  tmp_path: Path) -> None:
    result, dual, prober = certify(instance, _liar(), "apothem")
    out = tmp_path / "cert"
    write_certificate(out, prober, result, dual, source="test", shape=(12,), confirm=None)
    data = read_certificate(out)
    assert data["refuted_count"] == len(prober.refutations) > 0
    first = data["refuted"][0]
    assert first["oracle"] == "liar" and first["claimed"] == "unsat" and first["refuted_by"].startswith("attack")
    assert data["calls"][first["call"]]["refuted_by"] == first["refuted_by"]
    assert data["confirmation"] is None and data["unconfirmed"] is False
    assert check_certificate(out, None).ok
    # a recorded counterexample that is none (moved onto x) is caught
    data["refuted"][0]["point_hex"] = data["input"]["hex"]
    (out / "certificate.json").write_text(json.dumps(data))
    failed = [c.name for c in check_certificate(out, None).checks if not c.ok]
    assert failed == [f"refuted answers ({data['refuted_count']}, onnxruntime)"]


def test_a_confirmer_without_an_answer_leaves_the_box_unconfirmed(linear_net: LinearNet, instance: Instance,
                                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path, w, c, x = linear_net
    np.savetxt(tmp_path / "x.csv", x[None, :], delimiter=",")
    from vnnbridge.oracles import registry

    monkeypatch.setitem(registry.BUILTIN, "exact", "tests.search.test_trust:_ExactLinear")
    _ExactLinear.w, _ExactLinear.c = w, c
    job = CertifyJob(onnx=str(path), input=str(tmp_path / "x.csv"), method="apothem", dual=None, oracle="exact",
                     confirm="fake:timeout", out=str(tmp_path / "cert"))
    outcome = run_job(job)
    assert outcome.result.certified and outcome.unconfirmed and outcome.exit_code == 0 and outcome.refuted == 0
    assert "certified (UNCONFIRMED) by apothem" in outcome.summary()
    assert "UNCONFIRMED: fake:timeout gave no unsat (timeout" in outcome.summary()
    data = read_certificate(tmp_path / "cert")
    assert data["status"] == "certified" and data["unconfirmed"] is True
    assert data["confirmation"]["verdict"] == "timeout" and data["calls"][-1]["purpose"] == "confirm"
    assert outcome.to_json()["unconfirmed"] is True
    # auto: embedded confirms another oracle; and the JSON output says so
    code = main(["certify", "--onnx", str(path), "--input", str(tmp_path / "x.csv"), "--method", "apothem",
                 "--dual", "none", "--oracle", "exact", "--out", str(tmp_path / "c2"), "--json", "-q"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["confirm"] == "embedded" and out["confirmed"] is True and out["refuted"] == 0


class _ExactLinear(LinearOracle):
    """The exact LP oracle, constructible by name (the registry builds it without arguments)."""

    w = c = np.zeros(0)
    name = "exact"

    def __init__(self) -> None:
        super().__init__(type(self).w, type(self).c)


def test_apothem_zero_is_trivial_not_certified(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # two classes y = x: x = (0.5, 0.5 - 1/255) is class 0, and one step moves it across (a tie counts against)
    onnx = write_linear_onnx(tmp_path / "two.onnx", np.eye(2), np.zeros(2))
    (tmp_path / "x.csv").write_text(f"{128 / 255!r} {127 / 255!r}\n")
    out = tmp_path / "cert"
    code = main(["certify", "--onnx", str(onnx), "--input", str(tmp_path / "x.csv"), "--dual", "none",
                 "--out", str(out), "-q"])
    text = capsys.readouterr().out
    assert code == 1 and "TRIVIAL by apothem" in text and "not a certification" in text and "Apothem 0" not in text
    data = read_certificate(out)
    assert data["status"] == "trivial" and data["apothem_steps"] == 0 and data["metrics"]["apothem"] == 0.0
    assert main(["check", str(out)]) == 1
    assert "status is 'trivial'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def mnist_cert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (PAPER / "mnist_784_32_10.onnx").is_file():
        pytest.skip("bundled reference data missing")
    out = tmp_path_factory.mktemp("mnist") / "cert"
    assert main(["certify", "--onnx", str(PAPER / "mnist_784_32_10.onnx"), "--input", str(PAPER / "mnist_0-1.csv"),
                 "--method", "apothem", "--dual", "none", "--out", str(out), "-q"]) == 0
    return out


def test_tampered_decimal_fields_fail_check(mnist_cert: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(mnist_cert, bad)
    data = json.loads((bad / "certificate.json").read_text())
    i = int(np.argmax(np.array(data["box"]["upper"]) < 1.0))
    data["box"]["upper"][i] += 0.2  # only the readable decimals change; hex and box.vnnlib are intact
    (bad / "certificate.json").write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["check", str(bad)]) == 1
    err = capsys.readouterr().err
    row, col = divmod(i, 28)
    assert f"box decimals: box.upper of input[0, {row}, {col}] is {data['box']['upper'][i]!r} in decimal" in err
    assert "np.float64" not in err


def test_a_changed_box_is_a_failed_claim_naming_the_coordinate(mnist_cert: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(mnist_cert, bad)
    data = json.loads((bad / "certificate.json").read_text())
    i = 300
    v = float.fromhex(data["box"]["lower_hex"][i]) - 1e-3  # off the 1/255 grid, still a box around x
    data["box"]["lower_hex"][i], data["box"]["lower"][i] = v.hex(), v
    (bad / "certificate.json").write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["check", str(bad), "--oracle", "none", "--list"]) == 1  # a failed claim: 1, not 2
    text = capsys.readouterr()
    row, col = divmod(i, 28)
    assert f"FAIL box on the grid: the lower bound {v!r} of input[0, {row}, {col}] is not on" in text.out
    assert f"not valid: box on the grid: the lower bound {v!r} of input[0, {row}, {col}]" in text.err
    assert "np.float64" not in text.out + text.err


needs_marabou = pytest.mark.skipif(not is_available("marabou"), reason="Marabou is not installed")


@needs_marabou
def test_marabou_lies_on_fashion_mnist_and_no_certificate_believes_it(shared: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Marabou 2.0.0 answers unsat on cubes of radius 23/255 and more around Fashion-MNIST paper image 0_1,
    # which hold onnxruntime-confirmed counterexamples; the true grid-exact r* is 22/255.
    onnx = shared / "data" / "paper" / "networks" / "fmnist_784_32_10.onnx"
    image = shared / "data" / "paper" / "fmnist" / "images" / "0_1.csv"
    base = ["certify", "--onnx", str(onnx), "--input", str(image), "--oracle", "marabou", "--method", "apothem",
            "--dual", "none", "--json", "-q"]
    refuted = {}
    for name, extra in (("default", []), ("no-confirm", ["--confirm", "none"]),
                        ("confirm-only", ["--cross-examine", "none"])):
        out = tmp_path / name
        assert main(base + extra + ["--out", str(out)]) == 0, name
        got = json.loads(capsys.readouterr().out)
        data = read_certificate(out)
        assert data["apothem_steps"] == 22 and data["status"] == "certified", name
        assert got["refuted"] == data["refuted_count"] > 0, name
        refuted[name] = {r["refuted_by"] for r in data["refuted"]}
    assert refuted["confirm-only"] == {"embedded"} and all(b.startswith("attack") for b in refuted["default"])
    # a forged certificate claiming the 23/255 cube (Marabou would say unsat there) fails check --oracle marabou,
    # given as a relative folder (the tool runs in another folder)
    from vnnbridge.inputs import load_input

    instance = Instance.make(onnx, load_input(image).x, None)

    def forge(q: Query) -> OracleResult:
        lo, _ = q.spec.cases[0].box.arrays()
        radius = float(np.max(instance.x - lo))
        return OracleResult(Verdict.UNSAT if radius <= 23 / 255 + 1e-9 else Verdict.TIMEOUT, "forger", "0")

    result, _, prober = certify(instance, ScriptedOracle(forge), "cube-bisect",
                                options=SearchOptions(cross_examine=None))
    assert result.certified and result.cube_steps == 23
    write_certificate(tmp_path / "forged", prober, result, source=str(image), shape=(28, 28))
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["check", "forged", "--oracle", "marabou", "--list"]) == 1
    text = capsys.readouterr().out
    # Marabou 2.0.0 accepts the forged box (it answers unsat, run on the relative folder's absolute paths);
    # the attack does not
    assert "FAIL attack" in text and "ok   oracle marabou" in text
    assert os.path.isdir("forged")
