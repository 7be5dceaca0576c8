"""CLI commands: vnncomp (registered by `add`)."""

from __future__ import annotations

import argparse

__all__ = ["add"]


def add(sub: argparse._SubParsersAction) -> None:
    """Register this group's subcommands (none yet)."""
