"""A fake nnenum command line: ``python -m nnenum.nnenum ONNX VNNLIB TIMEOUT OUTFILE PROCESSES SETTINGS``.

FAKE_NNENUM: "holds", "violated" (2021 style, no witness), "sat:FILE" (counterexample from FILE).
"""

import os
import sys

if len(sys.argv) != 7:
    sys.exit(f"expected 6 arguments, got {sys.argv[1:]}")
onnx, vnnlib, timeout, outfile, processes, settings = sys.argv[1:]
float(timeout), int(processes)
mode = os.environ.get("FAKE_NNENUM", "holds")
with open(outfile, "w") as out:
    if mode.startswith("sat:"):
        with open(mode[4:]) as src:
            out.write("sat\n" + src.read())
    else:
        out.write(mode)
