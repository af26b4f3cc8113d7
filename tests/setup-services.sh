#!/usr/bin/env bash
# Installs and starts the system services the test suite needs (called by `make test`).
#
# In CI (CI=true, as root) the real single-node Slurm is deployed by our own
# Ansible playbook (`make slurm`: munge, slurmctld, slurmd, two fake GPUs) so
# that the Slurm tests run for real. Outside CI nothing is installed behind
# your back: the Slurm tests skip and say to run `make slurm` as root.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${CI:-}" == "true" && "$(id -u)" == "0" ]]; then
    make slurm
fi
