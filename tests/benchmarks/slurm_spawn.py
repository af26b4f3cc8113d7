"""Slurm spawn-to-ready against local spawn-to-ready, side by side in one run.

Two real hubs run at once on this machine, one on the local backend and one on
the Slurm backend of `make slurm`, with the same sizes (tests/data/slurm-profiles.yaml).
Each round spawns `cpu-1` on one, then on the other (the order alternates),
and times POST /hub/api/users/<user>/server until /user/<user>/api/status
answers 200 through the proxy (polled every 20 ms). Prints each pair and the
median ratio Slurm / local (the goal: <= 1.25).

Needs root and a running Slurm (`make slurm`).

    .venv/bin/python tests/benchmarks/slurm_spawn.py [--pairs 7]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import accounts  # noqa: E402
from hub import Hub  # noqa: E402
from spawn_latency import wait_200  # noqa: E402

PROFILES = Path(__file__).resolve().parents[1] / "data" / "slurm-profiles.yaml"


def time_spawn(hub, api, user):
    start = time.perf_counter()
    response = api.post(hub.server_url(user), json={"profile": "cpu-1"})
    assert response.status_code in (201, 202), response.text
    wait_200(api, f"{hub.url}/user/{user}/api/status", timeout=120)
    elapsed = time.perf_counter() - start
    hub.stop_server(api, user)
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        common = {"CLUSTERLAB_PROFILES": str(PROFILES), "CLUSTERLAB_CREATE_UNIX_USERS": "1"}
        local = Hub(Path(tmp) / "local", env={**common, "CLUSTERLAB_BACKEND": "local"}).start()
        slurm = Hub(Path(tmp) / "slurm", env={**common, "CLUSTERLAB_BACKEND": "slurm"}).start()
        try:
            sides = {
                "local": (local, local.api(local.add_user("benchlocal")), "benchlocal"),
                "slurm": (slurm, slurm.api(slurm.add_user("benchslurm")), "benchslurm"),
            }
            for side in sides.values():  # warm-up, not counted
                time_spawn(*side)
            ratios = []
            print(f"{'pair':>4} {'local s':>8} {'slurm s':>8} {'ratio':>6}")
            for i in range(args.pairs):
                order = ["local", "slurm"] if i % 2 == 0 else ["slurm", "local"]
                seconds = {name: time_spawn(*sides[name]) for name in order}
                ratios.append(seconds["slurm"] / seconds["local"])
                print(f"{i + 1:>4} {seconds['local']:>8.2f} {seconds['slurm']:>8.2f} {ratios[-1]:>6.2f}")
            print(f"median Slurm / local spawn-to-ready: {statistics.median(ratios):.3f} "
                  f"over {args.pairs} alternating pairs (goal <= 1.25)")
        finally:
            local.stop()
            slurm.stop()
            accounts.remove_created()  # benchlocal, benchslurm: both hubs run them as Unix accounts


if __name__ == "__main__":
    main()
