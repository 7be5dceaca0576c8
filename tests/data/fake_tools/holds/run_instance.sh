#!/bin/bash
echo holds > "$5"
