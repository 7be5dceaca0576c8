"""Ctrl-C during a later phase keeps the certified box found before it (nothing certified is lost)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vnnbridge.certificate import check_certificate, read_certificate, write_certificate
from vnnbridge.inputs import load_input
from vnnbridge.oracles.base import OracleResult, Query
from vnnbridge.oracles.registry import make_oracle
from vnnbridge.search.base import Instance
from vnnbridge.search.compose import certify

PAPER = Path(__file__).resolve().parents[1] / "data" / "paper"


class InterruptAfter:
    """Answers like ``inner`` for ``calls`` calls, then behaves as if the user pressed Ctrl-C."""

    name = "interrupting"

    def __init__(self, inner: object, calls: int) -> None:
        self.inner, self.left = inner, calls

    def version(self) -> str:
        return "test"

    def check(self, query: Query, timeout: float) -> OracleResult:
        if self.left == 0:
            raise KeyboardInterrupt
        self.left -= 1
        return self.inner.check(query, timeout)


def _instance() -> Instance:
    loaded = load_input(str(PAPER / "mnist_0-1.csv"), None)
    return Instance.make(PAPER / "mnist_784_32_10.onnx", loaded.x, None, loaded.domain)


def test_interrupt_in_the_second_phase_keeps_the_apothem_box(tmp_path: Path) -> None:
    embedded = make_oracle("embedded")
    # apothem needs 2 calls on this image; the third (the first of grow) is interrupted.
    result, dual, prober = certify(_instance(), InterruptAfter(embedded, 2), "apothem+grow", "dual-faces")
    assert result.certified and result.interrupted and dual is None
    assert result.cube_steps == 33 and any("interrupted during grow" in n for n in result.notes)
    out = write_certificate(tmp_path / "cert", prober, result, dual, source="mnist_0-1.csv", shape=(28, 28),
                            seconds=0.0).parent
    data = read_certificate(out)
    assert data["status"] == "certified" and data["interrupted"] is True
    assert check_certificate(out, embedded).first_failure() is None


def test_interrupt_before_anything_is_certified_propagates() -> None:
    with pytest.raises(KeyboardInterrupt):
        certify(_instance(), InterruptAfter(make_oracle("embedded"), 0), "apothem+grow", None)
