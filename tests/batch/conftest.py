"""Batch test helpers: the bundled MNIST slice, the paper network and table comparison."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NET = ROOT / "tests" / "data" / "paper" / "mnist_784_32_10.onnx"
SLICE = ROOT / "tests" / "data" / "batch" / "mnist_test_0-15.npy"
# Eight inputs that certify in well under a second each (image 3 and 13 take seconds).
INDEX = "4:12"
# What may differ between two runs of one batch: wall time only.
VOLATILE = ("seconds",)


def table(folder: Path) -> list[dict[str, str]]:
    """results.csv without its volatile columns."""
    with (Path(folder) / "results.csv").open() as stream:
        return [{k: v for k, v in row.items() if k not in VOLATILE} for row in csv.DictReader(stream)]


@pytest.fixture(scope="session")
def batch_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment for CLI subprocesses with a private cache."""
    import os

    env = dict(os.environ)
    env["VNNBRIDGE_CACHE"] = str(tmp_path_factory.mktemp("batch-cache"))
    return env
