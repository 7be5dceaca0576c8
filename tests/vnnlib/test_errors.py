"""Every malformed fixture in tests/data/vnnlib/bad/ gives its one located line and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vnnbridge.cli import main
from vnnbridge.errors import SpecError, SpecSyntaxError
from vnnbridge.vnnlib import parse, parse_file
from vnnbridge.vnnlib.parser import is_vnnlib2

BAD = Path(__file__).resolve().parents[1] / "data" / "vnnlib" / "bad"
FIXTURES = sorted(p.name for p in BAD.glob("*.vnnlib"))


def expected(name: str) -> str:
    """The fixture's expected message: ``LINE:COL: what was expected, what was found``."""
    return (BAD / name).with_suffix(".expected").read_text().strip()


def test_there_are_at_least_30_bad_fixtures_each_with_a_message() -> None:
    assert len(FIXTURES) >= 30
    assert all((BAD / n).with_suffix(".expected").is_file() for n in FIXTURES)


@pytest.mark.parametrize("name", FIXTURES)
def test_bad_fixture_raises_its_located_message(name: str) -> None:
    path = BAD / name
    with pytest.raises(SpecError) as exc:
        parse_file(path)
    assert exc.value.located() == f"{path}:{expected(name)}"
    assert exc.value.exit_code == 2


@pytest.mark.parametrize("name", FIXTURES)
def test_bad_fixture_through_the_cli_is_one_line_and_exit_2(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = BAD / name
    commands = [["vnnlib", "format", str(path)]]
    if not is_vnnlib2((BAD / name).read_text(errors="replace")):
        commands.append(["vnnlib", "check", str(path), "--json"])
    for argv in commands:
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err == f"{path}:{expected(name)}\n"


def test_syntax_errors_are_syntax_errors() -> None:
    for name in ("unclosed_paren.vnnlib", "stray_character.vnnlib", "unknown_command.vnnlib"):
        with pytest.raises(SpecSyntaxError):
            parse_file(BAD / name)
    with pytest.raises(SpecError) as exc:
        parse_file(BAD / "lower_above_upper.vnnlib")
    assert not isinstance(exc.value, SpecSyntaxError)


def test_a_real_process_prints_no_traceback() -> None:
    path = BAD / "unclosed_paren.vnnlib"
    proc = subprocess.run([sys.executable, "-m", "vnnbridge", "vnnlib", "check", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == f"{path}:{expected('unclosed_paren.vnnlib')}\n"
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_missing_file_is_an_input_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.vnnlib"
    assert main(["vnnlib", "check", str(missing)]) == 2
    assert capsys.readouterr().err.startswith(f"{missing}: cannot read the property file")


def test_damaged_gzip_is_located(tmp_path: Path) -> None:
    path = tmp_path / "p.vnnlib.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(SpecError) as exc:
        parse_file(path)
    assert exc.value.located().startswith(f"{path}: expected a gzip-compressed VNN-LIB file, found a damaged one")


def test_text_errors_without_a_path_still_have_line_and_column() -> None:
    with pytest.raises(SpecSyntaxError) as exc:
        parse("(declare-const X_0 Real)\n(assert (<= X_0 1)")
    assert exc.value.located() == "2:19: expected ')', found end of file"
