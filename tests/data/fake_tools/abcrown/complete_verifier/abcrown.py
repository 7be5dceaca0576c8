"""A fake alpha-beta-CROWN entry point: checks the config it is given, answers from $FAKE_ABCROWN.

FAKE_ABCROWN: "unsat", "sat:FILE" (FILE holds the counterexample, copied to attack.cex_path
and appended after "sat" as abcrown does), "silent" (writes nothing), "hang".
"""

import json
import os
import sys
import time

if sys.argv[1:2] != ["--config"] or len(sys.argv) != 3:
    sys.exit(f"usage: abcrown.py --config FILE, got {sys.argv[1:]}")
with open(sys.argv[2]) as stream:
    cfg = json.load(stream)  # the adapter writes JSON, which is YAML too
for section, key in [("model", "onnx_path"), ("specification", "vnnlib_path"), ("general", "results_file"),
                     ("general", "device"), ("bab", "timeout"), ("attack", "cex_path")]:
    if key not in cfg.get(section, {}):
        sys.exit(f"config lacks {section}.{key}")
for path in (cfg["model"]["onnx_path"], cfg["specification"]["vnnlib_path"]):
    if not os.path.isfile(path):
        sys.exit(f"no such file: {path}")
mode = os.environ.get("FAKE_ABCROWN", "unsat")
print(f"fake abcrown: device {cfg['general']['device']}, timeout {cfg['bab']['timeout']}, mode {mode}")
if mode == "hang":
    time.sleep(600)
elif mode == "unsat":
    with open(cfg["general"]["results_file"], "w") as out:
        out.write("unsat")
elif mode.startswith("sat:"):
    with open(mode[4:]) as src, open(cfg["attack"]["cex_path"], "w") as cex:
        cex.write(src.read())
    with open(cfg["general"]["results_file"], "w") as out, open(cfg["attack"]["cex_path"]) as cex:
        out.write("sat\n" + cex.read())
