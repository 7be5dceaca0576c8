"""Local witness repair: projected gradient steps inside the box (for tools that print few decimals)."""

from __future__ import annotations

import numpy as np

from vnnbridge.network import Network
from vnnbridge.oracles.base import Query

__all__ = ["repair_witness"]


def repair_witness(query: Query, case: object, x: np.ndarray, net: Network) -> np.ndarray | None:
    """PLACEHOLDER (oracle issue): try to move ``x`` inside ``case.box`` to a real violation."""
    return None
