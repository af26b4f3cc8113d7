"""Running templates as real jobs on the local backend, for the template tests.

A template test builds a service over a workspace that holds the demo data,
submits a job as a user would, and waits for its end. ``rerun_in_place``
starts a job's own ``job.sh`` again on the same folder, as a Slurm requeue
does after a node failure: the template must resume from its checkpoint.
``read_only`` and ``unchanged`` check that a template leaves its inputs (a
dataset, an earlier job's output: mounted read-only) as they were.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import stat
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


def tree_state(folder: Path) -> dict[str, object]:
    """Every entry under ``folder``: a file's size, mtime and sha256, a folder's mtime (an entry added or
    removed changes it)."""
    root = folder.resolve()  # an input is a link to the frozen version
    state: dict[str, object] = {}
    for dirpath, _, filenames in os.walk(root):
        here = Path(dirpath)
        state[here.relative_to(root).as_posix() + "/"] = here.stat().st_mtime_ns
        for name in filenames:
            info = (here / name).stat()
            digest = hashlib.sha256((here / name).read_bytes()).hexdigest()
            state[(here / name).relative_to(root).as_posix()] = (info.st_size, info.st_mtime_ns, digest)
    return state


@contextlib.contextmanager
def unchanged(*folders: Path):
    """Assert that the block changes nothing under ``folders``: no file written, added or removed.

    CI runs the tests as root, whom no permission bit stops: this is what shows that a template does not
    even try to write into its inputs."""
    before = [tree_state(folder) for folder in folders]
    yield
    for folder, state in zip(folders, before):
        after = tree_state(folder)
        changed = sorted(k for k in state.keys() | after.keys() if state.get(k) != after.get(k))
        assert not changed, f"{folder} changed: {changed[:10]}"


def _set_writable(folder: Path, writable: bool) -> None:
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@contextlib.contextmanager
def read_only(*folders: Path):
    """``folders`` without write permission for the block (chmod -R a-w, as an input is mounted), and
    ``unchanged``; writable again afterwards, so that the test's temporary folders can be removed."""
    for folder in folders:
        _set_writable(folder, False)
    try:
        with unchanged(*folders):
            yield
    finally:
        for folder in folders:
            _set_writable(folder, True)
