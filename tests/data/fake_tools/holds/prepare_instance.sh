#!/bin/bash
# Counts its runs, so the test can see that it runs once per network and category.
[[ "$1" == v1 ]] || exit 1
echo "$2 $3" >> "$FAKE_PREPARE_LOG"
