"""certify-batch throughput and resume: serial vs --jobs N vs Dask, and kill -9 at random moments.

All runs certify the same slice of the MNIST test set (shared/data/datasets) on the paper's
784-32-10 network (method apothem, embedded oracle, no dual), each into a fresh folder, as
``vnnbridge certify-batch`` child processes (start-up included). Printed:

1. wall seconds and throughput per mode, with the ratio against the serial run of this same
   benchmark (the Dask cluster, 2 local worker processes, is started before its run is timed:
   a cluster is already up when a user points --scheduler at it);
2. whether every mode's results.csv equals the serial one (all columns but seconds);
3. the kill test: ``--jobs N`` killed with SIGKILL at a random moment, ``--kills`` times, then
   resumed to the end: repeated finished inputs (a finished row or certificate written again)
   and repeated answered calls (an unsat/sat key answered twice in calls.log);
4. ``check`` on every certificate of the --jobs run, and the extrapolation to all 10,000 images.

    python benchmarks/batch.py --count 40                  # a quick look
    python benchmarks/batch.py --count 300 --skip-dask     # the slice behind the 10,000-image estimate
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VNNBRIDGE_SHARED") or ROOT.parent / "shared")
NET = SHARED / "data" / "paper" / "networks" / "mnist_784_32_10.onnx"
IMAGES = SHARED / "data" / "datasets" / "mnist" / "t10k-images-idx3-ubyte.gz"


def _command(args: argparse.Namespace, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "vnnbridge", "certify-batch", "--onnx", str(NET), "--input", str(IMAGES),
            "--index", f"{args.start}:{args.start + args.count}", "--out", str(out), "--method", "apothem",
            "--dual", "none", "--timeout", str(args.timeout), "-q", *extra]


def _table(out: Path) -> list[dict[str, str]]:
    with (out / "results.csv").open() as stream:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(stream)]


CPU: dict[str, float] = {}  # CPU seconds of the last run per mode: driver, its workers, and Dask workers


def _cpu(processes: list[object]) -> float:
    """CPU seconds of finished children (and grandchildren) plus those of the given live processes."""
    import resource

    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = used.ru_utime + used.ru_stime
    for proc in processes:
        try:
            times = proc.cpu_times()  # type: ignore[attr-defined]
            total += times.user + times.system
        except Exception:
            pass
    return total


def _run(cmd: list[str], env: dict[str, str], mode: str = "", live: list[object] | None = None) -> float:
    cpu0 = _cpu(live or [])
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    CPU[mode] = _cpu(live or []) - cpu0
    if proc.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return seconds


def _rows(out: Path) -> int:
    try:
        with (out / "results.csv").open() as stream:
            return max(0, sum(1 for _ in stream) - 1)
    except OSError:
        return 0


def _kill_test(args: argparse.Namespace, work: Path, env: dict[str, str], serial_seconds: float,
               rng: random.Random) -> dict[str, object]:
    import psutil

    out = work / "killed"
    cmd = _command(args, out, "--jobs", str(args.jobs))
    finished_at_kill: dict[str, float] = {}
    moments = []
    for _ in range(args.kills):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        moment = rng.uniform(1.0, max(2.0, 0.6 * serial_seconds / args.jobs))
        moments.append(moment)
        time.sleep(moment)
        children = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        psutil.wait_procs(children, timeout=30)
        if (out / "results.csv").is_file():
            with (out / "results.csv").open() as stream:
                for r in csv.DictReader(stream):
                    cert = out / r["id"] / "certificate.json"
                    finished_at_kill.setdefault(r["id"], cert.stat().st_mtime_ns if cert.is_file() else 0)
    rows_before = _rows(out)
    resume_seconds = _run(cmd, env)
    with (out / "results.csv").open() as stream:
        ids = [r["id"] for r in csv.DictReader(stream)]
    rewritten = [i for i, mtime in finished_at_kill.items()
                 if (out / i / "certificate.json").is_file() and (out / i / "certificate.json").stat().st_mtime_ns != mtime]
    repeated_rows = sum(n - 1 for n in Counter(ids).values())
    answers = Counter(line.split()[0] for line in (out / "calls.log").read_text().splitlines()
                      if line.split()[1] in ("sat", "unsat"))
    return {"kills": args.kills, "moments": ", ".join(f"{m:.1f}" for m in moments), "rows_at_last_kill": rows_before,
            "repeated_finished": repeated_rows + len(rewritten), "answered_calls": sum(answers.values()),
            "repeated_answered": sum(n - 1 for n in answers.values()), "resume_seconds": resume_seconds,
            "table": _table(out)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=40, help="images (default 40)")
    parser.add_argument("--start", type=int, default=0, help="first test image (default 0)")
    parser.add_argument("--jobs", type=int, default=2, help="workers for --jobs and Dask (default 2)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per oracle call")
    parser.add_argument("--kills", type=int, default=3, help="random kill -9 before the final resume (default 3)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the kill moments (default: random)")
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--skip-kill", action="store_true")
    parser.add_argument("--keep", help="keep the batch folders here")
    args = parser.parse_args()
    if not IMAGES.is_file() or not NET.is_file():
        sys.exit(f"shared data not found under {SHARED}")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="vnnbridge-batch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, VNNBRIDGE_CACHE=str(work / "cache"))
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"{args.count} MNIST test images from #{args.start}, apothem, embedded oracle, no dual; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; kill seed {seed}")

    results: dict[str, float] = {}
    tables: dict[str, list[dict[str, str]]] = {}
    results["serial"] = _run(_command(args, work / "serial"), env, "serial")
    tables["serial"] = _table(work / "serial")
    name = f"--jobs {args.jobs}"
    results[name] = _run(_command(args, work / "jobs", "--jobs", str(args.jobs)), env, name)
    tables[name] = _table(work / "jobs")
    if not args.skip_dask:
        from distributed import LocalCluster

        os.environ["VNNBRIDGE_CACHE"] = env["VNNBRIDGE_CACHE"]  # the cluster's workers inherit it
        with LocalCluster(n_workers=args.jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster:
            import psutil

            dname = f"Dask ({args.jobs} workers)"
            workers = psutil.Process().children(recursive=True)
            results[dname] = _run(_command(args, work / "dask", "--scheduler", cluster.scheduler_address), env,
                                  dname, workers)
            tables[dname] = _table(work / "dask")

    base = results["serial"]
    print(f"\n{'mode':<22}{'wall s':>9}{'inputs/s':>10}{'ratio':>8}{'CPU s':>8}{'CPU s/input':>12}  table = serial")
    for mode, seconds in results.items():
        same = tables[mode] == tables["serial"]
        print(f"{mode:<22}{seconds:>9.1f}{args.count / seconds:>10.2f}{base / seconds:>8.2f}{CPU[mode]:>8.1f}"
              f"{CPU[mode] / args.count:>12.3f}  {'yes' if same else 'NO'}")
    print(f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (other work on the machine slows "
          "every mode; CPU s counts only this benchmark's processes)")

    rows = tables["serial"]
    certified = sum(r["status"] == "certified" for r in rows)
    print(f"\nserial: {certified}/{len(rows)} certified, {sum(r['status'] == 'failed' for r in rows)} failed")

    from vnnbridge.certificate import check_certificate
    from vnnbridge.oracles.registry import make_oracle

    oracle = make_oracle("embedded")
    start = time.perf_counter()
    bad = [r["id"] for r in tables[name] if r["status"] != "failed"
           and check_certificate(work / "jobs" / r["id"], oracle, 60.0).first_failure() is not None]
    print(f"check on every certificate of the {name} run: {len(tables[name]) - len(bad)}/{len(tables[name])} "
          f"valid ({time.perf_counter() - start:.1f} s){'; failing: ' + ', '.join(bad) if bad else ''}")
    per_image = results[name] / args.count
    print(f"{name}: {per_image:.2f} s wall per image here -> all 10,000 test images in about "
          f"{10_000 * per_image / 3600:.2f} h (goal <= 1 h; an extrapolation, not a run)")
    cpu_image = CPU[name] / args.count
    print(f"{name}: {cpu_image:.3f} CPU s per image -> on {args.jobs} otherwise idle cores about "
          f"{10_000 * cpu_image / args.jobs / 3600:.2f} h for 10,000 images (an extrapolation, not a run)")

    if not args.skip_kill:
        kill = _kill_test(args, work, env, base, rng)
        same = kill.pop("table") == tables["serial"]
        print(f"\nkill -9 of '{name}' at random moments ({kill['moments']} s after each start), then resumed:")
        for key, value in kill.items():
            print(f"  {key:<22}{value if not isinstance(value, float) else round(value, 1)}")
        print(f"  {'table = serial':<22}{'yes' if same else 'NO'}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
