"""Input loaders: every format gives the same C-order values; bad files give located one-line errors."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from vnnbridge.errors import InputError
from vnnbridge.derived import prepare_model
from vnnbridge.inputs import load_input
from vnnbridge.network import load_network

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "tests" / "data" / "paper" / "mnist_0-1.csv"


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return load_input(IMAGE).x


def test_csv_layouts_agree(pixels: np.ndarray, tmp_path: Path) -> None:
    assert pixels.size == 784 and load_input(IMAGE).shape == (784,)
    assert np.array_equal(np.round(pixels * 255) / 255, pixels)  # exact k/255 values survive
    row = tmp_path / "row.csv"
    row.write_text(",".join(repr(float(v)) for v in pixels) + "\n")
    col = tmp_path / "col.csv"
    col.write_text("\n".join(repr(float(v)) for v in pixels) + "\n")
    assert np.array_equal(load_input(row).x, pixels) and np.array_equal(load_input(col).x, pixels)


def test_npy_idx_png(pixels: np.ndarray, tmp_path: Path) -> None:
    stack = np.stack([pixels.reshape(28, 28), 1 - pixels.reshape(28, 28)])
    np.save(tmp_path / "x.npy", stack)
    assert np.array_equal(load_input(tmp_path / "x.npy", index=1).x, 1 - pixels)
    raw = np.round(stack * 255).astype(np.uint8)
    header = struct.pack(">BBBB3I", 0, 0, 0x08, 3, 2, 28, 28)
    (tmp_path / "imgs-idx3-ubyte.gz").write_bytes(gzip.compress(header + raw.tobytes()))
    assert np.array_equal(load_input(tmp_path / "imgs-idx3-ubyte.gz", index=0).x, pixels)
    with pytest.raises(InputError, match="--index"):
        load_input(tmp_path / "imgs-idx3-ubyte.gz")
    from PIL import Image

    Image.fromarray(raw[0]).save(tmp_path / "x.png")
    assert np.array_equal(load_input(tmp_path / "x.png").x, pixels)


def test_vnnlib_gives_domain_and_centre(tmp_path: Path) -> None:
    spec = tmp_path / "p.vnnlib"
    spec.write_text("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
                    "(declare-const Y_1 Real)\n(assert (>= X_0 0.25))\n(assert (<= X_0 0.75))\n"
                    "(assert (>= X_1 0.0))\n(assert (<= X_1 0.5))\n(assert (<= Y_0 Y_1))\n")
    got = load_input(spec)
    assert got.x.tolist() == [0.5, 0.25] and got.domain is not None
    assert got.domain.lower == (0.25, 0.0) and got.domain.upper == (0.75, 0.5)


def test_bad_inputs_are_located(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("0.1, 0.2\n0.3, x4\n")
    with pytest.raises(InputError) as exc:
        load_input(bad)
    assert exc.value.located() == f"{bad}:2:6: not a number: 'x4'"
    with pytest.raises(InputError, match="no such input file"):
        load_input(tmp_path / "missing.csv")
    (tmp_path / "x.bin").write_bytes(b"1234")
    with pytest.raises(InputError, match="unknown input format"):
        load_input(tmp_path / "x.bin")


def test_normalisation_keeps_boxes_in_pixel_space(pixels: np.ndarray) -> None:
    net = ROOT / "tests" / "data" / "paper" / "mnist_784_32_10.onnx"
    wrapped = load_network(prepare_model(net, [0.5], [0.25], strip_softmax=False))
    plain = load_network(net)
    assert np.allclose(wrapped.run(pixels), plain.run((pixels - 0.5) / 0.25), atol=1e-5)
