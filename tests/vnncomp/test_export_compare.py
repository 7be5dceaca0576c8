"""Benchmark export (radius sweep, certification queries) and the oracle comparison on it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from vnnbridge.cli import main
from vnnbridge.errors import InputError
from vnnbridge.inputs import load_input
from vnnbridge.network import load_network
from vnnbridge.vnncomp.compare import OracleComparison, Outcome, compare_oracles, draw_cactus, format_table
from vnnbridge.vnncomp.export import read_instances
from vnnbridge.vnnlib.parser import parse_file


@pytest.fixture(scope="module")
def paper(shared: Path) -> tuple[Path, Path]:
    return (shared / "data/paper/networks/mnist_784_32_10.onnx",
            sorted((shared / "data/paper/mnist/images").glob("*.csv"))[0])


@pytest.fixture(scope="module")
def sweep(paper: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    onnx, image = paper
    out = tmp_path_factory.mktemp("bench") / "paper_sweep"
    assert main(["export-benchmark", "--onnx", str(onnx), "--input", str(image), "--radii", "0", "0.003", "1",
                 "--timeout", "30", "--out", str(out)]) == 0
    return out


def test_sweep_folder_layout(sweep: Path, paper: tuple[Path, Path]) -> None:
    onnx, image = paper
    rows = list(csv.reader((sweep / "instances.csv").open()))
    assert len(rows) == 3 and all(len(r) == 3 and r[0] == "onnx/mnist_784_32_10.onnx" and r[2] == "30"
                                  for r in rows)
    assert (sweep / "onnx/mnist_784_32_10.onnx").read_bytes() == onnx.read_bytes()
    readme = (sweep / "README.md").read_text()
    assert "Radius sweep" in readme and "sha256" in readme and "export-benchmark" in readme
    x = load_input(image).x
    label = load_network(onnx).predict(x)
    for (_, vnnlib, _), r in zip(rows, (0.0, 0.003, 1.0)):
        spec = parse_file(sweep / vnnlib)
        lo, hi = spec.single_box.arrays()
        assert np.array_equal(lo, np.maximum(x - r, 0)) and np.array_equal(hi, np.minimum(x + r, 1))
        assert len(spec.cases[0].polytopes) == 9 and f"label{label}" in vnnlib
    assert [p for p, _, _ in read_instances(sweep)][0] == sweep / "onnx/mnist_784_32_10.onnx"


def test_method_export_records_the_calls(paper: tuple[Path, Path], tmp_path: Path) -> None:
    onnx, image = paper
    out = tmp_path / "apothem"
    assert main(["export-benchmark", "--onnx", str(onnx), "--input", str(image), "--method", "cube-bisect",
                 "--oracle", "embedded", "--out", str(out)]) == 0
    expected = list(csv.DictReader((out / "expected.csv").open()))
    assert len(expected) >= 3 and {e["vnnbridge_verdict"] for e in expected} <= {"sat", "unsat"}
    assert "unsat" in {e["vnnbridge_verdict"] for e in expected}
    assert len(read_instances(out)) == len(expected)


@pytest.mark.parametrize(("args", "message"), [
    (["--radii", "0.1", "--method", "apothem"], "either --radii"),
    ([], "either --radii"),
    (["--radii", "-1"], "radii must be finite"),
])
def test_export_bad_options(paper: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            args: list[str], message: str) -> None:
    onnx, image = paper
    assert main(["export-benchmark", "--onnx", str(onnx), "--input", str(image), "--out", str(tmp_path / "o"),
                 *args]) == 2
    assert message in capsys.readouterr().err


def test_read_instances_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no instances.csv"):
        read_instances(tmp_path)
    (tmp_path / "instances.csv").write_text("a.onnx,b.vnnlib,10\na.onnx,b.vnnlib\n")
    with pytest.raises(InputError) as exc:
        read_instances(tmp_path)
    assert exc.value.located().startswith(f"{tmp_path / 'instances.csv'}:2:1: expected 3 columns")
    (tmp_path / "instances.csv").write_text("a.onnx,b.vnnlib,ten\n")
    with pytest.raises(InputError, match="not a number"):
        read_instances(tmp_path)


def test_compare_embedded_against_a_liar(sweep: Path, tmp_path: Path) -> None:
    comparison = compare_oracles(sweep, ["embedded", "fake:unsat"], tmp_path / "cmp", jobs=2)
    by = {s.oracle: s for s in comparison.summaries()}
    # Radius 0 and 0.003 are robust, radius 1 (the whole domain) is not: embedded finds a witness there.
    assert (by["embedded"].sat, by["embedded"].unsat, by["embedded"].wrong) == (1, 2, 0)
    assert by["embedded"].score == 30
    # The liar says unsat everywhere: right twice, wrong once (embedded's witness refutes it).
    assert (by["fake:unsat"].unsat, by["fake:unsat"].wrong, by["fake:unsat"].score) == (2, 1, 20 - 150)
    assert len(comparison.disagreements) == 1 and "eps1.0" in comparison.disagreements[0]
    for name in ("embedded", "fake_unsat"):
        rows = list(csv.reader((tmp_path / "cmp" / name / "results.csv").open()))
        assert len(rows) == 3 and all(len(r) == 6 and r[4] in ("sat", "unsat") for r in rows)
        assert all(not Path(r[1]).is_absolute() for r in rows)  # relative, as the harness passes them
    table = format_table(comparison)
    assert table.splitlines()[0].split()[:3] == ["oracle", "sat", "unsat"] and "-130" in table
    png = draw_cactus(comparison, tmp_path / "cactus.png")
    assert png.stat().st_size > 1000


def test_bogus_witness_counts_as_wrong(sweep: Path, tmp_path: Path) -> None:
    # Fault injection: a result file with a sat whose witness is the (robust) centre of the box.
    from vnnbridge.oracles.base import Verdict
    from vnnbridge.vnncomp import compare
    from vnnbridge.vnncomp.results import write_result

    rows = read_instances(sweep)
    onnx, vnnlib, _ = rows[0]
    spec = parse_file(vnnlib)
    x = spec.single_box.center()
    y = load_network(onnx).run(x)
    result = tmp_path / "bogus.counterexample"
    write_result(result, Verdict.SAT, x, y)
    ok, reason = compare._check_witness(result, onnx, vnnlib)
    assert not ok and "does not violate" in reason
    bogus = Outcome("liar", "c", onnx, vnnlib, 10, 0.1, "sat", 0.5, result, witness_ok=False, wrong=True)
    honest = Outcome("honest", "c", onnx, vnnlib, 10, 0.1, "unsat", 0.5, result)
    cmp = OracleComparison([bogus, honest], ["liar", "honest"], compare._disagreements([bogus, honest]))
    by = {s.oracle: s for s in cmp.summaries()}
    assert (by["liar"].bogus, by["liar"].wrong, by["liar"].score) == (1, 1, -150)
    assert by["honest"].score == 10 and len(cmp.disagreements) == 1


def test_compare_cli_prints_the_table_and_plots(paper: tuple[Path, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    onnx, image = paper
    bench = tmp_path / "one"
    assert main(["export-benchmark", "--onnx", str(onnx), "--input", str(image), "--radii", "0", "--timeout", "20",
                 "--out", str(bench)]) == 0
    capsys.readouterr()
    assert main(["compare", str(bench), "--oracle", "fake:timeout", "--oracle", "fake:unsat", "--plot",
                 str(tmp_path / "c.png"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("fake:")}
    assert rows["fake:timeout"][1:4] == ["0", "0", "1"] and rows["fake:timeout"][-1] == "0"
    assert rows["fake:unsat"][1:3] == ["0", "1"] and rows["fake:unsat"][-1] == "10"
    assert "disagreements: none" in out and (tmp_path / "c.png").is_file()
    assert main(["compare", str(bench), "--oracle", "fake:unsat", "--oracle", "fake:unsat"]) == 2


def test_export_folds_outside_normalisation(shared: Path, tmp_path: Path) -> None:
    onnx = shared / "data/networks/fmnist/fmnist_mlp_784-32-10.onnx"  # expects (x - 0.5) / 0.5
    image = sorted((shared / "data/paper/fmnist/images").glob("*.csv"))[0]
    out = tmp_path / "norm"
    assert main(["export-benchmark", "--onnx", str(onnx), "--input", str(image), "--radii", "0.01", "--mean", "0.5",
                 "--std", "0.5", "--out", str(out)]) == 0
    (row,) = read_instances(out)
    assert row[0].name == "fmnist_mlp_784-32-10_normalized.onnx"
    x = load_input(image).x
    exported, original = load_network(row[0]), load_network(onnx)
    assert np.allclose(exported.run(x), original.run((x - 0.5) / 0.5), atol=1e-5)
    assert np.array_equal(parse_file(row[1]).single_box.arrays()[0], np.maximum(x - 0.01, 0))
    assert "mean [0.5], std [0.5]" in (out / "README.md").read_text()
