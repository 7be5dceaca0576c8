"""The embedded verifier's machinery: ONNX -> layer network, bounds, attacks, exact MILP."""

from __future__ import annotations

__all__: list[str] = []
