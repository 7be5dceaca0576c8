#!/bin/bash
echo "cannot convert the network" >&2
exit 1
