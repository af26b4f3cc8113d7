"""Job service benchmarks, each measured side by side with its baseline in one run.

1. Submit latency: POST /clusterlab/api/jobs on a real jupyter server with the
   Slurm backend, against a raw `sbatch --wrap` of the same size, alternating
   (median of the differences; goal <= 30 ms).
2. GET /clusterlab/api/jobs with 1,000 jobs in the store: the server's own
   request time from its log (median; goal <= 50 ms), for a page of 100 and
   for all 1,000.
3. Scheduler calls per poll with 200 Slurm jobs: ClusterLab's refresh against
   a per-job `squeue -j` loop (goal: 1).

1 and 3 need root and a running Slurm (`make slurm`); 2 runs anywhere.

    .venv/bin/python tests/benchmarks/jobs_service.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from jupyter_server_process import PROFILES, JupyterServer  # noqa: E402


def slurm_here() -> bool:
    return os.geteuid() == 0 and subprocess.run(["sinfo"], capture_output=True).returncode == 0


def bench_submit(tmp: Path, rounds: int) -> None:
    (tmp / "submit" / "workspace").mkdir(parents=True)
    (tmp / "submit" / "workspace" / "noop.py").write_text("pass\n")
    server = JupyterServer(tmp / "submit", backend="slurm", poll_interval=5).start()
    ids = []
    try:
        api_ms, raw_ms = [], []
        for i in range(rounds + 1):  # the first pair warms up
            order = ("api", "raw") if i % 2 == 0 else ("raw", "api")
            for side in order:
                start = time.perf_counter()
                if side == "api":
                    response = server.call("POST", "jobs", json={
                        "template": "python-script", "name": f"bench{i}", "params": {"script": "noop.py"},
                        "profile": "cpu-small", "hours": 0.25})
                    assert response.status_code == 201, response.text
                    ids.append(response.json()["scheduler_id"])
                    elapsed = time.perf_counter() - start
                    (api_ms if i else []).append(elapsed * 1000)
                else:
                    out = subprocess.run(
                        ["sbatch", "--parsable", "--partition=cpu", "--cpus-per-task=1", "--mem=2048M",
                         "--time=15", "--output=/dev/null", "--wrap=true"],
                        capture_output=True, text=True, check=True).stdout
                    ids.append(out.strip())
                    elapsed = time.perf_counter() - start
                    (raw_ms if i else []).append(elapsed * 1000)
        differences = [a - r for a, r in zip(api_ms, raw_ms)]
        print(f"1. submit: API median {statistics.median(api_ms):.1f} ms, raw sbatch --wrap median "
              f"{statistics.median(raw_ms):.1f} ms; API - raw: median {statistics.median(differences):.1f} ms "
              f"over {rounds} alternating pairs (goal <= 30 ms)")
    finally:
        subprocess.run(["scancel", *ids], capture_output=True)
        server.stop()


def bench_list(tmp: Path, rounds: int) -> None:
    from clusterlab_server.store import Job, JobStore

    root = tmp / "list"
    store = JobStore(root / "jobs" / "jobs.sqlite")
    now = datetime.datetime.now(datetime.timezone.utc)
    with store.session.begin() as s:
        for i in range(1000):
            s.add(Job(id=f"20260101-000000-{i:06x}", name=f"job{i}", template="python-script",
                      template_version="1", params={"script": "train.py", "args": [str(i)]},
                      profile="cpu-small", hours=1, backend="local", folder=str(root / "jobs" / str(i)),
                      status=("completed", "failed", "cancelled")[i % 3], exit_code=i % 2,
                      submit_time=now - datetime.timedelta(seconds=i), end_time=now))
    server = JupyterServer(root, poll_interval=5, log_level="DEBUG").start()
    try:
        for limit in (100, 1000):
            for _ in range(rounds + 1):
                response = server.call("GET", "jobs", params={"limit": limit})
                assert response.status_code == 200 and response.json()["total"] == 1000
            times = server.request_times_ms(f"jobs?limit={limit}")[1:]
            print(f"2. GET /jobs?limit={limit} with 1,000 jobs stored: server-side median "
                  f"{statistics.median(times):.1f} ms over {len(times)} requests (goal <= 50 ms)")
    finally:
        server.stop()


def bench_poll(tmp: Path, jobs: int = 200) -> None:
    from clusterlab_server.service import JobService, Settings

    root = tmp / "poll"
    (root / "workspace").mkdir(parents=True)
    (root / "workspace" / "sleepy.py").write_text("import time\ntime.sleep(600)\n")
    service = JobService(Settings(jobs_root=root / "jobs", workspace=root / "workspace",
                                  template_paths=[REPO / "templates"], profiles_file=PROFILES, backend="slurm"))
    submitted = [service.submit({"template": "python-script", "name": f"p{i}", "params": {"script": "sleepy.py"},
                                 "profile": "cpu-small", "hours": 0.25}) for i in range(jobs)]
    try:
        polls = 3
        before = service.backend.commands_run
        for _ in range(polls):
            service.refresh()
        ours = (service.backend.commands_run - before) / polls
        # the baseline: what a per-job poller runs for the same jobs, counted the same way
        start = time.perf_counter()
        for job in submitted:
            subprocess.run(["squeue", "--noheader", "-j", job.scheduler_id, "-o", "%T"], capture_output=True)
        per_job_seconds = time.perf_counter() - start
        start = time.perf_counter()
        service.refresh()
        ours_seconds = time.perf_counter() - start
        print(f"3. poll with {jobs} Slurm jobs: ClusterLab {ours:.0f} scheduler call(s) per poll "
              f"({ours_seconds * 1000:.0f} ms); a per-job poller {jobs} calls ({per_job_seconds * 1000:.0f} ms)")
    finally:
        subprocess.run(["scancel", *(j.scheduler_id for j in submitted)], capture_output=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if slurm_here():
            bench_submit(tmp, args.rounds)
        else:
            print("1. submit: skipped (needs root and `make slurm`)")
        bench_list(tmp, args.rounds)
        if slurm_here():
            bench_poll(tmp)
        else:
            print("3. poll: skipped (needs root and `make slurm`)")


if __name__ == "__main__":
    main()
