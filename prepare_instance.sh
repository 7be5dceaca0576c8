#!/usr/bin/env bash
# VNN-COMP tool script: not yet implemented (see the VNN-COMP integration issue).
echo "$(basename "$0"): not yet implemented" >&2
exit 1
