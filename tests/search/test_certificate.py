"""Certificates: written exactly, re-checked, and a lying oracle caught by another one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from vnnbridge.certificate import check_certificate, read_certificate, write_certificate
from vnnbridge.cli import main
from vnnbridge.errors import CertificateError
from vnnbridge.oracles.registry import Validating, make_oracle
from vnnbridge.search.base import Instance
from vnnbridge.search.compose import certify

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "tests" / "data" / "paper"


def _write(tmp_path: Path, instance: Instance, oracle: object, method: str = "apothem+grow",
           dual: str | None = "dual-faces") -> Path:
    result, dual_result, prober = certify(instance, oracle, method, dual)  # type: ignore[arg-type]
    out = tmp_path / "cert"
    write_certificate(out, prober, result, dual_result, source="test", shape=(instance.x.size,))
    return out


def test_certificate_round_trips_exactly_and_checks(linear_net: tuple, linear_oracle: Validating,
                                                    tmp_path: Path) -> None:
    path, _, _, x = linear_net
    instance = Instance.make(path, x, None)
    out = _write(tmp_path, instance, linear_oracle)
    data = read_certificate(out)
    assert data["status"] == "certified" and data["label"] == instance.label
    for key in ("method", "delta", "box", "metrics", "calls", "network", "input", "domain", "oracle", "dual"):
        assert key in data
    assert set(data["metrics"]) == {"apothem", "min_edge", "avg_edge", "max_edge", "log_volume", "complexity"}
    # decimal and hex forms both read back to the same doubles
    assert [float.fromhex(h) for h in data["box"]["lower_hex"]] == data["box"]["lower"]
    assert all(c["query_sha256"] and c["verdict"] for c in data["calls"])
    report = check_certificate(out, linear_oracle)
    assert report.ok, report.first_failure()


def test_check_catches_tampering(linear_net: tuple, linear_oracle: Validating, tmp_path: Path) -> None:
    path, _, _, x = linear_net
    out = _write(tmp_path, Instance.make(path, x, None), linear_oracle)
    # 1. a box.vnnlib that widens one bound
    bad = tmp_path / "bad1"
    shutil.copytree(out, bad)
    data = json.loads((bad / "certificate.json").read_text())
    lo = float.fromhex(data["box"]["upper_hex"][5])
    text = (bad / "box.vnnlib").read_text().replace(repr(lo), repr(lo + 0.25), 1)
    (bad / "box.vnnlib").write_text(text)
    assert not check_certificate(bad, None).ok
    # 2. a witness moved inside the box no longer shows anything
    bad2 = tmp_path / "bad2"
    shutil.copytree(out, bad2)
    with np.load(bad2 / "witnesses.npz") as npz:
        pts = npz["points"].copy()
    pts[:] = x
    np.savez_compressed(bad2 / "witnesses.npz", points=pts)
    report = check_certificate(bad2, None)
    assert not report.ok
    # 3. a missing folder is an input error
    with pytest.raises(CertificateError):
        check_certificate(tmp_path / "nowhere", None)


def test_a_lying_oracle_is_caught_by_check_with_another_oracle(linear_net: tuple, linear_oracle: Validating,
                                                               tmp_path: Path) -> None:
    path, _, _, x = linear_net
    instance = Instance.make(path, x, None)
    liar = make_oracle("fake:unsat")
    out = _write(tmp_path, instance, liar, method="apothem", dual=None)
    data = read_certificate(out)
    assert data["status"] == "certified"  # the liar certified the whole domain
    report = check_certificate(out, linear_oracle)
    failure = report.first_failure()
    assert failure is not None and failure.name == "oracle linear-lp" and "sat" in failure.detail


@pytest.mark.skipif(not (PAPER / "mnist_784_32_10.onnx").is_file(), reason="bundled reference data missing")
def test_cli_certify_check_show_on_the_reference_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cert"
    code = main(["certify", "--onnx", str(PAPER / "mnist_784_32_10.onnx"), "--input",
                 str(PAPER / "mnist_0-1.csv"), "--method", "apothem", "--out", str(out), "-q"])
    text = capsys.readouterr().out
    assert code == 0 and "certified by apothem" in text and "Apothem 0.129412" in text
    assert main(["check", str(out)]) == 0
    assert main(["show", str(out), "-o", str(tmp_path / "fig.png")]) == 0
    fig = _pixels(tmp_path / "fig.png")
    assert fig.shape == (418, 1430, 3)  # four image panels, 13 x 3.8 inches at 110 dpi
    # The apothem cube's slack is the apothem at every input, the largest slack, so the whole
    # slack panel is viridis' top colour; the input's background (0) is black in its panel.
    assert _count(fig, (253, 231, 37)) > 40_000 and _count(fig, (0, 0, 0)) > 40_000
    # a lying certificate: the whole domain claimed robust, refuted by the embedded oracle
    liar = tmp_path / "liar"
    assert main(["certify", "--onnx", str(PAPER / "mnist_784_32_10.onnx"), "--input",
                 str(PAPER / "mnist_0-1.csv"), "--method", "apothem", "--dual", "none", "--oracle", "fake:unsat",
                 "--out", str(liar), "-q"]) == 0
    capsys.readouterr()
    assert main(["check", str(liar), "--oracle", "embedded"]) == 1
    assert "oracle embedded" in capsys.readouterr().err


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x.csv"
    bad.write_text("0 0 0\n0 zero 0\n")
    code = main(["certify", "--onnx", str(PAPER / "mnist_784_32_10.onnx"), "--input", str(bad), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"{bad}:2:3: not a number: 'zero'"
    assert main(["certify", "--onnx", str(PAPER / "mnist_784_32_10.onnx"), "--input",
                 str(PAPER / "mnist_0-1.csv"), "--method", "nope"]) == 2
    assert main(["check", str(tmp_path)]) == 2


def _pixels(png: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(png) as img:
        return np.asarray(img.convert("RGB"), dtype=np.int64)


def _count(pixels: np.ndarray, colour: tuple[int, int, int], tol: int = 3) -> int:
    """How many pixels have ``colour`` (within ``tol`` per channel)."""
    return int(np.sum(np.all(np.abs(pixels - np.array(colour)) <= tol, axis=-1)))


def test_show_draws_bar_charts_for_flat_inputs(linear_net: tuple, linear_oracle: Validating, tmp_path: Path) -> None:
    from vnnbridge.plot import draw_certificate

    path, _, _, x = linear_net
    out = _write(tmp_path, Instance.make(path, x, None), linear_oracle, method="apothem+grow", dual=None)
    fig = _pixels(draw_certificate(out, tmp_path / "bars.png"))
    # The certified box as light (alpha 0.4) tab:blue bars, the slack as tab:green bars, x as black dots.
    assert _count(fig, (165, 201, 225)) > 500 and _count(fig, (44, 160, 44)) > 500
    assert _count(fig, (0, 0, 0), tol=40) > 20


def test_cli_certify_names_the_input_file_on_a_shape_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    short = tmp_path / "short.csv"
    short.write_text("0.1 0.2 0.3\n")
    code = main(["certify", "--onnx", str(PAPER / "mnist_784_32_10.onnx"), "--input", str(short), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"{short}: the input has 3 values, the network expects 784"
