"""Scheduler commands per poll interval with 20 servers: stock batchspawner vs ClusterLab.

Submits 20 real Slurm jobs (on the 2-core all-in-one node 2 run and 18 wait;
the hub polls a waiting job exactly as a running one), then gives each job a
spawner, of batchspawner's stock ``SlurmSpawner`` and of ClusterLab's
``FixedSlurmSpawner`` (the poll path of the Slurm backend). For several poll
intervals every spawner calls ``poll()`` once per interval, spread over it as
JupyterHub's per-server timers are. ``squeue`` is reached through a wrapper
that counts its calls. Prints the commands per interval for both, side by side.

Needs root and a running Slurm (`make slurm`).

    .venv/bin/python tests/benchmarks/slurm_poll_commands.py [--servers 20 --intervals 5 --interval 2]
"""

import argparse
import asyncio
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import batchspawner
from clusterlab_spawner.slurm import FixedSlurmSpawner
from jupyterhub.objects import Hub

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from slurm_commands import calls, counting_bin  # noqa: E402

async def poll_for(spawners, intervals: int, interval: float) -> None:
    """Each spawner polls once per interval, the spawners spread evenly over it."""
    step = interval / len(spawners)
    for _ in range(intervals):
        for spawner in spawners:
            status = await spawner.poll()
            assert status is None, f"job {spawner.job_id} reported gone"
            await asyncio.sleep(step)


async def measure(make_spawner, job_ids, folder, intervals, interval) -> float:
    before = calls(folder)
    await poll_for([make_spawner(job_id) for job_id in job_ids], intervals, interval)
    return (calls(folder) - before) / intervals


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=20)
    parser.add_argument("--intervals", type=int, default=5)
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args()
    job_ids = [
        subprocess.run(
            ["sbatch", "--parsable", "--job-name=clusterlab-bench", "--mem=10M", "--output=/dev/null",
             "--wrap=sleep 600"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        for _ in range(args.servers)
    ]
    user = types.SimpleNamespace(name="root", url="/user/root/", escaped_name="root", id=0, spawners={})
    hub = Hub()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = counting_bin(Path(tmp))

            def stock(job_id):
                spawner = batchspawner.SlurmSpawner(
                    user=user, hub=hub, exec_prefix="", poll_interval=int(args.interval),
                    batch_query_cmd=f"{folder}/squeue -h -j {{job_id}} -o '%T %B'",
                )
                spawner.job_id = job_id
                return spawner

            def ours(job_id):
                spawner = FixedSlurmSpawner(
                    user=user, hub=hub, slurm_bin_dir=str(folder), poll_interval=int(args.interval),
                    submit_as_user=False,
                )
                spawner.job_id = job_id
                return spawner

            per_interval = {}
            for name, make in (("stock batchspawner", stock), ("ClusterLab", ours)):
                per_interval[name] = asyncio.run(measure(make, job_ids, folder, args.intervals, args.interval))
            print(f"{args.servers} live Slurm jobs, {args.intervals} poll intervals of {args.interval:g} s")
            for name, count in per_interval.items():
                print(f"  {name:<20} {count:5.1f} scheduler commands per poll interval")
            print(f"ratio ClusterLab / stock: {per_interval['ClusterLab'] / per_interval['stock batchspawner']:.3f} "
                  f"(goal: 1 command per interval)")
    finally:
        subprocess.run(["scancel", *job_ids], check=False)


if __name__ == "__main__":
    main()
