#!/bin/bash
echo unsat > "$5"
