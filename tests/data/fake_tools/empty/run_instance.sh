#!/bin/bash
: > "$5"
