"""Jobs as local processes: a detached process group (its own session), tracked by pid
and start time, so that a restart of JupyterLab neither loses nor kills it, and a
reused pid is not mistaken for it. Sizes come from what this server itself was
given (its cores and GPUs).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import psutil
from clusterlab_spawner.availability import Availability
from clusterlab_spawner.profiles import Profile

from .. import gpus
from ..store import Job, utcnow
from .common import ended_status


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
        if profile.multi_node:
            impossible[profile.id] = f"needs {profile.nodes} nodes; jobs here run inside this one server"
        elif profile.gpus > granted_gpus:
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

    def launcher(self, choice) -> list[str]:
        return []  # one process; several-node sizes never run here (availability says so)

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


