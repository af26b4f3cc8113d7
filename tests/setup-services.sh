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
# The hub tests marked `postgresql` run a second time on Debian's PostgreSQL
# (tests/postgres.py): in CI it is installed here and its cluster started with
# pg_ctlcluster (containers have no systemd); elsewhere those runs skip and say how.
#
# The browser tests drive Debian's Chromium (/usr/bin/chromium) with Playwright;
# no browser is ever downloaded by Playwright itself.
set -euo pipefail
cd "$(dirname "$0")/.."

# the package lists of a fresh image may be missing or stale: update once, only if needed
apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null \
        || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
}

if [[ "${CI:-}" == "true" && "$(id -u)" == "0" ]]; then
    [[ -x /usr/bin/chromium ]] || apt_install chromium
    command -v pg_lsclusters >/dev/null || apt_install postgresql
    # Debian makes a cluster `main` on install; an image may have dropped it
    [[ -n "$(pg_lsclusters -h)" ]] || pg_createcluster "$(ls /usr/lib/postgresql | sort -V | tail -1)" main
    pg_lsclusters -h | while read -r version cluster _port status _rest; do
        [[ "$status" == online* ]] || pg_ctlcluster "$version" "$cluster" start
    done
    make slurm
    make slurm-cluster
fi
