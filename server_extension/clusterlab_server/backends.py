"""Where jobs run: local processes or Slurm batch jobs. Small translators.

Both run the same ``job.sh`` the service writes (every value in it quoted, no
user text), and both learn how a job ended the same way: the script writes its
exit status to ``exit_code`` in the job folder, and a cancel leaves a
``cancelled`` mark first. So a job's end is known even after the scheduler has
forgotten it, or after the JupyterLab that started it was restarted.

- :class:`LocalBackend`: a detached process group (its own session), tracked
  by pid and start time so that a restart of JupyterLab neither loses nor
  kills it, and a reused pid is not mistaken for it.
- :class:`SlurmBackend`: ``sbatch --parsable``; one ``squeue`` per poll for
  all jobs (the parser is the hub's, ``clusterlab_spawner.slurm_queue``); ``scancel``.

Each also says which sizes a job could get now (``availability``): the local
backend from what this server itself was given (its cores and GPUs), Slurm from
``sinfo``, read the way the hub's size form reads it
(``clusterlab_spawner.availability``).
"""

from __future__ import annotations

import getpass
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import psutil
from clusterlab_spawner.availability import Availability, availability_from_nodes
from clusterlab_spawner.profiles import Profile
from clusterlab_spawner.slurm_queue import (
    SINFO_FORMAT,
    SQUEUE_FORMAT,
    NodeFree,
    parse_sinfo,
    parse_squeue,
    reason_in_words,
)

from . import gpus
from .store import Job, utcnow


class BackendError(RuntimeError):
    """The scheduler refused or failed; the message says what it said."""


def ended_status(folder: Path, fallback_reason: str = "") -> dict:
    """How a job that no longer runs ended, from the marks in its folder."""
    folder = Path(folder)
    changes: dict = {"end_time": utcnow()}
    code_file = folder / "exit_code"
    code = None
    if code_file.exists():
        try:
            code = int(code_file.read_text().strip())
        except ValueError:
            code = None
    changes["exit_code"] = code
    if (folder / "cancelled").exists():
        changes.update(status="cancelled", reason="cancelled by the user")
    elif code == 0:
        changes.update(status="completed", reason="")
    elif code is not None:
        changes.update(status="failed", reason=f"exited with status {code}")
    else:
        changes.update(status="failed", reason=fallback_reason or "ended without an exit status (killed?)")
    return changes


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}" if number == 1 else f"{number} {thing}s"


def local_availability(profiles: Iterable[Profile], cores: int, granted_gpus: int) -> Availability:
    """Jobs run inside this server, on what it was granted: a size that asks for more can never run here.

    More cores than the server's would only oversubscribe them (loaders and thread
    pools sized for cores that are not there), and more GPUs than it was granted
    are not there at all.
    """
    impossible = {}
    for profile in profiles:
        if profile.gpus > granted_gpus:
            impossible[profile.id] = (f"needs {_count(profile.gpus, 'GPU')}; this server was granted "
                                      f"{granted_gpus or 'none'}")
        elif profile.cpus > cores:
            impossible[profile.id] = f"needs {_count(profile.cpus, 'core')}; this server was granted {cores}"
    return Availability(None, cores, None, granted_gpus, impossible=impossible)


def server_cores() -> int:
    """The cores this process may run on (its affinity, which the hub's local pool sets)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class LocalBackend:
    name = "local"

    def availability(self, profiles: Iterable[Profile]) -> Availability:
        return local_availability(profiles, server_cores(), len(gpus.granted()))

    def directives(self, job: Job, log_path: Path, choice) -> list[str]:
        return []  # the process gets the size through its environment (threads, GPUs)

    def submit(self, job: Job, script: Path, log_path: Path, env: dict) -> str:
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                ["/bin/bash", str(script)], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=script.parent,
            )
        return f"{proc.pid}:{psutil.Process(proc.pid).create_time():.3f}"

    @staticmethod
    def _process(scheduler_id: str) -> psutil.Process | None:
        pid, _, created = scheduler_id.partition(":")
        try:
            proc = psutil.Process(int(pid))
            if abs(proc.create_time() - float(created)) > 0.01:
                return None  # the pid was reused by another process
            if proc.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(proc.pid, os.WNOHANG)  # our child: reap it
                return None
            return proc
        except (psutil.NoSuchProcess, ValueError, ChildProcessError):
            return None

    def statuses(self, jobs: list[Job]) -> dict[str, dict]:
        changes = {}
        for job in jobs:
            if self._process(job.scheduler_id) is not None:
                if job.status != "running":
                    changes[job.id] = {"status": "running", "node": os.uname().nodename,
                                       "start_time": job.start_time or utcnow()}
            else:
                changes[job.id] = ended_status(job.folder)
        return changes

    def cancel(self, job: Job) -> None:
        proc = self._process(job.scheduler_id)
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while self._process(job.scheduler_id) is not None and time.monotonic() < deadline:
                time.sleep(0.02)
            if self._process(job.scheduler_id) is not None:
                os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


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

        return sbatch_directives(choice, job_name(getpass.getuser(), job.name), str(log_path))

    def submit(self, job: Job, script: Path, log_path: Path, env: dict) -> str:
        result = self._run([f"{self.bin_dir}/sbatch", "--parsable", str(script)], env=env)
        if result.returncode != 0:
            raise BackendError(f"Slurm refused the job: {result.stderr.strip() or result.stdout.strip()}")
        return result.stdout.strip().splitlines()[-1].split(";")[0]

    def statuses(self, jobs: list[Job]) -> dict[str, dict]:
        """One squeue for every job; a failing squeue changes nothing."""
        if not jobs:
            return {}
        result = self._run([f"{self.bin_dir}/squeue", "--noheader", "--states=all", f"--format={SQUEUE_FORMAT}"])
        if result.returncode != 0:
            return {}  # Slurm not answering: keep what we knew
        known = parse_squeue(result.stdout)
        changes = {}
        for job in jobs:
            seen = known.get(job.scheduler_id)
            if seen is not None and seen.pending:
                change = {"status": "queued", "reason": reason_in_words(seen.reason)}
            elif seen is not None and seen.running:
                change = {"status": "running", "node": seen.first_node, "reason": "",
                          "start_time": job.start_time or utcnow()}
            else:
                reason = f"Slurm says {seen.state}" if seen is not None else "no longer known to Slurm"
                change = ended_status(job.folder, reason)
                if seen is not None and seen.nodes:
                    change["node"] = seen.first_node  # where it ran, even if we never saw it running
                if seen is not None and seen.state in ("TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED"):
                    change.update(status="failed", reason=f"Slurm: {seen.state.lower().replace('_', ' ')}")
            if any(getattr(job, key) != value for key, value in change.items() if key != "start_time"):
                changes[job.id] = change
        return changes

    def cancel(self, job: Job) -> None:
        result = self._run([f"{self.bin_dir}/scancel", job.scheduler_id])
        if result.returncode != 0 and "Invalid job id" not in result.stderr:
            raise BackendError(f"scancel failed: {result.stderr.strip()}")
