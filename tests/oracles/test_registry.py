"""The oracle registry: built-ins, entry-point plug-ins, availability, and validation wrapping."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import vnnbridge.oracles.registry as registry
from vnnbridge.errors import UnknownOracle
from vnnbridge.oracles.base import Oracle
from vnnbridge.oracles.fake import FakeOracle
from vnnbridge.oracles.registry import Validating, describe_oracles, is_available, make_oracle, oracle_kinds


@pytest.fixture
def plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """A third-party oracle registered in the entry-point group, as an installed package would."""
    eps = [EntryPoint("thirdparty", "vnnbridge.oracles.fake:FakeOracle", "vnnbridge.oracles"),
           EntryPoint("broken", "no_such_module_anywhere:Oracle", "vnnbridge.oracles")]

    def entry_points(group: str, name: str | None = None) -> list[EntryPoint]:
        return [ep for ep in eps if ep.group == group and (name is None or ep.name == name)]

    monkeypatch.setattr(registry, "entry_points", entry_points)


def test_entry_point_oracles_are_listed_and_made(plugin: None) -> None:
    assert oracle_kinds()[-2:] == ["broken", "thirdparty"]
    oracle = make_oracle("thirdparty:unsat")
    assert isinstance(oracle, Validating) and isinstance(oracle.inner, FakeOracle)
    infos = {info.kind: info for info in describe_oracles()}
    assert infos["thirdparty"].usable and infos["thirdparty"].target == "vnnbridge.oracles.fake:FakeOracle"
    assert not infos["broken"].usable and "no_such_module_anywhere" in infos["broken"].note


def test_every_made_oracle_keeps_the_protocol() -> None:
    oracle = make_oracle("fake:unknown")
    assert isinstance(oracle, Oracle) and oracle.name == "fake" and oracle.version() == "0"


def test_unknown_kind_is_bad_input() -> None:
    # A typo is bad input (exit 2, the known names listed), not a missing install (exit 3).
    with pytest.raises(UnknownOracle, match="no oracle 'nope'; known: embedded, marabou"):
        make_oracle("nope")
    assert not is_available("nope")


def test_folder_kind_takes_its_folder_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = Path(__file__).resolve().parents[1] / "data" / "fake_tools" / "holds"
    assert not is_available("vnncomp")
    monkeypatch.setenv("VNNBRIDGE_VNNCOMP", str(folder))
    assert is_available("vnncomp")
    assert make_oracle("vnncomp").name == "vnncomp:holds"
