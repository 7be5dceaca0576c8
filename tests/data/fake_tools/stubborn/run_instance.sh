#!/bin/bash
# Ignores SIGTERM, and so do its child and grandchild; records every pid for the test.
trap '' TERM
pids="$(dirname "$5")/pids"
echo $$ >> "$pids"
bash -c 'trap "" TERM; echo $$ >> "$1"; bash -c "trap \"\" TERM; echo \$\$ >> \"\$1\"; sleep 600" _ "$1" & sleep 600' _ "$pids" &
sleep 600
