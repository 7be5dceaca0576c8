"""Axis-aligned boxes: the input regions that vnnbridge queries and certifies."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Iterable

import numpy as np

__all__ = ["Box"]


def _floats(values: Iterable[float]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


@dataclass(frozen=True, slots=True)
class Box:
    """A box ``lower <= x <= upper`` (flat, C-order); bounds are exact Python floats."""

    lower: tuple[float, ...]
    upper: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.lower) != len(self.upper):
            raise ValueError(f"a box needs bounds of equal length, got {len(self.lower)} and {len(self.upper)}")
        # C-level checks first (parsing a 100 MB property builds millions of bounds); the loop
        # below only runs to name the first bad bound.
        if (all(map(math.isfinite, self.lower)) and all(map(math.isfinite, self.upper))
                and all(map(operator.le, self.lower, self.upper))):
            return
        for i, (lo, hi) in enumerate(zip(self.lower, self.upper)):
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError(f"box bound {i} is not finite: [{lo!r}, {hi!r}]")
            if lo > hi:
                raise ValueError(f"box bound {i} has lower > upper: [{lo!r}, {hi!r}]")

    @classmethod
    def from_arrays(cls, lower: Iterable[float], upper: Iterable[float]) -> Box:
        """Build a box from any two sequences (numpy arrays included)."""
        return cls(_floats(np.asarray(lower, dtype=np.float64).ravel()),
                   _floats(np.asarray(upper, dtype=np.float64).ravel()))

    @classmethod
    def point(cls, x: Iterable[float]) -> Box:
        """The degenerate box holding one point."""
        flat = _floats(np.asarray(x, dtype=np.float64).ravel())
        return cls(flat, flat)

    @property
    def dim(self) -> int:
        """Number of coordinates."""
        return len(self.lower)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The bounds as two float64 arrays."""
        return np.array(self.lower, dtype=np.float64), np.array(self.upper, dtype=np.float64)

    def center(self) -> np.ndarray:
        """The midpoint of the box."""
        lo, hi = self.arrays()
        return lo + (hi - lo) / 2.0

    def contains(self, x: Iterable[float], atol: float = 0.0) -> bool:
        """Whether ``x`` lies in the box, every bound widened by ``atol``."""
        lo, hi = self.arrays()
        v = np.asarray(x, dtype=np.float64).ravel()
        return v.shape == lo.shape and bool(np.all(v >= lo - atol) and np.all(v <= hi + atol))

    def contains_box(self, other: Box, atol: float = 0.0) -> bool:
        """Whether ``other`` lies inside this box."""
        lo, hi = self.arrays()
        olo, ohi = other.arrays()
        return lo.shape == olo.shape and bool(np.all(olo >= lo - atol) and np.all(ohi <= hi + atol))

    def clip(self, x: Iterable[float]) -> np.ndarray:
        """``x`` projected onto the box."""
        lo, hi = self.arrays()
        return np.clip(np.asarray(x, dtype=np.float64).ravel(), lo, hi)

    def intersect(self, other: Box) -> Box:
        """The intersection of two boxes (raises ValueError when it is empty)."""
        lo, hi = self.arrays()
        olo, ohi = other.arrays()
        return Box.from_arrays(np.maximum(lo, olo), np.minimum(hi, ohi))

    @classmethod
    def cube(cls, x: Iterable[float], radius: float, domain: Box) -> Box:
        """The l-inf ball of ``radius`` around ``x``, clipped to ``domain``."""
        v = np.asarray(x, dtype=np.float64).ravel()
        lo, hi = domain.arrays()
        return cls.from_arrays(np.maximum(v - radius, lo), np.minimum(v + radius, hi))
