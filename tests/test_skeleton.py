"""The package imports, the CLI starts, and the error tree keeps its exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vnnbridge.box import Box
from vnnbridge.cli import main
from vnnbridge.errors import InputError, OracleUnavailable, SpecSyntaxError


def test_cli_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert "vnnbridge" in capsys.readouterr().out


def test_cli_without_command_is_usage_error() -> None:
    assert main([]) == 2


def test_error_exit_codes_and_location() -> None:
    assert InputError("x").exit_code == 2
    assert OracleUnavailable("x").exit_code == 3
    err = SpecSyntaxError("expected ')', found 'X_1'", path="p.vnnlib", line=3, column=7)
    assert err.located() == "p.vnnlib:3:7: expected ')', found 'X_1'"


def test_box_validates_and_contains() -> None:
    with pytest.raises(ValueError):
        Box((1.0,), (0.0,))
    with pytest.raises(ValueError):
        Box((0.0,), (float("inf"),))
    box = Box((0.0, -1.0), (1.0, 1.0))
    assert box.contains([0.5, 0.0]) and not box.contains([1.5, 0.0])
    assert box.contains([1.0 + 1e-9, 0.0], atol=1e-8)


def test_cli_starts_without_torch() -> None:
    code = "import sys, vnnbridge.cli as c; c.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
