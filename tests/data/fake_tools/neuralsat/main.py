"""A fake NeuralSAT main.py: parses its real options, answers from $FAKE_NEURALSAT.

FAKE_NEURALSAT: "unsat", "unknown", "sat:FILE" (counterexample from FILE), "crash".
"""

import argparse
import os

parser = argparse.ArgumentParser()
for name in ("--net", "--spec", "--device", "--result_file"):
    parser.add_argument(name, required=True)
parser.add_argument("--timeout", type=float, required=True)
parser.add_argument("--verbosity", type=int, default=2)
parser.add_argument("--batch", type=int, default=1000)
parser.add_argument("--export_cex", action="store_true")
args = parser.parse_args()
mode = os.environ.get("FAKE_NEURALSAT", "unsat")
if mode == "crash":
    raise RuntimeError("CUDA error: no kernel image is available")
with open(args.result_file, "w") as out:
    if mode.startswith("sat:"):
        with open(mode[4:]) as src:
            print("sat", file=out)
            if args.export_cex:
                print(src.read(), file=out)
    else:
        print(mode, file=out)
print(f"{mode},0.1234")
