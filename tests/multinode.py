"""The multi-node test cluster of `make slurm-cluster`, for tests.

A head (this machine's root network namespace: slurmctld, the hub, the bridge
address HEAD_IP) and two compute nodes, each a network namespace with its own
slurmd (ansible/inventories/netns-cluster). Every Slurm command for this
cluster needs SLURM_CONF=CONF (:func:`slurm_env`); the all-in-one cluster of
`make slurm` keeps answering plain `sinfo` beside it.

A node shares this machine's file system, accounts and process table, so
"running on a node" is only entering its network and host name
(:func:`on_node`), and a node dies by SIGKILL to every process in its network
namespace (:func:`kill_node`).
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import time

CONF = "/etc/slurm-netns/slurm.conf"
HEAD_IP = "10.77.0.1"
NODES = {"node1": "10.77.0.11", "node2": "10.77.0.12"}

# as in the netns-cluster inventory (hosts.yml, group_vars/slurm_cluster.yml)
SLURMD = "/usr/sbin/slurmd"


def namespace(node: str) -> str:
    """The node's network namespace file (`ip netns add cl<node>`)."""
    return f"/run/netns/cl{node}"


def pid_file(node: str) -> str:
    return f"/run/slurm-netns/slurmd-{node}.pid"


def slurm_env(extra: dict | None = None) -> dict:
    """This process's environment, with SLURM_CONF naming the test cluster's slurm.conf."""
    return {**os.environ, "SLURM_CONF": CONF, **(extra or {})}


def on_node(node: str, argv: list[str], user: str | None = None, env: dict | None = None) -> list[str]:
    """``argv`` as run "on" ``node``: in its network namespace, with its host name (then as ``user``, with ``env``).

    Root only (nsenter, unshare). The same entry the role gives the node's slurmd.
    """
    prefix = ["nsenter", f"--net={namespace(node)}", "unshare", "--uts",
              "sh", "-c", 'hostname "$0" && exec "$@"', node]
    if user:
        account = pwd.getpwnam(user)
        prefix += ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups", "--"]
    if env:
        prefix += ["env", *(f"{key}={value}" for key, value in env.items()), "--"]
    return prefix + list(argv)


def _in_namespace(node: str) -> list[int]:
    """The processes whose network namespace is the node's."""
    target = os.stat(namespace(node))
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            found = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue  # gone, or a kernel thread
        if (found.st_dev, found.st_ino) == (target.st_dev, target.st_ino):
            pids.append(int(entry))
    return pids


def kill_node(node: str) -> None:
    """The node dies: its slurmd and every process in its namespace (job steps, jobs) get SIGKILL."""
    deadline = time.monotonic() + 10
    while pids := _in_namespace(node):  # a step may fork while we kill
        for pid in pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise AssertionError(f"processes in {node}'s namespace outlived SIGKILL: {pids}")
        time.sleep(0.05)


def node_state(node: str) -> str:
    """Slurm's short state of ``node``: idle, mix, alloc, down* (* : not responding)..."""
    out = subprocess.run(["sinfo", "--noheader", "--Node", f"--nodes={node}", "--format=%t"],
                         capture_output=True, text=True, env=slurm_env(), check=False).stdout.split()
    return out[0] if out else ""


def wait_node_state(node: str, pattern: str, timeout: float = 60) -> str:
    """Wait until ``node``'s state (:func:`node_state`) matches the regular expression ``pattern``; the state."""
    deadline = time.monotonic() + timeout
    state = node_state(node)
    while not re.search(pattern, state):
        if time.monotonic() > deadline:
            raise AssertionError(f"{node} is {state!r}, not {pattern!r}, after {timeout} s")
        time.sleep(0.2)
        state = node_state(node)
    return state


def revive_node(node: str, timeout: float = 60) -> None:
    """Start the node's slurmd again, as the slurm_node role does, and wait until Slurm has it usable."""
    prefix = on_node(node, [])
    started = subprocess.run(
        ["start-stop-daemon", "--start", "--pidfile", pid_file(node), "--exec", SLURMD,
         "--startas", "/usr/bin/" + prefix[0], "--", *prefix[1:], SLURMD, "-f", CONF, "-N", node],
        capture_output=True, text=True, check=False,
    )
    if started.returncode not in (0, 1):  # 1: it runs already
        raise AssertionError(f"slurmd of {node} did not start: {started.stderr}")
    # ReturnToService=2: a node that was down* comes back when its slurmd registers
    wait_node_state(node, r"^(idle|mix|alloc)$", timeout)
