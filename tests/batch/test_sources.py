"""Collections become items with stable, distinct ids and the true labels found beside them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vnnbridge.batch.sources import collect, parse_range
from vnnbridge.errors import InputError

from .conftest import SLICE


def test_npy_stack_with_labels_beside() -> None:
    items = collect(SLICE)
    assert [it.id for it in items[:3]] == ["00", "01", "02"]
    assert [it.index for it in items] == list(range(16))
    assert [it.true_label for it in items[:5]] == [7, 2, 1, 0, 4]  # the MNIST test set's first labels


def test_idx_with_labels_beside(shared: Path) -> None:
    items = collect(shared / "data" / "datasets" / "mnist" / "t10k-images-idx3-ubyte.gz")
    assert len(items) == 10_000
    assert items[0].id == "0000" and items[9999].id == "9999"
    assert [it.true_label for it in items[:5]] == [7, 2, 1, 0, 4]


def test_folder_and_list_file(tmp_path: Path) -> None:
    for name in ("img10.csv", "img2.csv", "img1.csv"):
        (tmp_path / name).write_text("0.5, 0.25\n")
    (tmp_path / "notes.md").write_text("not an input\n")
    assert [it.id for it in collect(tmp_path)] == ["img1", "img2", "img10"]  # natural order
    listing = tmp_path / "inputs.txt"
    listing.write_text("# two of them\nimg2.csv\n\nimg10.csv\n")
    assert [(it.id, Path(it.path).name) for it in collect(listing)] == [("img2", "img2.csv"), ("img10", "img10.csv")]
    (tmp_path / "bad.list").write_text("img1.csv\nmissing.csv\n")
    with pytest.raises(InputError) as err:
        collect(tmp_path / "bad.list")
    assert err.value.line == 2 and "missing.csv" in str(err.value)


def test_two_inputs_never_share_a_folder(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("0.5\n")
    np.save(tmp_path / "a.npy", np.zeros(1))
    with pytest.raises(InputError, match="share the certificate folder 'a'"):
        collect(tmp_path)


def test_a_txt_of_numbers_is_one_input(tmp_path: Path) -> None:
    point = tmp_path / "x.txt"
    point.write_text("0.1 0.2\n0.3 0.4\n")
    assert [it.id for it in collect(point)] == ["x"]


@pytest.mark.parametrize("text, expected", [(None, range(10)), ("3", range(3, 4)), ("2:5", range(2, 5)),
                                            (":4", range(4)), ("7:", range(7, 10)), ("-2:", range(8, 10))])
def test_parse_range(text: str | None, expected: range) -> None:
    assert list(parse_range(text, 10)) == list(expected)


@pytest.mark.parametrize("text", ["x", "1:2:3", "10", "a:b"])
def test_parse_range_rejects(text: str) -> None:
    with pytest.raises(InputError, match="--index"):
        parse_range(text, 10)


def test_item_array_is_what_load_input_reads(shared: Path) -> None:
    from vnnbridge.batch.sources import item_array
    from vnnbridge.inputs import load_input

    idx = collect(shared / "data" / "datasets" / "mnist" / "t10k-images-idx3-ubyte.gz")
    for it in (idx[0], idx[9999], collect(SLICE)[5]):
        arr = item_array(it)
        want = load_input(it.path, it.index)
        assert arr is not None and arr.shape == want.shape and np.array_equal(arr.ravel(), want.x)
