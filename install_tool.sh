#!/usr/bin/env bash
# VNN-COMP tool script: install_tool.sh v1
# Creates the tool's virtualenv in <repo>/.venv (the Makefile's convention, which the other two
# scripts use when present): the CPU build of torch==2.13.0 first (an unpinned torch would pull a
# CUDA build), then vnnbridge with its test extra (maraboupy for the `marabou` oracle).
set -euo pipefail
[[ "${1:-}" == v1 ]] || { echo "expected version string v1, got '${1:-}'" >&2; exit 1; }
tool="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$tool"
if command -v make >/dev/null; then
    exec make venv
fi
test -x .venv/bin/python || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[test]'
