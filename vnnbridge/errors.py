"""The one error tree of vnnbridge; every class carries the exit code the CLI returns for it.

    VnnbridgeError                      exit 1  (any failure not listed below)
    ├── InputError                      exit 2  bad user input: files, shapes, options
    │   ├── SpecError                   exit 2  a VNN-LIB file that is malformed or inconsistent
    │   │   └── SpecSyntaxError         exit 2  the text does not follow the grammar
    │   ├── ModelError                  exit 2  an ONNX model that cannot be read or is unsupported
    │   ├── UnknownOracle               exit 2  an oracle name no registry knows
    │   └── CertificateError            exit 2  a certificate folder that cannot be read
    ├── OracleUnavailable               exit 3  an oracle that cannot run on this machine
    ├── OracleProtocolError             exit 1  a tool said something its verdict table does not know
    └── BogusWitness                    exit 1  a `sat` witness that does not violate the query

Located errors (`SpecError` and friends) render as one line ``FILE:LINE:COL: message``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BogusWitness",
    "CertificateError",
    "InputError",
    "ModelError",
    "OracleProtocolError",
    "OracleUnavailable",
    "SpecError",
    "SpecSyntaxError",
    "UnknownOracle",
    "VnnbridgeError",
    "require_file",
]


class VnnbridgeError(Exception):
    """Root of every error vnnbridge raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 column: int | None = None) -> None:
        super().__init__(message)
        self.message, self.path, self.line, self.column = message, path, line, column

    def located(self, path: str | None = None) -> str:
        """The one-line form ``FILE:LINE:COL: message`` (parts that are unknown are left out)."""
        where = [p for p in (self.path or path, self.line, self.column) if p is not None]
        head = ":".join(str(p) for p in where)
        text = " ".join(self.message.split("\n"))
        return f"{head}: {text}" if head else text

    def __str__(self) -> str:
        return self.located()


class InputError(VnnbridgeError, ValueError):
    """Bad user input: a missing file, a wrong shape, an option out of range."""

    exit_code = 2


class SpecError(InputError):
    """A VNN-LIB property that is malformed or inconsistent."""


class SpecSyntaxError(SpecError):
    """A VNN-LIB text that does not follow the grammar."""


class ModelError(InputError):
    """An ONNX model that cannot be read, or that uses an operator an oracle does not support."""


class UnknownOracle(InputError):
    """An oracle name that is neither built in nor registered (a typo, not a missing install)."""


class CertificateError(InputError):
    """A certificate folder that is missing, incomplete or inconsistent."""


class OracleUnavailable(VnnbridgeError):
    """An oracle that cannot run here (not installed, wrong folder)."""

    exit_code = 3


class OracleProtocolError(VnnbridgeError):
    """A tool answered with a word or format its verdict table does not know."""


class BogusWitness(VnnbridgeError):
    """A `sat` witness that, re-run with onnxruntime, does not violate the property."""


def require_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path when it is a file; else the `InputError` that says what it is instead.

    ``what`` names the expected kind of file ("ONNX file", "input file").
    """
    p = Path(path)
    if p.is_dir():
        article = "an" if what[:1].lower() in "aeiou" else "a"
        raise InputError(f"this is a folder, not {article} {what}", path=str(p))
    if not p.is_file():
        raise InputError(f"no such {what}", path=str(p))
    return p
