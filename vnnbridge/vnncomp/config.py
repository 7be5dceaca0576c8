"""Which oracle answers a VNN-COMP instance: per category, from a TOML file or ``VNNBRIDGE_ORACLE``.

Precedence, first match wins:

1. ``VNNBRIDGE_ORACLE``: either one oracle for every category (``marabou``) or a comma list of
   ``CATEGORY=ORACLE`` entries with an optional bare default (``acasxu=marabou,embedded``);
2. the config file (``--config``, else ``VNNBRIDGE_CONFIG``, else ``vnncomp.toml`` in the tool
   folder when present)::

       oracle = "embedded"            # the default for every category
       [categories]
       acasxu = "marabou"
       cifar2020 = "vnncomp:/opt/tools/nnenum"

3. ``embedded``.

The file is validated when it is loaded: an unknown key or a value that is not a string is an
`InputError` naming the file and line.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from vnnbridge.errors import InputError

__all__ = ["DEFAULT_ORACLE", "ENV_CONFIG", "ENV_ORACLE", "OracleChoice", "load_choice"]

DEFAULT_ORACLE = "embedded"
ENV_ORACLE = "VNNBRIDGE_ORACLE"
ENV_CONFIG = "VNNBRIDGE_CONFIG"
_KEYS = {"oracle", "categories"}


@dataclass(frozen=True)
class OracleChoice:
    """A default oracle plus per-category overrides (category names compare case-insensitively)."""

    default: str = DEFAULT_ORACLE
    categories: Mapping[str, str] = field(default_factory=dict)
    source: str = "built-in default"

    def __post_init__(self) -> None:
        for name, spec in {"(default)": self.default, **self.categories}.items():
            if not isinstance(spec, str) or not spec.strip():
                raise InputError(f"oracle for category {name!r} must be a non-empty string, got {spec!r}")

    def oracle_for(self, category: str) -> str:
        """The oracle spec (``NAME`` or ``NAME:ARG``) to use for ``category``."""
        lowered = {k.lower(): v for k, v in self.categories.items()}
        return lowered.get(category.lower(), self.default)


_CATEGORY = re.compile(r"[A-Za-z0-9_.-]+")


def _from_env(value: str) -> OracleChoice:
    # Entries are CATEGORY=ORACLE or bare; an oracle name may hold "=" itself (``?python=/p``) and
    # a portfolio holds commas (``portfolio:embedded,abcrown:DIR``), so only a plain name before
    # the first "=" makes a category, and bare entries after a portfolio are its members.
    bare: list[str] = []
    categories: dict[str, str] = {}
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        category, sep, spec = entry.partition("=")
        if sep and _CATEGORY.fullmatch(category.strip()):
            if not spec.strip():
                raise InputError(f"{ENV_ORACLE}: entry {entry!r} needs the form CATEGORY=ORACLE")
            categories[category.strip()] = spec.strip()
        elif sep and not category.strip():
            raise InputError(f"{ENV_ORACLE}: entry {entry!r} needs the form CATEGORY=ORACLE")
        else:
            bare.append(entry)
    if len(bare) > 1 and not bare[0].startswith("portfolio:"):
        raise InputError(f"{ENV_ORACLE}: more than one default oracle ({', '.join(bare)}); "
                         "race several with portfolio:A,B")
    default = ",".join(bare) if bare else DEFAULT_ORACLE
    return OracleChoice(default, categories, source=f"${ENV_ORACLE}")


def _toml_line(message: str) -> tuple[int | None, int | None]:
    # tomllib puts the position into the message: "... (at line 3, column 7)".
    match = re.search(r"at line (\d+), column (\d+)", message)
    return (int(match.group(1)), int(match.group(2))) if match else (None, None)


def _key_line(text: str, key: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"\s*\[?\s*{re.escape(key)}\s*[\]=]", line):
            return number
    return None


def _from_file(path: Path) -> OracleChoice:
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read the config file: {exc.strerror}", path=str(path)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line, column = _toml_line(str(exc))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise InputError(f"not valid TOML: {message}", path=str(path), line=line, column=column) from None
    for key in data:
        if key not in _KEYS:
            raise InputError(f"unknown key {key!r}; expected one of {', '.join(sorted(_KEYS))}",
                             path=str(path), line=_key_line(text, key), column=1)
    default = data.get("oracle", DEFAULT_ORACLE)
    categories = data.get("categories", {})
    if not isinstance(default, str):
        raise InputError("'oracle' must be a string such as \"embedded\"", path=str(path),
                         line=_key_line(text, "oracle"), column=1)
    if not isinstance(categories, dict):
        raise InputError("'categories' must be a table of CATEGORY = \"ORACLE\"", path=str(path),
                         line=_key_line(text, "categories"), column=1)
    for name, spec in categories.items():
        if not isinstance(spec, str) or not spec.strip():
            raise InputError(f"category {name!r} needs an oracle name string", path=str(path),
                             line=_key_line(text, name), column=1)
    return OracleChoice(default, dict(categories), source=str(path))


def load_choice(config: str | Path | None = None, tool_dir: str | Path | None = None,
                env: Mapping[str, str] | None = None) -> OracleChoice:
    """The oracle choice from the environment, a config file, or the built-in default."""
    environ = os.environ if env is None else env
    if environ.get(ENV_ORACLE, "").strip():
        return _from_env(environ[ENV_ORACLE])
    path: Path | None = None
    if config is not None:
        path = Path(config)
    elif environ.get(ENV_CONFIG, "").strip():
        path = Path(environ[ENV_CONFIG])
    elif tool_dir is not None and (Path(tool_dir) / "vnncomp.toml").is_file():
        path = Path(tool_dir) / "vnncomp.toml"
    if path is None:
        return OracleChoice()
    if not path.is_file():
        raise InputError("no such config file", path=str(path))
    return _from_file(path)
