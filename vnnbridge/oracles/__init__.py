"""Oracles: the protocol, the registry, the process runner, witness validation and the adapters."""

__all__: list[str] = []
