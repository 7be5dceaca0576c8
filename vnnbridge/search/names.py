"""The method names the CLI offers (kept import-light so the parser builds fast)."""

from __future__ import annotations

__all__ = ["DEFAULT_DUAL", "DEFAULT_MAX_CALLS", "DEFAULT_METHOD", "DUAL_NAMES", "METHOD_NAMES"]

METHOD_NAMES = ("cube-topdown", "cube-bisect", "apothem", "box-topdown", "greedy", "grow", "slack", "fill",
                "edge")
DUAL_NAMES = ("dual-faces", "dual-box", "dual-cube")
DEFAULT_METHOD = "apothem"
DEFAULT_DUAL = "dual-faces"
# The call budget per search phase of ``certify``: growing a box on a 784-input network ends
# in minutes (about 1000 embedded calls on the paper networks) instead of running for an hour.
DEFAULT_MAX_CALLS = 1000
