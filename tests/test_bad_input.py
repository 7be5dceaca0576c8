"""The 14 bad-input cases of issue 12: each is answered by one clear line, a documented exit code, and
no lost work. Each test failed on the code before the fix (see the before/after table in the issue's
closing note)."""

from __future__ import annotations

import gzip
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vnnbridge.box import Box
from vnnbridge.cli import build_parser, main
from vnnbridge.errors import InputError
from vnnbridge.vnnlib.model import robustness_spec
from vnnbridge.vnnlib.writer import write

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "tests" / "data" / "paper"
NET = PAPER / "mnist_784_32_10.onnx"
IMAGE = PAPER / "mnist_0-1.csv"  # label 0 on NET


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.loadtxt(IMAGE).ravel()


@pytest.fixture(scope="module")
def sat_vnnlib(tmp_path_factory: pytest.TempPathFactory, pixels: np.ndarray) -> Path:
    """A property with a counterexample: the cube of radius 0.5 around the image (label 0)."""
    path = tmp_path_factory.mktemp("sat") / "sat.vnnlib"
    box = Box.from_arrays(np.clip(pixels - 0.5, 0, 1), np.clip(pixels + 0.5, 0, 1))
    path.write_text(write(robustness_spec(box, 0, 10)))
    return path


def _idx(folder: Path, images: np.ndarray, labels: list[int]) -> Path:
    """An MNIST-style idx images file (0-255 bytes) with its labels file beside it."""
    raw = np.round(images * 255).astype(np.uint8)
    head = struct.pack(">BBBB3I", 0, 0, 0x08, 3, raw.shape[0], 28, 28)
    path = folder / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(head + raw.tobytes()))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(struct.pack(">BBBBI", 0, 0, 0x08, 1, len(labels)) + bytes(labels)))
    return path


def _certify(*args: str) -> int:
    return main(["certify", "--onnx", str(NET), "--input", str(IMAGE), "-q", *args])


# 1 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["folder", "unwritable"])
def test_01_query_prints_the_verdict_before_a_witness_it_cannot_write(
        where: str, sat_vnnlib: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path if where == "folder" else Path("/proc/no-such-folder/w.txt")
    code = main(["query", "--onnx", str(NET), "--vnnlib", str(sat_vnnlib), "--witness", str(target)])
    out, err = capsys.readouterr()
    assert out == "sat\n"
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"{target}: --witness: cannot write the witness")


# 2 ------------------------------------------------------------------------------------------------
def test_02_certify_checks_out_before_any_oracle_call(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vnnbridge.job import CertifyJob, run_job
    from vnnbridge.oracles.fake import FakeOracle

    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    for out, says in ((a_file, "this is a file"), (a_file / "sub", "is a file, so no folder"),
                      (Path("/proc/vnnbridge-cert"), "cannot write here")):
        oracle = FakeOracle("unsat")
        with pytest.raises(InputError, match=says):
            run_job(CertifyJob(onnx=str(NET), input=str(IMAGE), out=str(out)), oracle=oracle)
        assert oracle.calls == []
    assert _certify("--out", str(a_file)) == 2
    assert capsys.readouterr().err.strip() == f"{a_file}: --out: this is a file; a folder is needed here"


# 3 ------------------------------------------------------------------------------------------------
def test_03_show_and_export_refuse_bad_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert = tmp_path / "cert"
    assert _certify("--dual", "none", "--out", str(cert)) == 0
    capsys.readouterr()
    assert main(["show", str(cert), "-o", str(tmp_path / "x.foo")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{tmp_path / 'x.foo'}: cannot draw a .foo file; use one of") and ".png" in err
    assert main(["show", str(cert), "-o", "/proc/no-such-folder/x.png"]) == 2
    assert capsys.readouterr().err.strip().startswith("/proc/no-such-folder/x.png: cannot write the figure")
    a_file = tmp_path / "taken"
    a_file.write_text("")
    assert main(["export-benchmark", "--onnx", str(NET), "--input", str(IMAGE), "--radii", "0.01",
                 "--out", str(a_file)]) == 2
    assert capsys.readouterr().err.strip() == f"{a_file}: --out: this is a file; a folder is needed here"


# 4 ------------------------------------------------------------------------------------------------
def test_04_the_index_names_folders_sources_summaries_and_exports(
        pixels: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    images = _idx(tmp_path, np.stack([pixels, pixels[::-1]]), [0, 0])
    monkeypatch.chdir(tmp_path)
    for k in (0, 1):
        assert main(["certify", "--onnx", str(NET), "--input", str(images), "--index", str(k), "-q",
                     "--dual", "none", "--method", "cube-bisect"]) in (0, 1)
        assert capsys.readouterr().out.startswith(f"t10k-images-idx3-ubyte.gz[{k}]: label ")
        data = json.loads((tmp_path / f"cert-t10k-images-idx3-ubyte-{k}" / "certificate.json").read_text())
        assert data["input"]["source"] == f"{images}[{k}]"
    assert main(["export-benchmark", "--onnx", str(NET), "--input", str(images), "--index", "1",
                 "--radii", "0.01", "--out", "bench"]) == 0
    assert "--index 1" in (tmp_path / "bench" / "README.md").read_text()
    assert all("_item1_" in p.name for p in (tmp_path / "bench" / "vnnlib").iterdir())


# 5 ------------------------------------------------------------------------------------------------
def test_05_inputs_outside_the_domain_say_where_and_what_to_do(
        pixels: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def certify(path: Path, *extra: str) -> str:
        assert main(["certify", "--onnx", str(NET), "--input", str(path), "-q", *extra]) == 2
        return capsys.readouterr().err.strip()

    bytes_csv = tmp_path / "bytes.csv"
    bytes_csv.write_text(",".join(str(int(v)) for v in np.round(pixels * 255)))
    first = int(np.nonzero(pixels * 255 > 1)[0][0])
    assert certify(bytes_csv) == (
        f"{bytes_csv}: the input lies outside the domain: coordinate {first} is {round(pixels[first] * 255)!r}.0, "
        f"not in [0.0, 1.0] ({int(np.sum(np.round(pixels * 255) > 1))} of 784 values outside); the values look "
        "like 0-255 pixels: divide them by 255 (the domain is [0, 1])")
    over = pixels.copy()
    over[5] = 1.5
    one_csv = tmp_path / "one.csv"
    one_csv.write_text(",".join(repr(float(v)) for v in over))
    assert certify(one_csv) == (f"{one_csv}: the input lies outside the domain: coordinate 5 is 1.5, not in "
                                "[0.0, 1.0] (1 of 784 values outside)")
    assert certify(IMAGE, "--index", "3") == (f"{IMAGE}: --index 3 picks an item of an idx or .npy collection; "
                                              "this file is one input")
    np.save(tmp_path / "stack.npy", np.stack([pixels.reshape(28, 28)] * 3))
    assert certify(tmp_path / "stack.npy").endswith("the file holds 3 inputs of 784 values: pick one with --index K")


# 6 ------------------------------------------------------------------------------------------------
def test_06_a_label_other_than_the_prediction_stops_at_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from vnnbridge.job import CertifyJob, run_job

    outcome = run_job(CertifyJob(onnx=str(NET), input=str(IMAGE), label=3, out=str(tmp_path / "c")))
    assert outcome.exit_code == 1 and not outcome.result.certified
    assert len(outcome.prober.calls) == 1 and outcome.dual is None  # before: 1 + 3750 dual calls
    assert "x itself is misclassified" in caplog.text


# 7 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("timeout", ["abc", "-5", "0"])
def test_07_run_instance_writes_error_for_a_bad_timeout(timeout: str, sat_vnnlib: Path, tmp_path: Path) -> None:
    results = tmp_path / "out.txt"
    results.write_text("no_result_in_file\n")
    proc = subprocess.run(["bash", str(ROOT / "run_instance.sh"), "v1", "test", str(NET), str(sat_vnnlib),
                           str(results), timeout], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert results.read_text().split() == ["error"]
    assert "TIMEOUT" in proc.stderr and "usage" not in proc.stderr


# 8 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["certify", "query", "export-benchmark"])
@pytest.mark.parametrize("form", [["0.1", "0.2"], ["0.1,0.2"], ["0.1,", "0.2"]])
def test_08_mean_and_std_take_both_forms_everywhere(command: str, form: list[str]) -> None:
    need = {"certify": ["--onnx", "n", "--input", "x"], "query": ["--onnx", "n", "--vnnlib", "p"],
            "export-benchmark": ["--onnx", "n", "--input", "x", "--out", "o"]}[command]
    args = build_parser().parse_args([command, *need, "--mean", *form, "--std", "0.5,", "2"])
    assert args.mean == [0.1, 0.2] and args.std == [0.5, 2.0]


def test_08_a_word_that_is_no_number_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["query", "--onnx", "n", "--vnnlib", "p", "--mean", "0.1,zero"])
    assert exc.value.code == 2 and "expected numbers, got 'zero'" in capsys.readouterr().err


# 9 ------------------------------------------------------------------------------------------------
def test_09_sigterm_after_a_certified_box_keeps_it(tmp_path: Path) -> None:
    out = tmp_path / "cert"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "vnnbridge", "-vv", "certify", "--onnx", str(NET), "--input",
                             str(IMAGE), "--method", "apothem+grow", "--out", str(out), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    try:
        for line in proc.stderr:  # the first call of the grow phase: the apothem box is certified
            if "robust grow faces=" in line or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
    assert code == 130
    data = json.loads((out / "certificate.json").read_text())
    assert data["status"] == "certified" and data["interrupted"] is True


def test_09_sigterm_during_an_external_tool_is_still_an_interrupt() -> None:
    from vnnbridge.job import terminate_as_interrupt
    from vnnbridge.oracles.process import _terminate_as_exit

    with pytest.raises(KeyboardInterrupt):
        with terminate_as_interrupt(), _terminate_as_exit():  # certify, then a tool call inside it
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    with pytest.raises(SystemExit):
        with _terminate_as_exit():  # a tool call anywhere else: SIGTERM unwinds as an exit
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)


# 10 -----------------------------------------------------------------------------------------------
def test_10_written_files_follow_the_umask(tmp_path: Path) -> None:
    from vnnbridge.oracles.base import Verdict
    from vnnbridge.vnncomp.results import write_result

    old = os.umask(0o027)
    try:
        assert _certify("--dual", "none", "--out", str(tmp_path / "cert")) == 0
        assert main(["export-benchmark", "--onnx", str(NET), "--input", str(IMAGE), "--radii", "0.01",
                     "--out", str(tmp_path / "bench")]) == 0
        write_result(tmp_path / "result.txt", Verdict.UNSAT)
    finally:
        os.umask(old)
    written = [tmp_path / "cert" / "certificate.json", tmp_path / "cert" / "box.vnnlib",
               tmp_path / "bench" / "instances.csv", tmp_path / "result.txt",
               *(tmp_path / "bench" / "vnnlib").iterdir()]
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in written} == {oct(0o640)}


# 11 -----------------------------------------------------------------------------------------------
def test_11_a_file_for_a_folder_and_a_folder_for_a_file_are_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("")
    assert main(["check", str(a_file)]) == 2
    assert capsys.readouterr().err.strip() == (f"{a_file}: this is a file, not a certificate folder "
                                               "(a folder with certificate.json)")
    assert main(["certify", "--onnx", str(tmp_path), "--input", str(IMAGE), "-q"]) == 2
    assert capsys.readouterr().err.strip() == f"{tmp_path}: this is a folder, not an ONNX file"
    assert main(["certify", "--onnx", str(NET), "--input", str(tmp_path), "-q"]) == 2
    assert capsys.readouterr().err.strip() == f"{tmp_path}: this is a folder, not an input file"


# 12 -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["certify", "query"])
def test_12_an_unknown_oracle_is_bad_input(command: str, sat_vnnlib: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = (["certify", "--onnx", str(NET), "--input", str(IMAGE), "-q"] if command == "certify"
            else ["query", "--onnx", str(NET), "--vnnlib", str(sat_vnnlib)])
    assert main([*args, "--oracle", "bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vnnbridge: no oracle 'bogus'; known: embedded, marabou, vnncomp") and "fake" in err


# 13 -----------------------------------------------------------------------------------------------
def test_13_a_prediction_against_the_true_label_is_warned_loudly(
        pixels: np.ndarray, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from vnnbridge.job import CertifyJob, run_job

    images = _idx(tmp_path, np.stack([pixels, pixels]), [0, 5])  # item 1 is "really" a 5; NET says 0
    run_job(CertifyJob(onnx=str(NET), input=str(images), index=0, dual=None, out=str(tmp_path / "a")))
    assert "true label" not in caplog.text
    outcome = run_job(CertifyJob(onnx=str(NET), input=str(images), index=1, dual=None, out=str(tmp_path / "b")))
    assert outcome.instance.label == 0
    assert "the network predicts 0" in caplog.text and "its true label is 5" in caplog.text
    assert "--mean/--std" in caplog.text
    data = json.loads((tmp_path / "b" / "certificate.json").read_text())
    assert data["input_true_label"]["label"] == 5
    assert "--mean/--std" in (ROOT / "README.md").read_text()


# 14 -----------------------------------------------------------------------------------------------
def test_14_long_searches_report_phase_calls_and_open_faces(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from vnnbridge.cli import certify as cli_certify
    from vnnbridge.search.names import DEFAULT_MAX_CALLS

    args = build_parser().parse_args(["certify", "--onnx", "n", "--input", "x"])
    assert args.max_calls == DEFAULT_MAX_CALLS <= 1000  # ~0.1-0.3 s a call: minutes, not an hour
    monkeypatch.setattr(cli_certify._Progress, "HEARTBEAT", 0.0)  # a line per call (not a terminal)
    assert main(["certify", "--onnx", str(NET), "--input", str(IMAGE), "--method", "apothem+grow",
                 "--max-calls", "6", "--dual", "none", "--out", str(tmp_path / "c")]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("vnnbridge: ")]
    assert any(ln.startswith("vnnbridge: apothem: 1 calls") for ln in lines)
    grow = [ln for ln in lines if ln.startswith("vnnbridge: grow: ")]
    assert grow and all("faces open" in ln for ln in grow)
