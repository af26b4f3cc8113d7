"""Sizes of several nodes, without a cluster: who may have one, where it can run, and how a
distributed job finds its rank (the real 2-node runs are in test_multinode_slurm.py)."""

import dataclasses

import pytest

from clusterlab_server.backends.kubernetes import KubernetesBackend
from clusterlab_server.backends.local import local_availability
from clusterlab_server.training import Distributed, expand_nodelist
from clusterlab_spawner.availability import availability_from_nodes
from clusterlab_spawner.options import server_profiles
from clusterlab_spawner.profiles import Profile, load_profiles
from clusterlab_spawner.slurm_queue import parse_sinfo

TWO_NODES = Profile(id="cpu-2node", display_name="2 nodes", nodes=2, cpus=2, memory_gb=2, max_hours=4,
                    default_hours=1)
ONE_NODE = dataclasses.replace(TWO_NODES, id="cpu", nodes=1)


def sinfo(*lines):
    return parse_sinfo("".join(f"{line}\n" for line in lines))


def test_a_two_node_size_fits_a_partition_of_two_nodes_and_waits_while_one_is_busy():
    idle = "node{n}|cpu*|0/2/0/2|3000|0|gpu:2|gpu:0|idle"
    assert "cpu-2node" not in availability_from_nodes(sinfo(idle.format(n=1), idle.format(n=2)),
                                                      [TWO_NODES]).blocked
    busy = sinfo(idle.format(n=1), "node2|cpu*|2/0/0/2|3000|2000|gpu:2|gpu:0|allocated")
    assert availability_from_nodes(busy, [TWO_NODES]).blocked["cpu-2node"] == (
        "needs 2 nodes free at once; 1 free now in partition cpu")


def test_a_size_of_more_nodes_than_the_cluster_has_is_refused_as_impossible():
    one = sinfo("node1|cpu*|0/2/0/2|3000|0|gpu:2|gpu:0|idle")
    assert availability_from_nodes(one, [TWO_NODES]).impossible["cpu-2node"] == (
        "needs 2 nodes of 2 cores · 2 GB; partition cpu has 1 node that large")
    assert "cpu" not in availability_from_nodes(one, [ONE_NODE]).impossible


def test_backends_of_one_machine_or_one_pod_say_so():
    assert local_availability([TWO_NODES], cores=4, granted_gpus=0).impossible["cpu-2node"] == (
        "needs 2 nodes; jobs here run inside this one server")
    reason = KubernetesBackend.availability(None, [TWO_NODES, ONE_NODE])
    assert "not supported on Kubernetes yet" in reason.impossible["cpu-2node"] and "cpu" in reason.blocked


def test_a_jupyterlab_is_never_offered_several_nodes():
    shipped = {p.id: p for p in load_profiles("hub_config/profiles.yaml")}
    assert shipped["gpu-2x4"].nodes == 2
    assert "gpu-2x4" not in server_profiles(shipped) and "gpu-1" in server_profiles(shipped)


@pytest.mark.parametrize("nodelist, names", [
    ("node1", ["node1"]), ("node[1-2]", ["node1", "node2"]), ("n[08-10],gpu-a", ["n08", "n09", "n10", "gpu-a"]),
    ("x[1,3-4]y,z", ["x1y", "x3y", "x4y", "z"]),
])
def test_slurm_host_lists_expand_as_scontrol_show_hostnames_does(nodelist, names):
    assert expand_nodelist(nodelist) == names


def test_a_process_finds_its_rank_from_srun_or_torchrun():
    srun = Distributed({"SLURM_NTASKS": "4", "SLURM_PROCID": "3", "SLURM_LOCALID": "1",
                        "SLURM_JOB_NODELIST": "node[1-2]", "SLURM_JOB_ID": "12345"})
    assert (srun.rank, srun.world_size, srun.local_rank, srun.master, srun.port) == (3, 4, 1, "node1", 22345)
    assert srun.enabled and not srun.main
    torchrun = Distributed({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "10.0.0.5", "MASTER_PORT": "29400"})
    assert (torchrun.rank, torchrun.world_size, torchrun.master, torchrun.port) == (0, 2, "10.0.0.5", 29400)
    alone = Distributed({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"})
    assert not alone.enabled and alone.main
