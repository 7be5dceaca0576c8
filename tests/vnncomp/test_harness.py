"""The harness's per-instance flow, reproduced: the scripts run as the competition runs them.

For each instance: ``prepare_instance.sh v1 CAT ONNX VNNLIB`` with a 600 s limit, a result file
pre-filled with ``no_result_in_file``, ``run_instance.sh v1 CAT ONNX VNNLIB out.txt TIMEOUT`` with
a kill at TIMEOUT + 60, the working directory being the benchmark folder and every path relative
to it, stdin ``/dev/null``; then the first line with all whitespace removed, and for ``sat`` the
witness read and checked the way the scorer does (box membership within 1e-4, onnxruntime outputs
within relative error 1e-3, property violated). The witness check below is written independently
of vnnbridge's own (only the property is parsed with vnnbridge's parser).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vnnbridge.box import Box
from vnnbridge.inputs import load_input
from vnnbridge.network import load_network
from vnnbridge.vnnlib.model import robustness_spec

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60
WORDS = {"sat", "unsat", "timeout", "unknown", "error"}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VNNBRIDGE_ORACLE")}
    # Own scope: prepare here never ends the tools of tests running in parallel.
    env["VNNBRIDGE_RUN_SCOPE"] = f"test-harness-{os.getpid()}"
    env.update(extra)
    return env


def harness_flow(bench: Path, category: str, onnx: str, vnnlib: str, timeout: float = TIMEOUT,
                 env: dict[str, str] | None = None) -> tuple[str, str, float]:
    """Prepare, pre-fill, run, extract: (first line without whitespace, whole file, run seconds)."""
    env = env or _env()
    prep = subprocess.run([str(ROOT / "prepare_instance.sh"), "v1", category, onnx, vnnlib], cwd=bench,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600, env=env)
    assert prep.returncode == 0, prep.stderr
    out = bench / "out.txt"
    out.write_text("no_result_in_file")
    start = time.monotonic()
    run = subprocess.run([str(ROOT / "run_instance.sh"), "v1", category, onnx, vnnlib, "out.txt", str(timeout)],
                         cwd=bench, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=timeout + 60, env=env)
    seconds = time.monotonic() - start
    text = out.read_text()
    first = "".join(text.splitlines()[0].split()) if text else ""
    assert run.returncode == 0, run.stderr
    return first, text, seconds


def scorer_check(bench: Path, onnx: str, vnnlib: str, text: str) -> None:
    """Check a sat result file the way the scorer does; fails the test otherwise."""
    from vnnbridge.vnnlib.parser import parse_file

    pairs = re.findall(r"\(\s*([XY])_(\d+)\s+([-+0-9.eEinfa]+)\s*\)", text)
    xs = {int(i): float(v) for k, i, v in pairs if k == "X"}
    ys = {int(i): float(v) for k, i, v in pairs if k == "Y"}
    spec = parse_file(bench / vnnlib)
    assert sorted(xs) == list(range(spec.inputs)) and sorted(ys) == list(range(spec.outputs))
    x = np.array([xs[i] for i in range(spec.inputs)])
    y = np.array([ys[i] for i in range(spec.outputs)])
    import onnxruntime as ort

    session = ort.InferenceSession(str(bench / onnx), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
    actual = session.run(None, {inp.name: x.astype(np.float32).reshape(shape)})[0].astype(np.float64).ravel()
    assert np.allclose(y, actual, rtol=1e-3, atol=1e-4), "written outputs differ from onnxruntime"
    assert any(case.box.contains(x, atol=1e-4) for case in spec.cases), "witness outside the input box"
    assert spec.violated_by(x, actual, atol=1e-4), "the witness does not violate the property"


@pytest.fixture(scope="module")
def bench(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A benchmark folder: mnistfc (network + two VNN-COMP properties) and generated paper properties."""
    from vnnbridge.vnnlib.writer import write

    root = tmp_path_factory.mktemp("benchmark")
    (root / "onnx").mkdir()
    (root / "vnnlib").mkdir()
    shutil.copy(shared / "data/networks/mnist/mnist-net_256x2.onnx", root / "onnx")
    for name in ("prop_0_0.03.vnnlib", "prop_0_0.05.vnnlib"):
        shutil.copy(shared / "data/vnnlib/mnistfc" / name, root / "vnnlib")
    shutil.copy(shared / "vnnlib-corpus/mnist_fc/prop_0_0.03.vnnlib", root / "vnnlib/corpus_prop_0_0.03.vnnlib")
    for kind in ("mnist", "fmnist"):
        net_path = shared / f"data/paper/networks/{kind}_784_32_10.onnx"
        shutil.copy(net_path, root / "onnx")
        net = load_network(net_path)
        x = load_input(sorted((shared / f"data/paper/{kind}/images").glob("*.csv"))[0]).x
        label = net.predict(x)
        domain = Box.from_arrays(np.zeros(x.size), np.ones(x.size))
        # Radius 0: the image itself, correctly classified -> unsat. Radius 1: the whole domain -> sat.
        # 0.06 and 0.15 lie on either side of image 0's robustness radius (MNIST).
        for r in (0.0, 0.06, 0.15, 1.0):
            (root / f"vnnlib/{kind}_r{r}.vnnlib").write_text(write(robustness_spec(Box.cube(x, r, domain),
                                                                                   label, net.outputs)))
    return root


# (onnx, vnnlib, the answers that are right; None: decided by another oracle below)
INSTANCES = [
    ("onnx/mnist_784_32_10.onnx", "vnnlib/mnist_r0.0.vnnlib", {"unsat"}),
    ("onnx/mnist_784_32_10.onnx", "vnnlib/mnist_r1.0.vnnlib", {"sat"}),
    ("onnx/fmnist_784_32_10.onnx", "vnnlib/fmnist_r0.0.vnnlib", {"unsat"}),
    ("onnx/fmnist_784_32_10.onnx", "vnnlib/fmnist_r1.0.vnnlib", {"sat"}),
    ("onnx/mnist-net_256x2.onnx", "vnnlib/prop_0_0.03.vnnlib", {"sat", "unsat"}),
    ("onnx/mnist-net_256x2.onnx", "vnnlib/prop_0_0.05.vnnlib", {"sat", "unsat"}),
    ("onnx/mnist-net_256x2.onnx", "vnnlib/corpus_prop_0_0.03.vnnlib", {"sat", "unsat"}),
]


@pytest.mark.parametrize(("onnx", "vnnlib", "right"), INSTANCES, ids=[Path(v).stem for _, v, _ in INSTANCES])
def test_harness_flow_embedded(bench: Path, onnx: str, vnnlib: str, right: set[str]) -> None:
    first, text, seconds = harness_flow(bench, "vnnbridge_test", onnx, vnnlib)
    assert first in right, text[:200]
    assert seconds < TIMEOUT
    if first == "sat":
        scorer_check(bench, onnx, vnnlib, text)


def test_harness_answers_agree_with_marabou(bench: Path) -> None:
    # Radii on both sides of image 0's robustness radius on the MNIST paper network (Marabou
    # answers these in seconds; it times out on the mnistfc properties at 60 s).
    from vnnbridge.oracles.registry import is_available

    if not is_available("marabou"):
        pytest.skip("Marabou is not installed")
    answers = {}
    for vnnlib in ("vnnlib/mnist_r0.06.vnnlib", "vnnlib/mnist_r0.15.vnnlib"):
        for oracle in ("embedded", "marabou"):
            first, text, _ = harness_flow(bench, "paper", "onnx/mnist_784_32_10.onnx", vnnlib,
                                          env=_env(VNNBRIDGE_ORACLE=oracle))
            answers[vnnlib, oracle] = first
            if first == "sat":
                scorer_check(bench, "onnx/mnist_784_32_10.onnx", vnnlib, text)
    assert answers == {("vnnlib/mnist_r0.06.vnnlib", "embedded"): "unsat",
                       ("vnnlib/mnist_r0.06.vnnlib", "marabou"): "unsat",
                       ("vnnlib/mnist_r0.15.vnnlib", "embedded"): "sat",
                       ("vnnlib/mnist_r0.15.vnnlib", "marabou"): "sat"}


def test_scripts_check_version_string(bench: Path) -> None:
    for script, args in (("prepare_instance.sh", ["v2", "c", "a.onnx", "b.vnnlib"]),
                         ("run_instance.sh", ["v2", "c", "a.onnx", "b.vnnlib", "out.txt", "10"]),
                         ("install_tool.sh", ["v2"])):
        done = subprocess.run([str(ROOT / script), *args], cwd=bench, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 1 and "expected version string v1" in done.stderr


def test_bad_instances_answer_error(bench: Path, shared: Path) -> None:
    broken = bench / "vnnlib/broken.vnnlib"
    broken.write_text("(declare-const X_0 Real)\n(assert (<= X_0 \n")
    first, _, _ = harness_flow(bench, "c", "onnx/mnist_784_32_10.onnx", "vnnlib/broken.vnnlib", timeout=20)
    assert first == "error"
    # A property whose sizes do not fit the network (ACAS Xu: 5 inputs).
    shutil.copy(shared / "vnnlib-corpus/acasxu/prop_1.vnnlib", bench / "vnnlib/acas.vnnlib")
    first, _, _ = harness_flow(bench, "c", "onnx/mnist_784_32_10.onnx", "vnnlib/acas.vnnlib", timeout=20)
    assert first == "error"
    first, _, _ = harness_flow(bench, "c", "onnx/missing.onnx", "vnnlib/mnist_r0.0.vnnlib", timeout=20)
    assert first == "error"
    pairs = "[('f', 'onnx/mnist_784_32_10.onnx'), ('g', 'onnx/fmnist_784_32_10.onnx')]"
    first, _, _ = harness_flow(bench, "c", pairs, "vnnlib/mnist_r0.0.vnnlib", timeout=20)
    assert first == "error"
    one = "[('f', 'onnx/mnist_784_32_10.onnx')]"
    first, _, _ = harness_flow(bench, "c", one, "vnnlib/mnist_r0.0.vnnlib", timeout=20)
    assert first == "unsat"
    assert not list(bench.glob("vnnlib/*.onnx")) and not list(bench.glob("onnx/*.vnnlib"))


def test_watchdog_answers_timeout_before_the_deadline(bench: Path) -> None:
    # Fault injection: an oracle that hangs far past its budget and ignores it.
    code = (
        "import sys, vnnbridge.oracles.registry as r\n"
        "from vnnbridge.oracles.fake import FakeOracle\n"
        "r.make_oracle = lambda spec, **kw: FakeOracle(answer=lambda q, t: __import__('time').sleep(600))\n"
        "import vnnbridge.vnncomp.run\n"
        "from vnnbridge.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    out = bench / "hang.txt"
    out.write_text("no_result_in_file")
    start = time.monotonic()
    env = _env(VNNBRIDGE_ANSWER_JSON=str(bench / "hang.json"))
    done = subprocess.run([sys.executable, "-c", code, "vnncomp-run", "--category", "c", "--onnx",
                           "onnx/mnist_784_32_10.onnx", "--vnnlib", "vnnlib/mnist_r0.0.vnnlib", "--results",
                           "hang.txt", "--timeout", "6", "--started", repr(time.time())], cwd=bench,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=66, env=env)
    seconds = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    assert out.read_text().split()[0] == "timeout"
    assert seconds < 6, seconds
    # The answer names the oracle that held the instance and for how long (not 0 s).
    answer = json.loads((bench / "hang.json").read_text())
    assert answer["verdict"] == "timeout" and answer["oracle"] == "embedded"
    assert 2.0 < answer["seconds"] < 6, answer


def test_hanging_tool_gets_timeout_and_is_ended(bench: Path) -> None:
    # A competition tool folder (vnncomp:DIR) whose run_instance.sh sleeps far past any timeout.
    from vnnbridge.vnncomp.run import find_marked

    env = _env(VNNBRIDGE_ORACLE=f"vnncomp:{ROOT / 'tests/data/fake_tools/hang'}")
    first, _, seconds = harness_flow(bench, "c", "onnx/mnist_784_32_10.onnx", "vnnlib/mnist_r0.0.vnnlib",
                                     timeout=8, env=env)
    assert first == "timeout" and seconds < 8
    time.sleep(0.5)
    assert find_marked(env["VNNBRIDGE_RUN_SCOPE"] + ":", exact=False) == []  # the tool's sleep is gone
