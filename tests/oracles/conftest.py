"""Fixtures for the oracle tests: paper networks, their images, and robustness queries around them."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from vnnbridge.box import Box
from vnnbridge.network import load_network
from vnnbridge.oracles.base import Query
from vnnbridge.vnnlib.model import robustness_spec

UNIT = Box.from_arrays(np.zeros(784), np.ones(784))


def paper_image(shared: Path, dataset: str, name: str) -> np.ndarray:
    """One paper image, flat, in [0, 1]."""
    return np.loadtxt(shared / "data" / "paper" / dataset / "images" / f"{name}.csv").ravel()


def paper_net(shared: Path, dataset: str) -> Path:
    """The 784-32-10 paper network of ``dataset``."""
    return shared / "data" / "paper" / "networks" / f"{dataset}_784_32_10.onnx"


@pytest.fixture
def cube_query(shared: Path, tmp_path: Path) -> Callable[[str, str, float], Query]:
    """``cube_query(dataset, image, radius)``: the robustness query of an l-inf cube in [0,1]."""

    def build(dataset: str, image: str, radius: float) -> Query:
        net = paper_net(shared, dataset)
        x = paper_image(shared, dataset, image)
        label = load_network(net).predict(x)
        return Query.build(net, robustness_spec(Box.cube(x, radius, UNIT), label, 10), tmp_path)

    return build
