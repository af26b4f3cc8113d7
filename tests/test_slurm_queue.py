"""The Slurm backend's pure parts: squeue/sinfo parsing, queue positions, the
shared poller's coalescing and its tolerance of scheduler outages.

The poller is driven here by a scripted command runner so that exact counts
and outages can be asserted; tests/test_hub_slurm.py does the same against
the real Slurm.
"""

import asyncio
import datetime

import pytest
from clusterlab_spawner.availability import availability_from_nodes
from clusterlab_spawner.profiles import Profile
from clusterlab_spawner.slurm_queue import (
    SQUEUE_ENV,
    SlurmQueue,
    parse_sinfo,
    parse_slurm_time,
    parse_squeue,
    queue_position,
    reason_in_words,
    start_in_words,
)

SQUEUE = """\
41|RUNNING|None|vm|gpu|4294901760|alice|2026-05-01T13:58:12|clusterlab-alice
42|RUNNING|None|node[03-04]|gpu|4294901759|bob|2026-05-01T12:00:00|clusterlab-bob
43|PENDING|Resources||gpu|4294901758|carol|2026-05-01T14:05:00|clusterlab-carol
44|PENDING|Priority||gpu|4294901757|dave|N/A|clusterlab-dave
45|PENDING|Priority||cpu|4294901790|erin|Unknown|other|with|bars
46|COMPLETED|None|vm|cpu|0|alice|2026-05-01T10:00:00|clusterlab-alice-old
garbage line
"""
CEST = datetime.timezone(datetime.timedelta(hours=2))


def test_squeue_lines_become_jobs():
    jobs = parse_squeue(SQUEUE)
    assert set(jobs) == {"41", "42", "43", "44", "45", "46"}
    assert jobs["41"].running and jobs["41"].first_node == "vm"
    assert jobs["42"].first_node == "node03"
    assert jobs["43"].pending and jobs["43"].reason == "Resources"
    assert jobs["46"].ended
    assert jobs["45"].name == "other|with|bars"  # a name may hold the separator


def test_slurm_times_are_local_and_unknown_ones_none():
    assert parse_slurm_time("2026-05-01T14:05:00", CEST) == datetime.datetime(
        2026, 5, 1, 12, 5, tzinfo=datetime.timezone.utc)
    local = parse_slurm_time("2026-05-01T14:05:00")  # this machine's zone, where squeue ran
    assert local.tzinfo is not None and local.replace(tzinfo=None) == datetime.datetime(2026, 5, 1, 14, 5)
    for unknown in ("N/A", "Unknown", "None", "", "2026-05-01 14:05", "14:05"):
        assert parse_slurm_time(unknown, CEST) is None
    assert SQUEUE_ENV == {"SLURM_TIME_FORMAT": "standard"}  # the format parse_slurm_time reads


def test_only_a_waiting_job_has_an_expected_start():
    jobs = parse_squeue(SQUEUE, CEST)
    assert jobs["43"].expected_start == datetime.datetime(2026, 5, 1, 14, 5, tzinfo=CEST)
    assert jobs["44"].expected_start is None and jobs["45"].expected_start is None  # N/A, Unknown
    assert jobs["41"].expected_start is None  # running: %S is when it started
    assert jobs["41"].start_time == datetime.datetime(2026, 5, 1, 13, 58, 12, tzinfo=CEST)


@pytest.mark.parametrize("when, words", [
    ((14, 5, 0), "14:05 (in 3 min)"),
    ((14, 2, 30), "14:02 (in under a minute)"),
    ((16, 32, 0), "16:32 (in 2 h 30 min)"),
    ((15, 2, 0), "15:02 (in 1 h)"),
    ((14, 0, 0), "14:00 (any moment now)"),  # a stale estimate: due already
])
def test_the_expected_start_in_words(when, words):
    now = datetime.datetime(2026, 5, 1, 14, 2, tzinfo=CEST)
    assert start_in_words(datetime.datetime(2026, 5, 1, *when, tzinfo=CEST), now) == words


def test_an_expected_start_on_another_day_says_which():
    now = datetime.datetime(2026, 5, 1, 23, 50, tzinfo=CEST)
    assert start_in_words(datetime.datetime(2026, 5, 2, 0, 20, tzinfo=CEST), now) == "Sat 2 May 00:20 (in 30 min)"
    assert start_in_words(datetime.datetime(2026, 5, 4, 9, 0, tzinfo=CEST), now) == "Mon 4 May 09:00 (in 2 days)"
    # now given in UTC: still the 1st in the zone Slurm printed in
    assert start_in_words(datetime.datetime(2026, 5, 1, 23, 55, tzinfo=CEST),
                          now.astimezone(datetime.timezone.utc)) == "23:55 (in 5 min)"


def test_queue_position_is_by_priority_within_the_partition():
    jobs = parse_squeue(SQUEUE)
    assert queue_position(jobs.values(), jobs["43"]) == (1, 2)
    assert queue_position(jobs.values(), jobs["44"]) == (2, 2)
    assert queue_position(jobs.values(), jobs["45"]) == (1, 1)  # another partition
    assert queue_position(jobs.values(), jobs["41"]) == (0, 2)  # running: no position


def test_pending_reasons_in_words():
    assert "free cores, memory or GPUs" in reason_in_words("Resources")
    assert "higher priority" in reason_in_words("Priority")
    assert "limit" in reason_in_words("QOSMaxGRESPerUser")
    assert reason_in_words("SomethingNew") == "SomethingNew"


class ScriptedRunner:
    """Answers squeue from a list of (status, stdout, stderr); counts the calls."""

    def __init__(self, *answers, delay=0.05):
        self.answers = list(answers)
        self.calls = 0
        self.delay = delay

    async def __call__(self, argv, **kwargs):
        self.calls += 1
        self.env = kwargs.get("env")
        await asyncio.sleep(self.delay)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


async def test_many_callers_share_one_squeue():
    runner = ScriptedRunner((0, SQUEUE, ""))
    queue = SlurmQueue(runner=runner)
    await asyncio.gather(*(queue.refresh(max_age=30) for _ in range(20)))
    assert runner.calls == 1
    await queue.refresh(max_age=30)  # still fresh
    assert runner.calls == 1
    await queue.refresh(max_age=0)  # a caller that needs a newer view gets one
    assert runner.calls == 2
    assert runner.env["SLURM_TIME_FORMAT"] == "standard"  # whatever the hub's own environment says


async def test_a_failing_squeue_keeps_what_was_known():
    runner = ScriptedRunner(
        (0, SQUEUE, ""),
        (1, "", "slurm_load_jobs error: Unable to contact slurm controller (connect failure)"),
        (0, SQUEUE, ""),
    )
    queue = SlurmQueue(runner=runner)
    await queue.refresh(max_age=0)
    assert queue.answered and queue.jobs["41"].running
    await queue.refresh(max_age=0)
    assert not queue.answered and "Unable to contact" in queue.error
    assert queue.jobs["41"].running  # not forgotten
    await queue.refresh(max_age=0)
    assert queue.answered


SINFO = """\
vm|cpu*|1/1/0/2|23081|1024|gpu:2|gpu:1|mixed
vm|gpu|1/1/0/2|23081|1024|gpu:2|gpu:1|mixed
old|gpu|0/0/8/8|64000|0|gpu:tesla:4(S:0)|gpu:tesla:0(IDX:N/A)|drained
"""


def profile(id, cpus=1, memory_gb=1, gpus=0, partition=""):
    return Profile(
        id=id, display_name=id, cpus=cpus, memory_gb=memory_gb, gpus=gpus,
        max_hours=4, default_hours=1, slurm={"partition": partition} if partition else {},
    )


def test_sinfo_lines_become_nodes():
    nodes = parse_sinfo(SINFO)
    vm_cpu, vm_gpu, old = nodes
    assert vm_cpu.default_partition and vm_cpu.partition == "cpu"
    assert (vm_gpu.cpus, vm_gpu.free_cpus, vm_gpu.gpus, vm_gpu.free_gpus) == (2, 1, 2, 1)
    assert vm_gpu.free_memory_mb == 23081 - 1024
    assert old.gpus == 4 and not old.usable


def test_availability_says_what_fits_queues_or_never_fits():
    nodes = parse_sinfo(SINFO)
    sizes = [
        profile("small"),                                  # default partition, fits now
        profile("two-cores", cpus=2),                      # 1 core free: queues
        profile("gpu-1", gpus=1, partition="gpu"),         # fits now
        profile("gpu-2", gpus=2, partition="gpu"),         # 1 GPU free: queues
        profile("gpu-4", gpus=4, partition="gpu"),         # only the drained node has 4: queues
        profile("gpu-8", gpus=8, partition="gpu"),         # no node has 8: never
        profile("huge", memory_gb=500, partition="cpu"),   # never
        profile("nowhere", partition="missing"),           # never
    ]
    a = availability_from_nodes(nodes, sizes)
    assert (a.free_cpus, a.total_cpus, a.free_gpus, a.total_gpus) == (1, 2, 1, 2)
    assert "small" not in a.blocked and "gpu-1" not in a.blocked
    assert a.blocked["two-cores"] == "needs 2 core(s); at most 1 free now on a node of cpu"
    assert a.blocked["gpu-2"] == "needs 2 GPU(s); 1 free now in partition gpu"
    assert "gpu-4" in a.blocked and "gpu-4" not in a.impossible
    assert "the largest node of partition gpu has 8 cores, 62 GB, 4 GPUs" in a.impossible["gpu-8"]
    assert "huge" in a.impossible
    assert a.impossible["nowhere"] == "partition missing does not exist"
    # the job service's reading of the same answer (GET /clusterlab/api/profiles)
    assert a.state("small") == {"state": "free", "reason": ""}
    assert a.state("gpu-2") == {"state": "queue", "reason": a.blocked["gpu-2"]}
    assert a.state("nowhere") == {"state": "impossible", "reason": "partition missing does not exist"}


def test_the_hub_backends_still_find_availability_where_they_did():
    from clusterlab_spawner import availability, spawner

    assert spawner.Availability is availability.Availability


@pytest.mark.parametrize("state", ["down*", "drained", "fail", "maint"])
def test_unusable_node_states(state):
    (node,) = parse_sinfo(f"n1|cpu*|0/4/0/4|8000|0|(null)|gpu:0|{state}\n")
    assert not node.usable
