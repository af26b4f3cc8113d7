"""Which sizes a job could get now, per job backend (``availability``), without a cluster.

The local backend reads what this server was given; the Slurm backend reads a
scripted ``sinfo`` here (tests/test_jobs_slurm.py runs the real one).
"""

from __future__ import annotations

import stat

import pytest

from clusterlab_server.backends import SlurmBackend, local_availability
from clusterlab_spawner.profiles import Profile


def profile(id, cpus=1, gpus=0, memory_gb=1, partition=""):
    return Profile(id=id, display_name=id, cpus=cpus, memory_gb=memory_gb, gpus=gpus, max_hours=4,
                   default_hours=1, slurm={"partition": partition} if partition else {})


SIZES = [profile("small"), profile("wide", cpus=8), profile("gpu-1", gpus=1), profile("gpu-2", cpus=2, gpus=2)]


def test_local_sizes_with_more_gpus_or_cores_than_this_server_was_granted_never_start():
    a = local_availability(SIZES, cores=4, granted_gpus=0)
    assert a.state("small") == {"state": "free", "reason": ""}
    assert a.state("wide") == {"state": "impossible", "reason": "needs 8 cores; this server was granted 4"}
    assert a.state("gpu-1") == {"state": "impossible", "reason": "needs 1 GPU; this server was granted none"}
    a = local_availability(SIZES, cores=8, granted_gpus=1)
    assert [a.state(p.id)["state"] for p in SIZES] == ["free", "free", "free", "impossible"]
    assert a.state("gpu-2")["reason"] == "needs 2 GPUs; this server was granted 1"
    a = local_availability(SIZES, cores=1, granted_gpus=2)
    assert a.state("gpu-2") == {"state": "impossible", "reason": "needs 2 cores; this server was granted 1"}


def fake_sinfo(folder, body: str):
    sinfo = folder / "sinfo"
    sinfo.write_text(f"#!/bin/sh\necho run >> {folder}/calls\n{body}\n")
    sinfo.chmod(sinfo.stat().st_mode | stat.S_IXUSR)


def test_slurm_sizes_from_one_cached_sinfo(tmp_path):
    fake_sinfo(tmp_path, "printf 'n1|cpu*|2/2/0/4|8000|0|(null)|gpu:0|mixed\\n"
                         "g1|gpu|0/4/0/4|16000|0|gpu:1|gpu:1|mixed\\n'")
    backend = SlurmBackend(str(tmp_path))
    sizes = [profile("small"), profile("wide", cpus=8), profile("gpu-1", gpus=1, partition="gpu")]
    a = backend.availability(sizes)
    assert a.state("small") == {"state": "free", "reason": ""}
    assert a.state("wide")["state"] == "impossible" and "largest node of partition cpu" in a.state("wide")["reason"]
    assert a.state("gpu-1") == {"state": "queue", "reason": "needs 1 GPU(s); 0 free now in partition gpu"}
    backend.availability(sizes)
    assert (tmp_path / "calls").read_text().count("run") == 1  # the second answer came from the cache


def test_a_failing_sinfo_means_queue_never_an_error(tmp_path):
    fake_sinfo(tmp_path, "echo 'slurm_load_partitions: Unable to contact slurm controller' >&2; exit 1")
    a = SlurmBackend(str(tmp_path)).availability([profile("small")])
    assert a.state("small")["state"] == "queue"
    assert "Unable to contact slurm controller" in a.state("small")["reason"]
    a = SlurmBackend(str(tmp_path / "nowhere")).availability([profile("small")])
    assert a.state("small")["state"] == "queue"


def fake_squeue(folder, lines: str):
    squeue = folder / "squeue"
    squeue.write_text(f"#!/bin/sh\nprintf '{lines}'\n")
    squeue.chmod(squeue.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize("state, marks, status, restartable", [
    ("NODE_FAIL", {}, "failed", True),                       # its node died: not its own doing
    ("PREEMPTED", {}, "failed", True),
    ("OUT_OF_MEMORY", {"exit_code": "137"}, "failed", True),
    ("TIMEOUT", {}, "failed", False),                         # the hours it asked for
    ("FAILED", {"exit_code": "1"}, "failed", False),          # a Python exception: its own error
    ("FAILED", {}, "failed", True),                           # killed, batch shell and all: no exit status
    ("FAILED", {"exit_code": "137"}, "failed", True),         # its program SIGKILLed (job.sh wrote 128 + 9)
    ("CANCELLED", {}, "cancelled", False),                    # somebody's scancel outside ClusterLab
    ("CANCELLED", {"cancelled": ""}, "cancelled", False),     # ClusterLab's own cancel
    ("CANCELLED", {"pruned": "stopped early at epoch 2"}, "pruned", False),
])
def test_slurm_ends_say_whether_a_restart_may_get_past_them(tmp_path, state, marks, status, restartable):
    from clusterlab_server.store import Job

    folder = tmp_path / "job"
    folder.mkdir()
    for name, text in marks.items():
        (folder / name).write_text(text)
    fake_squeue(tmp_path, f"42|{state}|None|n1|cpu|1|ada|2026-12-02T09:00:00|x\\n")
    job = Job(id="j", scheduler_id="42", folder=str(folder), status="running", node="n1", reason="")
    change = SlurmBackend(str(tmp_path)).statuses([job])["j"]
    assert change["status"] == status
    assert change.get("restartable", False) is restartable, change
