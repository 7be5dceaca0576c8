"""VNN-LIB text as both parsers read it: grammar files, file bytes to text, the version, syntax errors.

Shared by `vnnbridge.vnnlib.parser` (1.0) and `vnnbridge.vnnlib.vnnlib2` (2.x), so that
neither imports the other for these.
"""

from __future__ import annotations

import gzip
import re
from importlib import resources
from pathlib import Path

from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from vnnbridge.errors import InputError, SpecError, SpecSyntaxError

__all__ = ["SHAPE_TERMINALS", "grammar_text", "is_vnnlib2", "read_text", "syntax_error"]

_V2_HEAD = re.compile(r"(?:\s|;[^\n]*)*\(\s*vnnlib-version\b")

# Human names of the grammar's terminals, for "expected ..." messages.
_EXPECTED = {
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "COMMA": "','",
    "SYMBOL": "a variable", "NAME": "a name", "NUMBER": "a number", "INT": "an integer",
    "REL": "a comparison operator (<=, >=, <, >)", "AND": "'and'", "OR": "'or'", "ASSERT": "'assert'",
    "DECLARE_CONST": "'declare-const'", "PLUS": "'+'", "MINUS": "'-'", "TIMES": "'*'",
    "$END": "end of file", "VERSION": "a version like <2.0>", "ONNX_NAME": "a quoted ONNX name",
    "INITIALIZED": "'initialized'", "EQUIVALENCE": "'equal-to' or 'isomorphic-to'",
    "VNNLIB_VERSION": "'vnnlib-version'", "DECLARE_NETWORK": "'declare-network'",
    "DECLARE_INPUT": "'declare-input'", "DECLARE_HIDDEN": "'declare-hidden'",
    "DECLARE_OUTPUT": "'declare-output'",
}
# Whole-shape terminals: always accompanied by '(' in an expected set, so not worth naming.
SHAPE_TERMINALS = {"DECLS", "ASSERTS", "CMP", "CONJ", "DISJ"}


def grammar_text(name: str) -> str:
    """The text of a grammar file shipped as ``vnnbridge.grammars`` (checkout or wheel)."""
    try:
        return (resources.files("vnnbridge.grammars") / name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        # A checkout used without installing: the folder sits beside the package.
        return (Path(__file__).resolve().parents[2] / "grammars" / name).read_text(encoding="utf-8")


def is_vnnlib2(text: str) -> bool:
    """Whether ``text`` starts (after comments) with a VNN-LIB 2 version header."""
    return _V2_HEAD.match(text) is not None



def _show(text: str, limit: int = 40) -> str:
    text = " ".join(str(text).split())
    return repr(text if len(text) <= limit else text[:limit] + "...")


def syntax_error(exc: UnexpectedInput, text: str, path: str | None) -> SpecSyntaxError:
    """Turn lark's exception into a one-line located `SpecSyntaxError`."""
    line, column = exc.line, exc.column
    if isinstance(exc, UnexpectedCharacters):
        token = re.compile(r"[^\s()\[\]]+|\S").match(text, exc.pos_in_stream or 0)
        found = _show(token.group(0) if token else "")
        expected = exc.allowed or set()
    elif isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        found = _show(exc.token)
        expected = exc.accepts or exc.expected
    else:  # end of input
        found = "end of file"
        expected = getattr(exc, "accepts", None) or getattr(exc, "expected", None) or set()
        line = text.count("\n") + 1
        column = len(text) - text.rfind("\n")
    names = sorted({_EXPECTED.get(e, e) for e in expected if e not in SHAPE_TERMINALS})
    if not names:
        wanted = "something else"
    elif len(names) == 1:
        wanted = names[0]
    else:
        wanted = ", ".join(names[:-1]) + " or " + names[-1]
    return SpecSyntaxError(f"expected {wanted}, found {found}", path=path,
                           line=line if line and line > 0 else None,
                           column=column if column and column > 0 else None)


def read_text(path: str | Path) -> str:
    """The text of a VNN-LIB file; ``.gz`` files (or gzip content) are decompressed."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the property file: {exc.strerror or exc}", path=str(path)) from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise SpecError(f"expected a gzip-compressed VNN-LIB file, found a damaged one ({exc})",
                            path=str(path)) from None
    try:
        return data.decode("utf-8-sig")  # a byte-order mark some editors write is not part of the text
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise SpecError(f"expected UTF-8 text, found the byte 0x{data[exc.start]:02x}", path=str(path),
                        line=line, column=column) from None

