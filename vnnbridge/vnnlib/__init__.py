"""VNN-LIB: the spec model, the parser (1.0 and 2.x) and the exact writers."""

from vnnbridge.vnnlib.model import Case, Polytope, Spec, membership_spec, robustness_spec
from vnnbridge.vnnlib.parser import parse, parse_file, read_text
from vnnbridge.vnnlib.writer import format_number, write, write_file

__all__ = [
    "Case",
    "Polytope",
    "Spec",
    "format_number",
    "membership_spec",
    "parse",
    "parse_file",
    "read_text",
    "robustness_spec",
    "write",
    "write_file",
]
