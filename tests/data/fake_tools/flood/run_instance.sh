#!/bin/bash
head -c 200000000 /dev/zero | tr '\0' 'x'
