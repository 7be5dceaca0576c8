"""Searches that turn oracle answers into certifications (each takes an oracle and counts calls)."""

__all__: list[str] = []
