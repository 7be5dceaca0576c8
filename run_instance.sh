#!/usr/bin/env bash
# VNN-COMP tool script: run_instance.sh v1 CATEGORY ONNX VNNLIB RESULTS TIMEOUT
# Forwards to `python -m vnnbridge vnncomp-run`, which always writes RESULTS and answers before
# TIMEOUT (counted from here, so interpreter start-up is included). Paths are relative to the
# current directory (the benchmark repository). Exit 0 whenever a verdict was written.
started="$(date +%s.%N)"
[[ "${1:-}" == v1 ]] || { echo "expected version string v1, got '${1:-}'" >&2; exit 1; }
[[ $# -eq 6 ]] || { echo "usage: $0 v1 CATEGORY ONNX VNNLIB RESULTS TIMEOUT" >&2; exit 1; }
tool="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="$tool/.venv/bin/python"
if [[ ! -x "$python" ]]; then
    python=python3
    export PYTHONPATH="$tool${PYTHONPATH:+:$PYTHONPATH}"
fi
config=()
[[ -f "$tool/vnncomp.toml" ]] && config=(--config "$tool/vnncomp.toml")
exec "$python" -m vnnbridge vnncomp-run --category "$2" --onnx "$3" --vnnlib "$4" --results "$5" \
    --timeout="$6" --started "$started" "${config[@]}"
