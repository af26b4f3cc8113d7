"""Running templates as real jobs on the local backend, for the template tests.

A template test builds a service over a workspace that holds the demo data,
submits a job as a user would, and waits for its end. ``rerun_in_place``
starts a job's own ``job.sh`` again on the same folder, as a Slurm requeue
does after a node failure: the template must resume from its checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from clusterlab_server.service import JobService, Settings

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "hub_config" / "profiles.yaml"


def make_service(root: Path, workspace: Path) -> JobService:
    return JobService(Settings(
        jobs_root=root / "jobs", workspace=workspace, template_paths=[REPO / "templates"],
        profiles_file=PROFILES, backend="local",
    ))


def wait_final(service: JobService, job_id: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        service.refresh()
        job = service.get(job_id)
        if job.final:
            return job
        time.sleep(0.2)
    raise TimeoutError(f"{job_id} still {service.get(job_id).status}:\n{service.log(job_id)['text'][-3000:]}")


def run(service: JobService, template: str, params: dict, name: str = "t", timeout: float = 120, **extra):
    """Submit and wait; returns the ended job (its log is in the assertion message if it failed)."""
    job = service.submit({"template": template, "name": name, "params": params, **extra})
    return wait_final(service, job.id, timeout)


def metrics(job) -> list[dict]:
    path = Path(job.folder) / "output" / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def kill_after_epochs(service: JobService, job, epochs: int, timeout: float = 120) -> None:
    """SIGKILL the job's process group once metrics.jsonl shows ``epochs`` epochs."""
    deadline = time.monotonic() + timeout
    while len(metrics(job)) < epochs:
        assert time.monotonic() < deadline, service.log(job.id)["text"][-3000:]
        assert not service.get(job.id).final, f"ended before epoch {epochs}: {service.log(job.id)['text'][-3000:]}"
        service.refresh()
        time.sleep(0.1)
    os.killpg(int(job.scheduler_id.split(":")[0]), signal.SIGKILL)


def rerun_in_place(job, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run the job's own job.sh again on the same folder (what a requeue does)."""
    folder = Path(job.folder)
    return subprocess.run(["/bin/bash", str(folder / "job.sh")], capture_output=True, text=True, timeout=timeout)
