"""Slurm's expected start of a waiting job, on the real Slurm of `make slurm` (2 cores, 2 fake GPUs).

Both GPUs are held by jobs of a known time limit; what must wait then gets Slurm's
backfill estimate (the end of the first holder), and the job service's job JSON and
the hub's spawn page say it, from the one squeue per poll they already run. The
estimate comes with Slurm's next backfill pass (bf_interval: 30 s unless the
all-in-one sets less), so each test waits up to a minute for it.
"""

from __future__ import annotations

import datetime
import re
import subprocess
import time

import pytest
import test_hub_slurm
from clusterlab_server.service import JobService, Settings
from clusterlab_spawner.slurm_queue import parse_slurm_time
from slurm_commands import calls
from test_hub_slurm import PROFILES, job_id_of, progress_events, scontrol_job
from test_jobs_service import REPO, make_workspace
from test_jobs_slurm import wait_status

pytestmark = pytest.mark.slurm

hub = test_hub_slurm.hub  # the hub on the real Slurm, with counted Slurm commands, for this module
HOLD_MINUTES = 3  # the holders' time limit: the waiting job's estimate is within it
BACKFILL_WAIT = 75  # s: Slurm's default bf_interval is 30 s; a busy 2-core machine is slower


def slurm_time(text: str) -> datetime.datetime:
    when = parse_slurm_time(text)
    assert when is not None, text
    return when


@pytest.fixture
def gpus_held(slurm):
    """Both GPUs (and both cores) taken by two jobs of HOLD_MINUTES: yields (their ids, when each ends at the
    latest, earliest first)."""
    ids = [subprocess.run(["sbatch", "--parsable", "--partition=gpu", "--gres=gpu:1", "--cpus-per-task=1",
                           "--mem=100M", f"--time={HOLD_MINUTES}", "--job-name=hold-gpu", "--output=/dev/null",
                           "--wrap=sleep 600"], capture_output=True, text=True, check=True).stdout.strip()
           for _ in range(2)]
    try:
        deadline = time.monotonic() + 60  # other tests' jobs may hold the node a moment
        while any(scontrol_job(i)["JobState"] != "RUNNING" for i in ids):
            assert time.monotonic() < deadline, [scontrol_job(i)["JobState"] for i in ids]
            time.sleep(0.3)
        yield ids, sorted(slurm_time(scontrol_job(i)["EndTime"]) for i in ids)
    finally:
        subprocess.run(["scancel", *ids], check=False)


def others_in_queue(ours) -> list[str]:
    """Jobs in Slurm's queue but ``ours`` (other tests' on a shared machine, whose plans move our estimate)."""
    out = subprocess.run(["squeue", "--noheader", "--format=%i"], capture_output=True, text=True, check=True).stdout
    return sorted(set(out.split()) - set(ours))


@pytest.fixture
def service(slurm, tmp_path):
    workspace = make_workspace(tmp_path)
    (workspace / "hold.py").write_text("import time\nprint('running', flush=True)\ntime.sleep(600)\n")
    return JobService(Settings(
        jobs_root=tmp_path / "jobs", workspace=workspace, template_paths=[REPO / "templates"],
        profiles_file=PROFILES, backend="slurm",  # the test sizes: gpu-1 is 1 core, 1 GB, 1 GPU
    ))


def test_a_waiting_job_says_when_slurm_expects_it_to_start(service, gpus_held):
    job = service.submit({"template": "python-script", "name": "waits_for_a_gpu", "params": {"script": "hold.py"},
                          "profile": "gpu-1", "hours": 0.5})
    try:
        before, polls = service.backend.commands_run, 0
        deadline = time.monotonic() + BACKFILL_WAIT
        while True:
            service.refresh()
            polls += 1
            waiting = service.get(job.id).to_json()
            if waiting["expected_start"] or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert service.backend.commands_run - before == polls  # one squeue a poll, estimate included
        assert waiting["status"] == "queued" and waiting["reason"]
        assert waiting["expected_start"], f"no estimate from Slurm within {BACKFILL_WAIT} s"
        expected = datetime.datetime.fromisoformat(waiting["expected_start"])
        assert expected == slurm_time(scontrol_job(job.scheduler_id)["StartTime"])  # Slurm's own, to the second
        assert expected > datetime.datetime.now(datetime.timezone.utc)
        holders, ends = gpus_held
        if not others_in_queue([*holders, job.scheduler_id]):  # (on a machine shared with other tests' jobs)
            # when the first holder reaches its time limit: within HOLD_MINUTES of the submit
            assert expected <= ends[0] + datetime.timedelta(seconds=2)
            assert expected - datetime.datetime.fromisoformat(waiting["submit_time"]) <= \
                datetime.timedelta(minutes=HOLD_MINUTES)

        # a poll that finds the same estimate writes nothing (SQLite hands the time back without its zone)
        assert service.refresh() == 0

        # running: no expected start any more
        subprocess.run(["scancel", *holders], check=True)
        running = wait_status(service, job.id, ("running",)).to_json()
        assert running["expected_start"] is None and running["node"]
    finally:
        subprocess.run(["scancel", job.scheduler_id], check=False)


def test_the_spawn_page_of_a_waiting_server_says_when_slurm_expects_it_to_start(hub, gpus_held):
    holders, ends = gpus_held
    users = ("carol", "dora")
    for user in users:
        response = hub.api(hub.tokens[user]).post(hub.server_url(user), json={"profile": "gpu-1", "hours": 1})
        assert response.status_code == 202, response.text
    try:
        squeues_before = calls(hub.commands, "squeue")
        started = time.monotonic()
        said = {}
        def with_both_queued_and_expected(event):  # the page shows every step: wait for this one
            message = event.get("message", "")
            queued = re.search(r"position \d+ of (\d+)", message)
            return "Slurm expects" in message and bool(queued) and int(queued.group(1)) >= len(users)

        for user in users:
            left = BACKFILL_WAIT - (time.monotonic() - started)
            events = progress_events(hub, user, until=with_both_queued_and_expected, timeout=max(left, 5))
            said[user] = events[-1]["message"]
            assert "Slurm expects it to start at" in said[user], [e["message"] for e in events]
        # Slurm's own estimate, in the hub's local time (the zone Slurm prints in), beside the reason
        ids = {user: job_id_of(hub, user) for user in users}
        expected = {user: slurm_time(scontrol_job(ids[user])["StartTime"]) for user in users}
        first, second = sorted(users, key=lambda user: expected[user])
        for user in users:
            assert f"; Slurm expects it to start at {expected[user]:%H:%M} (in " in said[user], said[user]
        if not others_in_queue([*holders, *ids.values()]):  # (on a machine shared with other tests' jobs)
            # the first in line gets a GPU when the first holder reaches its time limit
            assert re.search(r"position 1 of 2: (waiting for free cores, memory or GPUs|being scheduled); "
                             r"Slurm expects", said[first]), said[first]
            assert expected[first] <= ends[0] + datetime.timedelta(seconds=2)
            assert re.search(r"\(in (under a minute|[1-3] min)\) \(asked for 1 core", said[first]), said[first]
            # the second waits behind it (here: until the first one's hour is up; Slurm's backfill plans whole nodes)
            assert "position 2 of 2: jobs with a higher priority are ahead of it; Slurm expects" in said[second]
        assert expected[second] >= expected[first]
        # waiting together, both servers were answered by the one shared squeue: a poll of them costs one,
        # and it is the same query as ever (no `squeue --start`, no `-j <id>` per server)
        seconds = time.monotonic() - started
        log = (hub.commands / "calls.log").read_text().splitlines()
        queries = [line for line in log if line.startswith("squeue ")][squeues_before:]
        assert len(queries) <= seconds / 0.2 * 1.1 + 2, (len(queries), seconds)  # startup_poll_interval 0.2 s
        assert len(set(queries)) == 1 and "--states=all" in queries[0] and "--start" not in queries[0].split()
    finally:
        for user in users:
            hub.stop_server(hub.admin_api, user)
