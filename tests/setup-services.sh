#!/usr/bin/env bash
# Installs and starts the system services the test suite needs (called by `make test`).
# Nothing is needed yet beyond the virtual environment and node_modules that
# `make setup` provides; the Slurm and browser issues add their services here.
set -euo pipefail
