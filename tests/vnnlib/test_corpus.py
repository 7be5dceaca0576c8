"""Every real VNN-COMP property in ../shared/vnnlib-corpus parses to the scorer's counts and round-trips."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from vnnbridge.errors import SpecError
from vnnbridge.vnnlib import parse, parse_file, write
from vnnbridge.vnnlib.model import spec_bits as bits
from vnnbridge.vnnlib.vnnlib2 import parse_document, parse_document_file, write2, write_document

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("VNNBRIDGE_SHARED") or ROOT.parent / "shared") / "vnnlib-corpus"
_ROW = re.compile(r"\| `([^`]+)` \|[^|]*\| (\d+) \| (\d+) \| (\d+) \| (\[[^|]*\]) \| ([^|]*) \|")


def _table() -> list[tuple[str, dict[str, object]]]:
    """The parse-summary table of SOURCES.md: file -> expected counts (rows None where it says 'many')."""
    sources = CORPUS / "SOURCES.md"
    if not sources.is_file():
        return []
    out = []
    for line in sources.read_text().splitlines():
        m = _ROW.match(line)
        if m:
            rows = m.group(6).strip()
            out.append((m.group(1), {"inputs": int(m.group(2)), "outputs": int(m.group(3)),
                                     "boxes": int(m.group(4)), "disjuncts_per_box": eval_list(m.group(5)),
                                     "rows": None if rows == "many" else eval_list(rows)}))
    return out


def eval_list(text: str) -> list:
    """A JSON-like nested list of ints."""
    import json

    return json.loads(text)


TABLE = _table()
V2 = ["cartpole.vnnlib", "initialized.vnnlib", "intermediate_nodes.vnnlib", "multiple_networks.vnnlib"]



@pytest.fixture(scope="module")
def corpus(shared: Path) -> Path:
    return shared / "vnnlib-corpus"


def test_the_table_was_read(corpus: Path) -> None:
    assert len(TABLE) >= 19


@pytest.mark.parametrize("name,expected", TABLE, ids=[t[0] for t in TABLE])
def test_corpus_file_parses_to_the_scorer_summary(corpus: Path, name: str, expected: dict) -> None:
    summary = parse_file(corpus / name).summary()
    if expected["rows"] is None:
        expected = {**expected, "rows": summary["rows"]}
        assert [len(r) for r in summary["rows"]] == expected["disjuncts_per_box"]
    assert summary == expected


@pytest.mark.parametrize("name", [t[0] for t in TABLE])
def test_corpus_file_round_trips_bit_exactly(corpus: Path, name: str) -> None:
    spec = parse_file(corpus / name)
    text = write(spec)
    again = parse(text)
    assert again == spec and bits(again) == bits(spec)
    assert write(again) == text
    # 1.0 -> 2.0 -> 1.0 keeps the cases.
    via2 = parse(write2(spec))
    assert via2 == spec and bits(via2) == bits(spec)


def test_scientific_and_integer_literals_read_exactly(corpus: Path) -> None:
    spec = parse_file(corpus / "nn4sys/cardinality_1_1_128_dual.vnnlib")
    text = (corpus / "nn4sys/cardinality_1_1_128_dual.vnnlib").read_text()
    first = re.search(r"\(>= X_0 (\S+)\)", text).group(1)
    assert spec.cases[0].box.lower[0] == float(first)


@pytest.mark.parametrize("name", V2)
def test_vnnlib2_file_parses_and_rewrites_to_the_same_document(corpus: Path, name: str) -> None:
    doc = parse_document_file(corpus / "vnnlib2" / name)
    assert doc.networks and parse_document(write_document(doc)) == doc


def test_vnnlib2_documents_have_the_declared_structure(corpus: Path) -> None:
    multi = parse_document_file(corpus / "vnnlib2/multiple_networks.vnnlib")
    assert [n.name for n in multi.networks] == ["AcasXu", "AcasYu", "AcasZu"]
    assert multi.networks[1].equivalences == (("equal-to", "AcasXu"),)
    assert multi.networks[2].equivalences == (("isomorphic-to", "AcasXu"),)
    hidden = parse_document_file(corpus / "vnnlib2/intermediate_nodes.vnnlib").networks[0].role("hidden")
    assert hidden[0].shape == (1, 2) and hidden[0].onnx_name == "onnx"
    init = parse_document_file(corpus / "vnnlib2/initialized.vnnlib")
    assert init.version == "2.1" and init.networks[0].role("input")[0].initialized


def test_vnnlib2_single_network_converts_to_a_spec(corpus: Path) -> None:
    spec = parse_file(corpus / "vnnlib2/cartpole.vnnlib")
    assert spec.summary() == {"inputs": 4, "outputs": 2, "boxes": 1, "disjuncts_per_box": [1], "rows": [[1]]}
    assert spec.cases[0].box.lower[0] == -0.05549104989941913
    assert spec.cases[0].polytopes[0].a == ((-1.0, 1.0),)


@pytest.mark.parametrize("name,message", [
    ("multiple_networks.vnnlib", "7:2: expected one network for a box spec, found 3 (AcasXu, AcasYu, AcasZu)"),
    ("intermediate_nodes.vnnlib", "14:10: expected a bound on one input variable (a box), found a linear "
                                  "constraint over X[1], X[2]"),
    ("initialized.vnnlib", "4:17: expected a lower and an upper bound on input A[0], found no lower bound"),
])
def test_vnnlib2_file_that_is_no_box_spec_says_why(corpus: Path, name: str, message: str) -> None:
    path = corpus / "vnnlib2" / name
    with pytest.raises(SpecError) as exc:
        parse_file(path)
    assert exc.value.located() == f"{path}:{message}"


def test_vnnlib2_writer_takes_types_and_shapes_from_onnx(shared: Path, corpus: Path) -> None:
    spec = parse_file(corpus / "mnist_fc/prop_0_0.03.vnnlib")
    text = write2(spec, shared / "data/paper/networks/mnist_784_32_10.onnx")
    assert "(declare-input X float32 [1,28,28])" in text and "(declare-output Y float32 [1,10])" in text
    assert "(assert (<= X[0,27,27] " in text
    again = parse(text)
    assert again == spec and bits(again) == bits(spec)
