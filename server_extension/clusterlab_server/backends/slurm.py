"""Jobs as Slurm batch jobs: ``sbatch --parsable``; one ``squeue`` per poll for all
jobs (the parser is the hub's, ``clusterlab_spawner.slurm_queue``); ``scancel``.
Sizes come from ``sinfo``, read the way the hub's size form reads it
(``clusterlab_spawner.availability``).
"""

from __future__ import annotations

import datetime
import getpass
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from clusterlab_spawner.availability import Availability, availability_from_nodes
from clusterlab_spawner.profiles import Profile
from clusterlab_spawner.slurm_queue import (
    SINFO_FORMAT,
    SQUEUE_FORMAT,
    NodeFree,
    parse_sinfo,
    parse_squeue,
    reason_in_words,
    squeue_env,
)

from ..store import Job, utcnow
from ..training import expand_nodelist
from .common import BackendError, ended_status


def same_instant(stored: datetime.datetime | None, new: datetime.datetime | None) -> datetime.datetime | None:
    """``new`` in UTC, or ``stored`` itself when it is the same instant: SQLite hands a stored time back
    without its zone, and a poll that finds nothing new must change nothing."""
    if new is None:
        return None
    new = new.astimezone(datetime.timezone.utc)
    if stored is not None and (stored if stored.tzinfo else stored.replace(tzinfo=datetime.timezone.utc)) == new:
        return stored
    return new


# ends Slurm inflicted, which a restart from the checkpoint may get past; a TIMEOUT is the hours asked for
SLURM_ENDS_NOT_ITS_OWN = ("OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL")


def node_names(seen) -> str:
    """Every node a job runs (or ran) on, as the job's card lists them: ``node1,node2``."""
    return ",".join(expand_nodelist(seen.nodes)) if seen.nodes else ""


class SlurmBackend:
    name = "slurm"

    def __init__(self, bin_dir: str = "/usr/bin", nodes_max_age: float = 10):
        self.bin_dir = bin_dir
        self.commands_run = 0  # scheduler calls, for tests and benchmarks
        self.nodes_max_age = nodes_max_age  # seconds a sinfo answer (or failure) is reused
        self._nodes: tuple[float, list[NodeFree] | None, str] = (float("-inf"), None, "")
        self._nodes_lock = threading.Lock()

    def _run(self, argv: list[str], timeout: float = 30, env: dict | None = None) -> subprocess.CompletedProcess:
        self.commands_run += 1
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
        except (OSError, subprocess.TimeoutExpired) as e:
            return subprocess.CompletedProcess(argv, 1, "", str(e))

    def nodes(self) -> tuple[list[NodeFree] | None, str]:
        """(sinfo's nodes, '') or (None, why not), at most one sinfo per ``nodes_max_age`` seconds."""
        with self._nodes_lock:  # callers at once wait for one sinfo
            taken_at, nodes, error = self._nodes
            if time.monotonic() - taken_at >= self.nodes_max_age:
                result = self._run([f"{self.bin_dir}/sinfo", "--noheader", "--Node", f"--Format={SINFO_FORMAT}"],
                                   timeout=10)
                if result.returncode == 0:
                    nodes, error = parse_sinfo(result.stdout), ""
                else:
                    nodes, error = None, result.stderr.strip() or f"sinfo exit status {result.returncode}"
                self._nodes = (time.monotonic(), nodes, error)
            return nodes, error

    def availability(self, profiles: Iterable[Profile]) -> Availability:
        profiles = list(profiles)
        nodes, error = self.nodes()
        if nodes is None:
            reason = f"Slurm's sinfo failed ({error}); a job waits in the queue until it fits"
            return Availability(None, None, None, None, blocked={p.id: reason for p in profiles})
        return availability_from_nodes(nodes, profiles)

    def directives(self, job: Job, log_path: Path, choice) -> list[str]:
        from clusterlab_spawner.slurm_directives import job_name, sbatch_directives

        # requeued by Slurm when a node fails under it: it resumes from its checkpoint on another node
        return sbatch_directives(choice, job_name(getpass.getuser(), job.name), str(log_path), requeue=True)

    def launcher(self, choice) -> list[str]:
        """What starts a size of several nodes: srun, one process per GPU (or per node) on every node;
        a task that fails ends the others rather than leaving them waiting at a collective."""
        return [f"{self.bin_dir}/srun", "--kill-on-bad-exit=1"] if choice.profile.multi_node else []

    def submit(self, job: Job, script: Path, log_path: Path, env: dict) -> str:
        # append: a restart (the same job.sh and log.txt) keeps the log of the runs before it
        result = self._run([f"{self.bin_dir}/sbatch", "--parsable", "--open-mode=append", str(script)], env=env)
        if result.returncode != 0:
            raise BackendError(f"Slurm refused the job: {result.stderr.strip() or result.stdout.strip()}")
        return result.stdout.strip().splitlines()[-1].split(";")[0]

    def statuses(self, jobs: list[Job]) -> dict[str, dict]:
        """One squeue for every job; a failing squeue changes nothing."""
        if not jobs:
            return {}
        result = self._run([f"{self.bin_dir}/squeue", "--noheader", "--states=all", f"--format={SQUEUE_FORMAT}"],
                           env=squeue_env())
        if result.returncode != 0:
            return {}  # Slurm not answering: keep what we knew
        known = parse_squeue(result.stdout)
        changes = {}
        for job in jobs:
            seen = known.get(job.scheduler_id)
            if seen is not None and seen.pending:
                # Slurm's backfill estimate, once it has one (within bf_interval of the submit)
                change = {"status": "queued", "reason": reason_in_words(seen.reason),
                          "expected_start": same_instant(job.expected_start, seen.expected_start)}
            elif seen is not None and seen.running:
                change = {"status": "running", "node": node_names(seen), "reason": "",
                          "start_time": job.start_time or utcnow()}
            else:
                reason = f"Slurm says {seen.state}" if seen is not None else "no longer known to Slurm"
                change = ended_status(job.folder, reason)
                if seen is not None and seen.nodes:
                    change["node"] = node_names(seen)  # where it ran, even if we never saw it running
                if seen is not None and seen.state in SLURM_ENDS_NOT_ITS_OWN + ("TIMEOUT",):
                    change.update(status="failed", reason=f"Slurm: {seen.state.lower().replace('_', ' ')}",
                                  restartable=seen.state in SLURM_ENDS_NOT_ITS_OWN)
                elif seen is not None and seen.state == "CANCELLED" and change["status"] == "failed":
                    # a scancel outside ClusterLab (ours marks the folder first): somebody meant it to stop
                    change.update(status="cancelled", reason="cancelled in Slurm (scancel), not through ClusterLab",
                                  restartable=False)
            change.setdefault("expected_start", None)  # only a waiting job has one
            change.update(self._requeued(job, seen, change))
            if any(getattr(job, key) != value for key, value in change.items()
                   if key not in ("start_time", "restartable")):
                changes[job.id] = change
        return changes

    def _requeued(self, job: Job, seen, change: dict) -> dict:
        """What to record when Slurm requeued a job (``--requeue``: its node failed under it): seen as a job
        we knew running that waits again, or from the ``requeues`` its own script wrote when it started
        again (SLURM_RESTART_COUNT), in case no poll saw it waiting. Slurm's own restart, not ours: it keeps
        its job id, and it resumes from its checkpoint."""
        count = job.requeues or 0
        written = Path(job.folder) / "requeues"
        try:
            said = int(written.read_text().strip()) if written.exists() else 0
        except (OSError, ValueError):
            said = 0
        waits_again = job.status == "running" and seen is not None and seen.pending
        new = max(said, count + 1 if waits_again else count)
        facts: dict = {}
        if new > count:
            nodes, _ = self.nodes()
            down = {n.name for n in nodes or [] if not n.usable}
            lost = [name for name in (job.node or "").split(",") if name in down]
            why = f"node {', '.join(lost)} failed" if lost else "Slurm requeued it"
            history = [*(job.restart_history or []),
                       {"time": utcnow().isoformat(), "reason": f"requeued by Slurm: {why}; it continues from its "
                                                                "checkpoint"}]
            facts = {"requeues": new, "restart_history": history}
        if new and change.get("status") == "queued" and seen is not None and seen.reason == "BeginTime":
            # Slurm holds a requeued job back for a while (its requeue delay): say that, not "start time"
            facts["reason"] = "requeued by Slurm after a node failure; it starts again once Slurm's requeue delay " \
                              "has passed, from its last checkpoint"
        return facts

    def cancel(self, job: Job) -> None:
        result = self._run([f"{self.bin_dir}/scancel", job.scheduler_id])
        if result.returncode != 0 and "Invalid job id" not in result.stderr:
            raise BackendError(f"scancel failed: {result.stderr.strip()}")
