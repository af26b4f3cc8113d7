"""What Slurm says, asked once for the whole hub.

batchspawner runs one ``squeue -j <id>`` per server per poll, and takes any
error of it as "job gone" (upstream #315), so a slurmctld that is busy or
restarting for a few seconds makes the hub forget live servers. Here instead:

- :class:`SlurmQueue` runs one ``squeue`` for every job at a time, shared by
  all spawners of the hub process; concurrent callers that can use the same
  answer wait for it instead of running their own (:meth:`SlurmQueue.refresh`).
- A failed ``squeue`` changes nothing: the jobs keep the state they had and
  ``answered`` says the scheduler did not answer, so callers treat their job
  as unknown, never as gone.
- :class:`SlurmNodes` reads ``sinfo`` for the size form's live availability,
  cached, and refreshed in the background so the form never waits on Slurm.

The parsers are pure functions, tested without a cluster.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable

log = logging.getLogger(__name__)

# squeue's long state names (squeue -o %T)
PENDING_STATES = {
    "PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING",
    "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT",
}
RUNNING_STATES = {"RUNNING", "COMPLETING"}
# anything else (COMPLETED, CANCELLED, FAILED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY,
# PREEMPTED, BOOT_FAIL, DEADLINE, SPECIAL_EXIT, REVOKED) has ended

# %S: when it started, or for a pending job when Slurm expects it to (its backfill's estimate), or N/A.
# The name is last: a job name may hold a "|".
SQUEUE_FIELDS = ("job_id", "state", "reason", "nodes", "partition", "priority", "user", "start_time", "name")
SQUEUE_FORMAT = "|".join(("%i", "%T", "%r", "%N", "%P", "%Q", "%u", "%S", "%j"))
# Slurm prints times as SLURM_TIME_FORMAT says; the parser reads the standard one
SQUEUE_ENV = {"SLURM_TIME_FORMAT": "standard"}


def squeue_env() -> dict[str, str]:
    """The environment to run squeue in: ours, with the time format the parser reads."""
    return {**os.environ, **SQUEUE_ENV}

# Slurm's pending reasons (squeue %r) in words a researcher understands
REASONS = {
    "None": "being scheduled",
    "Priority": "jobs with a higher priority are ahead of it",
    "Resources": "waiting for free cores, memory or GPUs",
    "Dependency": "waiting for another job to finish",
    "BeginTime": "its start time has not come yet",
    "JobHeldUser": "held by its owner",
    "JobHeldAdmin": "held by an administrator",
    "ReqNodeNotAvail": "the nodes it needs are not available (down, drained or reserved)",
    "PartitionTimeLimit": "its wall time is longer than the partition allows",
    "PartitionNodeLimit": "it asks for more nodes than the partition allows",
    "PartitionConfig": "it asks for more cores, memory or GPUs than the partition's nodes have",
    "PartitionDown": "the partition is down",
    "PartitionInactive": "the partition is inactive",
    "NodeDown": "a node it needs is down",
    "BadConstraints": "no node has the features it asks for",
    "Reservation": "waiting for its reservation to start",
    "Licenses": "waiting for licenses",
    "launch failed requeued held": "its launch failed; it is held",
}
_LIMIT_REASON = re.compile(r"^(Assoc|QOS)\w*(Limit|Gres|Cpu|Mem|Node|Jobs|Wall)", re.I)


def parse_slurm_time(text: str, tz: datetime.tzinfo | None = None) -> datetime.datetime | None:
    """Slurm's ``2026-05-01T14:05:00`` (its standard format, in the local time of the
    machine squeue ran on) -> an aware datetime; ``N/A``, ``Unknown``, ``None`` or
    anything else -> None. ``tz``: the zone Slurm printed in (default: this machine's)."""
    try:
        naive = datetime.datetime.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None
    return naive.replace(tzinfo=tz) if tz is not None else naive.astimezone()


def _duration_in_words(seconds: float) -> str:
    minutes = round(seconds / 60)
    if seconds < 60:
        return "under a minute"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days = round(hours / 24)
    return f"{days} day{'s' if days != 1 else ''}"


def start_in_words(when: datetime.datetime, now: datetime.datetime | None = None) -> str:
    """'14:05 (in 3 min)', 'Tue 2 Jun 09:00 (in 2 days)', '14:05 (any moment now)' once it is due:
    the clock time in the zone of ``when`` (the hub's, as Slurm printed it)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    left = (when - now).total_seconds()
    clock = when.strftime("%H:%M")
    if when.date() != now.astimezone(when.tzinfo).date():
        clock = f"{when:%a} {when.day} {when:%b} {clock}"
    return f"{clock} (in {_duration_in_words(left)})" if left > 0 else f"{clock} (any moment now)"


def reason_in_words(reason: str) -> str:
    """``Resources`` -> 'waiting for free cores, memory or GPUs' (and so on)."""
    if reason in REASONS:
        return REASONS[reason]
    if _LIMIT_REASON.match(reason):
        return f"a limit of your account or QOS is reached ({reason})"
    return reason


@dataclasses.dataclass(frozen=True)
class SlurmJob:
    job_id: str
    state: str
    reason: str
    nodes: str
    partition: str
    priority: int
    user: str
    name: str
    # Slurm's %S: when a running or ended job started; a pending one's expected start, or None
    start_time: datetime.datetime | None = None

    @property
    def expected_start(self) -> datetime.datetime | None:
        """When Slurm expects this waiting job to start (its backfill's estimate), or None."""
        return self.start_time if self.pending else None

    @property
    def pending(self) -> bool:
        return self.state in PENDING_STATES

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES

    @property
    def ended(self) -> bool:
        return not (self.pending or self.running)

    @property
    def first_node(self) -> str:
        """'node[01-02]' -> 'node01'; this backend asks for one node anyway."""
        match = re.match(r"^([^\[,]+)(?:\[(\d+))?", self.nodes)
        if not match:
            return self.nodes
        return match.group(1) + (match.group(2) or "")


def parse_squeue(text: str, tz: datetime.tzinfo | None = None) -> dict[str, SlurmJob]:
    """Output of ``squeue --noheader --format=SQUEUE_FORMAT`` (with ``SQUEUE_ENV``) -> jobs by id.
    ``tz``: the zone of Slurm's times (default: this machine's, where squeue ran)."""
    jobs = {}
    for line in text.splitlines():
        parts = line.strip().split("|", len(SQUEUE_FIELDS) - 1)
        if len(parts) != len(SQUEUE_FIELDS):
            continue
        fields: dict = dict(zip(SQUEUE_FIELDS, parts))
        try:
            fields["priority"] = int(fields["priority"])
        except ValueError:
            fields["priority"] = 0
        fields["start_time"] = parse_slurm_time(fields["start_time"], tz)
        jobs[fields["job_id"]] = SlurmJob(**fields)
    return jobs


def queue_position(jobs: Iterable[SlurmJob], job: SlurmJob) -> tuple[int, int]:
    """(position, pending jobs) of a pending job among those of its partition.

    Slurm starts the highest priority first, the older job on a tie; that is
    the order here (backfill may still start a small job earlier).
    """
    ahead = [
        other for other in jobs
        if other.pending and other.partition == job.partition
    ]
    ahead.sort(key=lambda j: (-j.priority, int(j.job_id) if j.job_id.isdigit() else 0))
    ids = [j.job_id for j in ahead]
    return (ids.index(job.job_id) + 1 if job.job_id in ids else 0), len(ids)


# ----- running the commands --------------------------------------------------------------

Runner = Callable[..., Awaitable[tuple[int, str, str]]]


async def run(argv: list[str], input: str | None = None, env: dict | None = None,
              timeout: float = 30) -> tuple[int, str, str]:
    """Run a command without a shell: (exit status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(input.encode() if input is not None else None), timeout
        )
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -9, "", f"{argv[0]} did not answer within {timeout:g} s"
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


class SlurmQueue:
    """One ``squeue`` for all jobs, shared by every spawner of this process."""

    def __init__(self, squeue: str = "/usr/bin/squeue", runner: Runner = run):
        self.squeue = squeue
        self.runner = runner
        self.jobs: dict[str, SlurmJob] = {}
        self.answered = False  # did the last squeue succeed?
        self.error = ""
        self.taken_at = float("-inf")  # monotonic time the last squeue was started
        self.commands_run = 0  # for the benchmark and tests
        self._lock = asyncio.Lock()

    @property
    def argv(self) -> list[str]:
        return [self.squeue, "--noheader", "--states=all", f"--format={SQUEUE_FORMAT}"]

    async def refresh(self, max_age: float, since: float = float("-inf")) -> None:
        """Make sure the view was taken at most ``max_age`` seconds ago (and after
        ``since``, a ``time.monotonic()`` value such as the moment a job was submitted).

        Callers arriving while a squeue runs wait for it and use its answer when
        it started recently enough, so N spawners polling together cost one squeue.
        """
        wanted = max(time.monotonic() - max_age, since)
        async with self._lock:
            if self.taken_at >= wanted:
                return
            self.taken_at = time.monotonic()
            self.commands_run += 1
            status, out, err = await self.runner(self.argv, env=squeue_env())
            if status == 0:
                self.jobs = parse_squeue(out)
                if not self.answered:
                    log.info("Slurm answers again (squeue)")
                self.answered, self.error = True, ""
            else:
                # keep what we knew: a scheduler outage must not look like "every job ended"
                if self.answered:
                    log.warning("squeue failed (exit %s): %s; keeping the last known state", status, err.strip())
                self.answered, self.error = False, err.strip() or f"squeue exit status {status}"

    def position(self, job: SlurmJob) -> tuple[int, int]:
        return queue_position(self.jobs.values(), job)


# ----- nodes and partitions, for the size form -------------------------------------------------

SINFO_FORMAT = "NodeHost:|,Partition:|,CPUsState:|,Memory:|,AllocMem:|,Gres:|,GresUsed:|,StateLong:"
_GPU_COUNT = re.compile(r"gpu(?::[A-Za-z0-9_.-]+)?:(\d+)")
# node states in which nothing new starts
_UNUSABLE = re.compile(r"down|drain|fail|maint|reserved|unknown|not_responding|power", re.I)


def _gpu_count(gres: str) -> int:
    return sum(int(n) for n in _GPU_COUNT.findall(gres))


@dataclasses.dataclass
class NodeFree:
    """One node as seen from one partition: its size and what is free on it."""

    name: str
    partition: str
    default_partition: bool
    cpus: int
    free_cpus: int
    memory_mb: int
    free_memory_mb: int
    gpus: int
    free_gpus: int
    usable: bool


def parse_sinfo(text: str) -> list[NodeFree]:
    """Output of ``sinfo --noheader --Node --Format=SINFO_FORMAT``."""
    nodes = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 8:
            continue
        name, partition, cpus_state, memory, alloc_mem, gres, gres_used, state = parts[:8]
        try:
            _, idle, _, total = (int(x) for x in cpus_state.split("/"))
            memory_mb, alloc_mb = int(memory), int(alloc_mem or 0)
        except ValueError:
            continue
        gpus = _gpu_count(gres)
        nodes.append(NodeFree(
            name=name,
            partition=partition.rstrip("*"),
            default_partition=partition.endswith("*"),
            cpus=total,
            free_cpus=idle,
            memory_mb=memory_mb,
            free_memory_mb=max(0, memory_mb - alloc_mb),
            gpus=gpus,
            free_gpus=max(0, gpus - _gpu_count(gres_used)),
            usable=not _UNUSABLE.search(state),
        ))
    return nodes


class SlurmNodes:
    """``sinfo``, cached for ``max_age`` seconds and refreshed in the background."""

    def __init__(self, sinfo: str = "/usr/bin/sinfo", runner: Runner = run, max_age: float = 10):
        self.sinfo = sinfo
        self.runner = runner
        self.max_age = max_age
        self.nodes: list[NodeFree] | None = None  # None: never answered yet
        self.taken_at = float("-inf")
        self.error = ""
        self._task: asyncio.Task | None = None

    @property
    def argv(self) -> list[str]:
        return [self.sinfo, "--noheader", "--Node", f"--Format={SINFO_FORMAT}"]

    async def _refresh(self) -> None:
        self.taken_at = time.monotonic()
        status, out, err = await self.runner(self.argv, timeout=10)
        if status == 0:
            self.nodes, self.error = parse_sinfo(out), ""
        else:
            self.error = err.strip() or f"sinfo exit status {status}"

    def refresh_soon(self) -> asyncio.Task | None:
        """Start a refresh in the background if the cache is old; never waits."""
        if self._task is None or self._task.done():
            if time.monotonic() - self.taken_at >= self.max_age:
                self._task = asyncio.ensure_future(self._refresh())
        return self._task

    async def first_answer(self, timeout: float) -> None:
        """Wait (briefly) for the very first sinfo after the hub started."""
        task = self.refresh_soon()
        if self.nodes is None and task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                pass
