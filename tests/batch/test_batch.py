"""certify-batch end to end on the bundled MNIST slice: serial, --jobs 2, Dask, kill -9 and resume.

Every run must give the same table (all columns but the seconds) as the serial run.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from vnnbridge.cli import main

from .conftest import INDEX, NET, SLICE, table

ARGS = ["--onnx", str(NET), "--input", str(SLICE), "--index", INDEX, "--dual", "none", "-q"]
VNNBRIDGE = [sys.executable, "-m", "vnnbridge"]


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("serial") / "batch"
    assert main(["certify-batch", *ARGS, "--out", str(out)]) == 0
    return out


def test_serial_table_and_folders(serial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = table(serial)
    assert [r["id"] for r in rows] == [f"{k:02d}" for k in range(4, 12)]
    assert [r["true_label"] for r in rows] == ["4", "1", "4", "9", "5", "9", "0", "6"]
    assert all(r["status"] == "certified" and float(r["apothem"]) > 0 and r["error"] == "" for r in rows)
    assert all((serial / r["id"] / "certificate.json").is_file() for r in rows)
    # The same command again finishes at once and changes nothing.
    before = (serial / "results.csv").read_text()
    assert main(["certify-batch", *ARGS, "--out", str(serial)]) == 0
    assert (serial / "results.csv").read_text() == before
    assert "8 of 8 inputs finished (8 before this run, 0 now)" in capsys.readouterr().out
    # Every certificate of the batch passes check.
    assert main(["check", str(serial / rows[0]["id"])]) == 0


def test_jobs_2_matches_serial(serial: Path, tmp_path: Path) -> None:
    assert main(["certify-batch", *ARGS, "--out", str(tmp_path / "b"), "--jobs", "2"]) == 0
    assert table(tmp_path / "b") == table(serial)


def test_local_cluster_matches_serial(serial: Path, tmp_path: Path) -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        assert main(["certify-batch", *ARGS, "--out", str(tmp_path / "b"),
                     "--scheduler", cluster.scheduler_address]) == 0
    assert table(tmp_path / "b") == table(serial)


def test_dask_scheduler_and_workers_as_processes(serial: Path, tmp_path: Path, batch_env: dict[str, str]) -> None:
    bin_dir = Path(sys.executable).parent
    info = tmp_path / "scheduler.json"
    common = ["--no-dashboard"]
    procs = [subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--scheduler-file", str(info), *common], env=batch_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(2):
            procs.append(subprocess.Popen([str(bin_dir / "dask"), "worker", "--scheduler-file", str(info),
                                           "--host", "127.0.0.1", "--nthreads", "1", "--nworkers", "1", *common],
                                          env=batch_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        import json

        from distributed import Client

        deadline = time.monotonic() + 60
        while not info.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(info.read_text())["address"]
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=60)
        run = subprocess.run([*VNNBRIDGE, "certify-batch", *ARGS, "--out", str(tmp_path / "b"), "--scheduler",
                              address], env=batch_env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert table(tmp_path / "b") == table(serial)


def _rows(folder: Path) -> int:
    try:
        with (folder / "results.csv").open() as stream:
            return max(0, sum(1 for _ in csv.reader(stream)) - 1)
    except OSError:
        return 0


def test_kill_9_and_resume(serial: Path, tmp_path: Path, batch_env: dict[str, str]) -> None:
    import psutil

    out = tmp_path / "b"
    cmd = [*VNNBRIDGE, "certify-batch", *ARGS, "--out", str(out), "--jobs", "2"]
    proc = subprocess.Popen(cmd, env=batch_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _rows(out) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # The worker processes notice that their driver is gone and stop.
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive
    finished = _rows(out)
    assert 3 <= finished
    run = subprocess.run(cmd, env=batch_env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert f"({finished} before this run, {8 - finished} now)" in run.stdout
    assert table(out) == table(serial)
    ids = [r["id"] for r in table(out)]
    assert len(ids) == len(set(ids))
    # No definitive answer was asked twice: every unsat/sat key appears once in the oracle's log.
    answered = Counter(line.split()[0] for line in (out / "calls.log").read_text().splitlines()
                       if line.split()[1] in ("sat", "unsat"))
    assert answered and max(answered.values()) == 1


def test_another_command_on_the_folder_says_what_differs(serial: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [a if a != "none" else "dual-faces" for a in ARGS]
    assert main(["certify-batch", *args, "--out", str(serial), "--timeout", "5"]) == 2
    err = capsys.readouterr().err
    assert "different command" in err and "--dual: was None, now 'dual-faces'" in err and "--timeout: was 60.0" in err


def test_a_failing_input_becomes_a_row(tmp_path: Path) -> None:
    import numpy as np

    src = tmp_path / "inputs"
    src.mkdir()
    x = np.load(SLICE)[4].ravel()
    np.savetxt(src / "a_good.csv", x[None, :], delimiter=",")
    (src / "b_bad.csv").write_text("0.5, oops\n")
    (src / "c_short.csv").write_text("0.5, 0.5\n")
    out = tmp_path / "b"
    assert main(["certify-batch", "--onnx", str(NET), "--input", str(src), "--out", str(out), "--dual", "none",
                 "-q"]) == 1
    rows = {r["id"]: r for r in table(out)}
    assert rows["a_good"]["status"] == "certified"
    assert rows["b_bad"]["status"] == "failed" and "b_bad.csv:1:6: not a number: 'oops'" in rows["b_bad"]["error"]
    assert rows["c_short"]["status"] == "failed" and "784" in rows["c_short"]["error"]


def test_show_batch(serial: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    assert main(["show-batch", str(serial), "-o", str(tmp_path / "b.png")]) == 0
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ctrl_c_stops_cleanly_and_keeps_finished_work(serial: Path, tmp_path: Path,
                                                       batch_env: dict[str, str]) -> None:
    out = tmp_path / "b"
    cmd = [*VNNBRIDGE, "certify-batch", *ARGS, "--out", str(out), "--jobs", "2"]
    # A new session, so that the interrupt goes to the whole group, as Ctrl-C in a terminal does.
    proc = subprocess.Popen(cmd, env=batch_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while _rows(out) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the batch finished before the interrupt arrived")
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    kept = table(out)
    assert 2 <= len(kept) <= 8 and all(r in table(serial) for r in kept)
    run = subprocess.run(cmd, env=batch_env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert table(out) == table(serial)


def test_a_worker_that_dies_fails_its_input_only(serial: Path, tmp_path: Path, batch_env: dict[str, str]) -> None:
    import psutil

    out = tmp_path / "b"
    cmd = [*VNNBRIDGE, "certify-batch", *ARGS, "--out", str(out), "--jobs", "2"]
    proc = subprocess.Popen(cmd, env=batch_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    running = out / ".running"
    victim = None
    deadline = time.monotonic() + 120
    while victim is None and proc.poll() is None and time.monotonic() < deadline:
        # A worker that is certifying an input (its marker names it): kill it as a crash would.
        for marker in running.glob("*") if running.is_dir() else []:
            with contextlib.suppress(OSError, ValueError, psutil.Error):
                item = marker.read_text().strip()
                if item:
                    os.kill(int(marker.name), signal.SIGKILL)
                    victim = item
                    break
        time.sleep(0.01)
    stdout, stderr = proc.communicate(timeout=300)
    if victim is None:
        pytest.skip("no worker was caught certifying")
    assert proc.returncode == 1, stderr
    rows = {r["id"]: r for r in table(out)}
    assert len(rows) == 8
    failed = [r for r in rows.values() if r["status"] == "failed"]
    assert [r["id"] for r in failed] == [victim] and "worker process died" in failed[0]["error"]
    assert [r for r in table(serial) if r["id"] != victim] == [r for r in table(out) if r["id"] != victim]
    # --retry-failed runs it again and the table is the serial one.
    run = subprocess.run([*cmd, "--retry-failed"], env=batch_env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert table(out) == table(serial)


def test_a_bad_network_is_one_error_not_a_row_per_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "net.onnx"
    bad.write_bytes(b"not a model")
    assert main(["certify-batch", "--onnx", str(bad), "--input", str(SLICE), "--out", str(tmp_path / "b")]) == 2
    assert "net.onnx: cannot read ONNX model" in capsys.readouterr().err
    assert main(["certify-batch", "--onnx", str(tmp_path / "missing.onnx"), "--input", str(SLICE),
                 "--out", str(tmp_path / "b")]) == 2
    assert not (tmp_path / "b" / "results.csv").exists()


def test_a_torn_last_line_is_an_unfinished_input(serial: Path, tmp_path: Path) -> None:
    import shutil

    from vnnbridge.batch.table import read_rows

    out = tmp_path / "b"
    shutil.copytree(serial, out)
    text = (out / "results.csv").read_text()
    (out / "results.csv").write_text(text[:-25])  # a kill in the middle of the last row
    assert [r["id"] for r in read_rows(out / "results.csv")] == [f"{k:02d}" for k in range(4, 11)]
    assert (out / "results.csv").read_text() == text[:-25]  # readers leave the file alone
    assert main(["certify-batch", *ARGS, "--out", str(out)]) == 0
    assert table(out) == table(serial)


def test_a_crashing_oracle_certifies_nothing_and_the_batch_goes_on(tmp_path: Path) -> None:
    crash = Path(__file__).resolve().parents[1] / "data" / "fake_tools" / "crash"  # kills itself with SIGSEGV
    out = tmp_path / "b"
    assert main(["certify-batch", "--onnx", str(NET), "--input", str(SLICE), "--index", "4:6", "--out", str(out),
                 "--dual", "none", "--oracle", f"vnncomp:{crash}", "-q"]) == 0
    rows = table(out)
    assert [r["status"] for r in rows] == ["not certified", "not certified"]
    assert all(int(r["calls"]) > 0 and r["apothem"] == "" for r in rows)
    assert not list((out / "calls").rglob("*.json"))  # errors are never cached as answers


def test_local_workers_share_the_cores_for_torch() -> None:
    # Before, each of N workers started one torch thread per core (N x oversubscribed).
    code = ("import os; from vnnbridge.batch.worker import init_worker; init_worker(os.getppid(), 3); "
            "from vnnbridge.engine.torchnet import default_threads; print(default_threads())")
    env = {k: v for k, v in os.environ.items() if k not in ("VNNBRIDGE_THREADS", "OMP_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.stdout.split() == ["3"], done.stderr
    env["VNNBRIDGE_THREADS"] = "1"  # the user's choice wins
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.stdout.split() == ["1"], done.stderr
