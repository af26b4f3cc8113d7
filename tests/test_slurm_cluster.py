"""The multi-node test cluster of `make slurm-cluster`: two compute nodes that are Slurm's, for real.

Each node is a network namespace with its own slurmd (multinode.py says how);
what is checked is what a job on each node sees (its host name, its GPU), what
a node can reach (the head, and nothing off the cluster's bridge), and that
Slurm notices a dead node and takes it back when its slurmd returns.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import accounts
import pytest
from multinode import HEAD_IP, kill_node, node_state, on_node, revive_node, slurm_env, wait_node_state

pytestmark = pytest.mark.multinode

USER = "nodeuser"


@pytest.fixture(autouse=True)
def cluster(multinode_cluster):
    pass


def srun(*argv: str, user: str | None = None, timeout: float = 60) -> list[str]:
    """``srun argv`` on the test cluster (as ``user``): its output lines, sorted."""
    account = accounts.ensure(user) if user else None
    result = subprocess.run(
        ["srun", *argv], capture_output=True, text=True, env=slurm_env(), timeout=timeout,
        **(dict(user=account.pw_uid, group=account.pw_gid, extra_groups=[], cwd=account.pw_dir) if account else {}),
    )
    assert result.returncode == 0, result.stderr
    return sorted(result.stdout.split("\n")[:-1])


def test_a_job_of_two_nodes_runs_on_node1_and_node2():
    assert srun("-N2", "hostname") == ["node1", "node2"]


def test_a_user_runs_a_job_on_both_nodes():
    assert srun("-N2", "sh", "-c", "echo $(hostname) $(id -un)", user=USER) == [f"node1 {USER}", f"node2 {USER}"]


def test_each_node_lends_a_gpu_of_its_own():
    assert srun("-N2", "-p", "gpu", "--gres=gpu:1", "sh", "-c", "echo $(hostname) $CUDA_VISIBLE_DEVICES") == [
        "node1 0", "node2 0"]


PROBE = """
import socket, sys
for address in sys.argv[1:]:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
        print(address, "ok")
    except OSError as error:
        print(address, error.strerror)
"""


def test_a_node_reaches_the_head_and_nothing_off_the_cluster():
    with socket.socket() as server:  # a server on the head's bridge address, as the hub's API is
        server.bind((HEAD_IP, 0))
        server.listen()
        head = f"{HEAD_IP}:{server.getsockname()[1]}"
        # no default route in a node: this address (TEST-NET-3) is refused before a packet leaves
        outside = "203.0.113.7:80"
        result = subprocess.run(on_node("node1", [sys.executable, "-c", PROBE, head, outside]),
                                capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{head} ok", f"{outside} Network is unreachable"]
    hostname = subprocess.run(on_node("node1", ["hostname"]), capture_output=True, text=True, check=True)
    assert hostname.stdout.strip() == "node1"


@pytest.mark.slow
def test_a_killed_node_is_marked_down_and_comes_back_when_its_slurmd_does():
    """About 30 s: SlurmdTimeout=10, and Slurm waits a few pings before it calls a node down."""
    assert node_state("node2") == "idle"
    kill_node("node2")
    try:
        # '*': not responding; down: Slurm gave up on it
        assert wait_node_state("node2", r"^down\*$", timeout=90) == "down*"
        assert srun("-N1", "-w", "node1", "hostname") == ["node1"]  # the other node works on
    finally:
        revive_node("node2")
    assert node_state("node2") == "idle"
    assert srun("-N2", "hostname") == ["node1", "node2"]
