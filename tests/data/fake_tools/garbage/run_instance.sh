#!/bin/bash
echo probably > "$5"
