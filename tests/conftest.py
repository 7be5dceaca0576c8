"""Shared test fixtures: where the read-only data beside the repository lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the checkout (CI has it too); VNNBRIDGE_SHARED overrides.
SHARED = Path(os.environ.get("VNNBRIDGE_SHARED") or ROOT.parent / "shared")
DATA = ROOT / "tests" / "data"


@pytest.fixture(scope="session")
def shared() -> Path:
    """The read-only shared data folder (skips the test when it is absent)."""
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Tests never write into the user's cache.
    os.environ.setdefault("VNNBRIDGE_CACHE", str(tmp_path_factory.mktemp("cache")))
