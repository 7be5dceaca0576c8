#!/usr/bin/env bash
# VNN-COMP tool script: prepare_instance.sh v1 CATEGORY ONNX VNNLIB
# Forwards to `python -m vnnbridge vnncomp-prepare`: checks the instance, warms caches (keyed by
# content hash, never beside the benchmark files), ends processes an earlier vnnbridge run left
# behind. It does no analysis and exits 0 (a non-zero exit would skip the whole category).
[[ "${1:-}" == v1 ]] || { echo "expected version string v1, got '${1:-}'" >&2; exit 1; }
[[ $# -eq 4 ]] || { echo "usage: $0 v1 CATEGORY ONNX VNNLIB" >&2; exit 1; }
tool="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="$tool/.venv/bin/python"
if [[ ! -x "$python" ]]; then
    python=python3
    export PYTHONPATH="$tool${PYTHONPATH:+:$PYTHONPATH}"
fi
config=()
[[ -f "$tool/vnncomp.toml" ]] && config=(--config "$tool/vnncomp.toml")
exec "$python" -m vnnbridge vnncomp-prepare --category "$2" --onnx "$3" --vnnlib "$4" "${config[@]}"
