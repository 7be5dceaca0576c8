#!/bin/bash
# Writes the answer the test prepared, so witness validation runs on real and bogus witnesses.
[[ "$1" == v1 ]] || { echo "expected v1, got '$1'" >&2; exit 1; }
cp "$FAKE_ANSWER" "$5"
