"""Argument types shared by the CLI's command groups."""

from __future__ import annotations

import argparse
import math

__all__ = ["add_normalisation", "seconds"]


def seconds(text: str) -> float:
    """A positive, finite number of seconds (fractions allowed), for ``--timeout`` options."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


class _Numbers(argparse.Action):
    """One or more numbers, as separate words or separated by commas (``0.1 0.2`` or ``0.1,0.2``)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        words = [values] if isinstance(values, str) else list(values)  # type: ignore[call-overload]
        numbers = []
        for word in words:
            for part in str(word).replace(",", " ").split():
                try:
                    value = float(part)
                except ValueError:
                    raise argparse.ArgumentError(self, f"expected numbers, got {part!r}") from None
                if not math.isfinite(value):
                    raise argparse.ArgumentError(self, f"expected finite numbers, got {part!r}")
                numbers.append(value)
        setattr(namespace, self.dest, numbers)


def add_normalisation(parser: argparse.ArgumentParser, what: str) -> None:
    """``--mean`` and ``--std``, the same for every command: ``0.1 0.2`` and ``0.1,0.2`` both work."""
    parser.add_argument("--mean", nargs="+", action=_Numbers, metavar="M",
                        help=f"per-channel mean the network expects: one value or one per channel, spaces "
                        f"or commas between ({what})")
    parser.add_argument("--std", nargs="+", action=_Numbers, metavar="S", help="per-channel std, as --mean")
