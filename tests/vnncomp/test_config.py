"""Which oracle answers which category: environment, TOML file, default; bad files are located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from vnnbridge.cli import main
from vnnbridge.errors import InputError
from vnnbridge.vnncomp.config import DEFAULT_ORACLE, OracleChoice, load_choice


def test_default_is_embedded() -> None:
    assert load_choice(env={}).oracle_for("acasxu") == DEFAULT_ORACLE == "embedded"


def test_env_single_and_per_category() -> None:
    assert load_choice(env={"VNNBRIDGE_ORACLE": "marabou"}).oracle_for("mnist_fc") == "marabou"
    choice = load_choice(env={"VNNBRIDGE_ORACLE": "acasxu=marabou, vnncomp:/opt/x,MNIST_FC=fake:unsat"})
    assert choice.oracle_for("ACASXU") == "marabou"
    assert choice.oracle_for("mnist_fc") == "fake:unsat"
    assert choice.oracle_for("other") == "vnncomp:/opt/x"


def test_env_entry_without_oracle_is_an_error() -> None:
    with pytest.raises(InputError, match="CATEGORY=ORACLE"):
        load_choice(env={"VNNBRIDGE_ORACLE": "acasxu="})


def test_file_per_category_and_env_wins(tmp_path: Path) -> None:
    cfg = tmp_path / "vnncomp.toml"
    cfg.write_text('oracle = "fake"\n[categories]\nacasxu = "marabou"\n')
    choice = load_choice(cfg, env={})
    assert (choice.oracle_for("acasxu"), choice.oracle_for("cifar")) == ("marabou", "fake")
    assert load_choice(cfg, env={"VNNBRIDGE_ORACLE": "embedded"}).oracle_for("acasxu") == "embedded"
    assert load_choice(env={"VNNBRIDGE_CONFIG": str(cfg)}).oracle_for("acasxu") == "marabou"
    assert load_choice(tool_dir=tmp_path, env={}).oracle_for("x") == "fake"


@pytest.mark.parametrize(("text", "where", "message"), [
    ('oracle = "embedded"\nbogus = 1\n', ":2:1:", "unknown key 'bogus'"),
    ('oracle = 3\n', ":1:1:", "'oracle' must be a string"),
    ('[categories]\nacasxu = 5\n', ":2:1:", "category 'acasxu' needs an oracle name"),
    ('oracle = "embedded\n', ":1:", "not valid TOML"),
])
def test_bad_file_is_one_located_line(tmp_path: Path, text: str, where: str, message: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(InputError) as exc:
        load_choice(cfg, env={})
    line = exc.value.located()
    assert line.startswith(str(cfg) + where) and message in line and "\n" not in line


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such config file"):
        load_choice(tmp_path / "nope.toml", env={})


def test_empty_oracle_name_rejected() -> None:
    with pytest.raises(InputError):
        OracleChoice(default=" ")


def test_cli_bad_config_still_writes_error_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("nonsense = 1\n")
    results = tmp_path / "out.txt"
    results.write_text("no_result_in_file")
    code = main(["vnncomp-run", "--category", "c", "--onnx", "x.onnx", "--vnnlib", "x.vnnlib",
                 "--results", str(results), "--timeout", "10", "--config", str(cfg)])
    assert code == 2
    assert results.read_text().split()[0] == "error"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{cfg}:1:1: unknown key")
