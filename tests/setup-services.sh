#!/usr/bin/env bash
# Installs and starts the system services the test suite needs (called by `make test`).
#
# In CI (CI=true, as root) the real single-node Slurm is deployed by our own
# Ansible playbook (`make slurm`: munge, slurmctld, slurmd, two fake GPUs) so
# that the Slurm tests run for real, and beside it the multi-node test cluster
# (`make slurm-cluster`: a head and two compute nodes in network namespaces,
# SLURM_CONF=/etc/slurm-netns/slurm.conf) for the multi-node tests. Outside CI nothing is installed behind
# your back: the Slurm tests skip and say to run `make slurm` as root, and the
# browser tests skip and say to install Chromium.
#
# The browser tests drive Debian's Chromium (/usr/bin/chromium) with Playwright;
# no browser is ever downloaded by Playwright itself.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${CI:-}" == "true" && "$(id -u)" == "0" ]]; then
    if [[ ! -x /usr/bin/chromium ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
            || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
    fi
    make slurm
    make slurm-cluster
fi
