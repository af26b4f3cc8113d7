"""The job service on the real Slurm of `make slurm`: sbatch, one squeue per poll, scancel."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from clusterlab_server import cli
from clusterlab_server.service import JobService, Settings
from slurm_commands import calls, counting_bin
from test_hub_slurm import scontrol_job
from test_jobs_service import PROFILES, REPO, make_sized_template, make_workspace

pytestmark = pytest.mark.slurm


@pytest.fixture
def service(slurm, tmp_path):
    make_workspace(tmp_path)
    return JobService(Settings(
        jobs_root=tmp_path / "jobs", workspace=tmp_path / "workspace",
        template_paths=[REPO / "templates"], profiles_file=PROFILES, backend="slurm",
    ))


def wait_status(service, job_id, statuses, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        service.refresh()
        job = service.get(job_id)
        if job.status in statuses:
            return job
        time.sleep(0.3)
    raise TimeoutError(f"{job_id}: {service.get(job_id).status}")


def test_a_job_is_a_slurm_job_of_its_size_and_ends_completed(service):
    job = service.submit({"template": "python-script", "name": "slurm_hello",
                          "params": {"script": "src/hello.py", "args": ["on", "slurm"]},
                          "profile": "cpu-small", "hours": 0.5})
    assert job.backend == "slurm" and job.scheduler_id.isdigit()
    facts = scontrol_job(job.scheduler_id)
    assert facts["JobName"].startswith("clusterlab-") and facts["JobName"].endswith("-slurm_hello")
    assert facts["NumCPUs"] == "1" and facts["MinMemoryNode"] == "2G"
    assert facts["TimeLimit"] == "00:30:00" and facts["Partition"] == "cpu"
    assert facts["StdOut"] == str(Path(job.folder) / "log.txt")
    done = wait_status(service, job.id, ("completed", "failed"))
    assert done.status == "completed" and done.exit_code == 0 and done.node
    assert (Path(job.folder) / "output" / "result.txt").read_text() == "on slurm"
    assert "hello from ['on', 'slurm']" in service.log(job.id)["text"]


def test_a_failing_job_is_failed_with_its_exit_code(service):
    job = service.submit({"template": "python-script", "name": "fails", "params": {"script": "fails.py"}})
    done = wait_status(service, job.id, ("completed", "failed"))
    assert (done.status, done.exit_code) == ("failed", 7)


def test_cancel_is_scancel(service):
    job = service.submit({"template": "python-script", "name": "sleepy", "params": {"script": "sleepy.py"}})
    wait_status(service, job.id, ("running",))
    cancelled = service.cancel(job.id)
    deadline = time.monotonic() + 20
    while cancelled.status != "cancelled" and time.monotonic() < deadline:
        time.sleep(0.3)
        service.refresh()
        cancelled = service.get(job.id)
    assert cancelled.status == "cancelled"
    state = scontrol_job(job.scheduler_id)["JobState"]
    assert state in ("CANCELLED", "COMPLETING")


def test_one_squeue_per_poll_for_all_jobs(service):
    jobs = [service.submit({"template": "python-script", "name": f"many{i}", "params": {"script": "sleepy.py"}})
            for i in range(6)]
    try:
        before = service.backend.commands_run
        for _ in range(3):
            service.refresh()
        assert service.backend.commands_run - before == 3  # one squeue each, for six jobs
        statuses = {service.get(j.id).status for j in jobs}
        assert statuses <= {"queued", "running"} and "queued" in statuses  # two cores: most wait
        queued = next(service.get(j.id) for j in jobs if service.get(j.id).status == "queued")
        assert queued.reason  # Slurm's reason, in words
    finally:
        subprocess.run(["scancel", *(j.scheduler_id for j in jobs)], check=False)


def test_a_scheduler_outage_changes_no_status(service, tmp_path):
    job = service.submit({"template": "python-script", "name": "sleepy", "params": {"script": "sleepy.py"}})
    try:
        wait_status(service, job.id, ("running", "queued"))
        before = service.get(job.id).status
        service.backend.bin_dir = str(tmp_path / "no-slurm-here")  # every squeue fails
        assert service.refresh() == 0
        assert service.get(job.id).status == before
    finally:
        subprocess.run(["scancel", job.scheduler_id], check=False)


def job_folders(service) -> list[str]:
    return [p.name for p in service.settings.jobs_root.iterdir() if not p.name.startswith("jobs.sqlite")]


def test_the_cli_refuses_a_size_no_node_could_ever_run_and_picks_one_that_can(service, tmp_path, capsys):
    """gpu-4 (16 cores, 4 GPUs) fits no node of the test Slurm, so sinfo says impossible; cpu-small fits."""
    settings = service.settings
    base = ["--jobs-root", str(settings.jobs_root), "--workspace", str(settings.workspace), "--profiles",
            str(PROFILES), "--backend", "slurm", "--templates", str(make_sized_template(tmp_path, "gpu-4"))]
    hello = ["--name", "sized", "-p", "script=src/hello.py"]
    assert cli.main([*base, "submit", "python-script", *hello, "--profile", "gpu-4"]) == 2
    never = "gpu-4 cannot run here: needs 16 cores · 64 GB · 4 GPUs; the largest node of partition gpu has "
    assert capsys.readouterr().err.startswith(f"clusterlab: error: profile: {never}")
    assert service.store.list()[1] == 0 and job_folders(service) == []

    assert cli.main([*base, "submit", "sized-script", *hello, "--json"]) == 0  # its default is gpu-4
    out, err = capsys.readouterr()
    job = json.loads(out)
    assert (job["profile"], job["backend"]) == ("cpu-small", "slurm")
    assert scontrol_job(job["scheduler_id"])["NumCPUs"] == "1"
    assert err.startswith("clusterlab: size cpu-small: the first size that can run here; the template's default, "
                          "gpu-4, cannot: needs 16 cores")
    assert wait_status(service, job["id"], ("completed", "failed")).status == "completed"


def test_without_sinfo_nothing_is_refused_beforehand_and_slurm_answers(service, tmp_path):
    commands = counting_bin(tmp_path / "bin")
    (commands / "sinfo").write_text(f"#!/bin/sh\necho sinfo >> {commands / 'calls.log'}\n"
                                    "echo 'sinfo: Unable to contact slurm controller' >&2\nexit 1\n")
    service.backend.bin_dir = str(commands)
    job = service.submit({"template": "python-script", "name": "huge", "params": {"script": "src/hello.py"},
                          "profile": "gpu-4"})
    try:
        assert calls(commands, "sbatch") == 1 and calls(commands, "sinfo") == 1
        queued = wait_status(service, job.id, ("queued",))
        assert queued.reason == "it asks for more cores, memory or GPUs than the partition's nodes have"
    finally:
        subprocess.run(["scancel", job.scheduler_id], check=False)
