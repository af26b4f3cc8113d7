"""The multi-node Slurm against the single-node one, side by side in one run, and a node's death.

1. submit-to-running: the job service submits a python-script job and polls until Slurm runs it,
   on the all-in-one Slurm of `make slurm` and on the head-and-two-nodes cluster of
   `make slurm-cluster`, alternating (goal: ratio <= 1.1, the network hop costs nearly nothing);
2. spawn-to-ready: two real hubs, one per cluster, spawn a one-core JupyterLab alternately
   (POST until /user/<name>/api/status answers through the proxy); on the multi-node one the
   hub's API is on the head's bridge address and the server on a compute node;
3. a node's death: a training job runs on a node, the node dies (its slurmd and every process in
   its namespace killed), and the time until the job trains again on the other node is split into
   Slurm's detection (until squeue no longer says RUNNING), Slurm's requeue delay (until it runs
   again) and our resume (until the template has loaded its checkpoint and says so).

Both "nodes" are namespaces sharing this machine's cores: no scaling figure can be measured here,
and none is printed. Needs root, `make slurm` and `make slurm-cluster`.

    .venv/bin/python tests/benchmarks/multinode.py [--pairs 9] [--no-death]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import accounts  # noqa: E402
from hub import Hub  # noqa: E402
from multinode import CONF, HEAD_IP, kill_node, revive_node, slurm_env, wait_node_state  # noqa: E402
from spawn_latency import wait_200  # noqa: E402

from clusterlab_server.demo_data import generate  # noqa: E402
from clusterlab_server.service import JobService, Settings  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SINGLE = {"conf": "", "profiles": REPO / "tests" / "data" / "slurm-profiles.yaml", "size": "cpu-1"}
MULTI = {"conf": CONF, "profiles": Path("/etc/clusterlab-netns/profiles.yaml"), "size": "cpu-small"}


@contextlib.contextmanager
def cluster(side: dict):
    """Every Slurm command of this process goes to that cluster (the job service reads os.environ)."""
    before = os.environ.get("SLURM_CONF")
    if side["conf"]:
        os.environ["SLURM_CONF"] = side["conf"]
    else:
        os.environ.pop("SLURM_CONF", None)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = before


def service_for(root: Path, side: dict) -> JobService:
    return JobService(Settings(jobs_root=root / "jobs", workspace=root, template_paths=[REPO / "templates"],
                               profiles_file=side["profiles"], backend="slurm"))


def submit_to_running(service: JobService, side: dict) -> float:
    with cluster(side):
        start = time.perf_counter()
        job = service.submit({"template": "python-script", "name": "bench", "profile": side["size"],
                              "params": {"script": "wait.py"}})
        while service.get(job.id).status != "running":
            time.sleep(0.02)
            service.refresh()
        elapsed = time.perf_counter() - start
        service.cancel(job.id)
        # the next round starts on an idle cluster: a job still completing would make it wait a scheduler pass
        while subprocess.run(["squeue", "--noheader", "-j", job.scheduler_id, "--states=R,CG"],
                             capture_output=True, text=True).stdout.strip():
            time.sleep(0.05)
    return elapsed


def time_spawn(hub: Hub, api, user: str, size: str) -> float:
    start = time.perf_counter()
    response = api.post(hub.server_url(user), json={"profile": size})
    assert response.status_code in (201, 202), response.text
    wait_200(api, f"{hub.url}/user/{user}/api/status", timeout=120)
    elapsed = time.perf_counter() - start
    hub.stop_server(api, user)
    return elapsed


def pairs(measure, sides: dict, count: int, what: str) -> None:
    """Alternating pairs; prints each, then the medians and their ratio (one pair's ratio is mostly
    which side waited for Slurm's next scheduling pass, sched_interval=2 s on both)."""
    for name in sides:  # warm-up, not counted
        measure(name)
    times: dict[str, list[float]] = {"single": [], "multi": []}
    print(f"{'pair':>4} {'1 node s':>9} {'3 nodes s':>10}")
    for i in range(count):
        order = ["single", "multi"] if i % 2 == 0 else ["multi", "single"]
        for name in order:
            times[name].append(measure(name))
        print(f"{i + 1:>4} {times['single'][-1]:>9.3f} {times['multi'][-1]:>10.3f}")
    single, multi = statistics.median(times["single"]), statistics.median(times["multi"])
    print(f"{what}: median {single:.3f} s on the single node, {multi:.3f} s on the head and two nodes: "
          f"ratio {multi / single:.3f} over {count} alternating pairs (goal <= 1.1)\n")


def squeue_state(job_id: str) -> str:
    out = subprocess.run(["squeue", "--noheader", "--states=all", "-j", job_id, "--format=%T"],
                         capture_output=True, text=True, env=slurm_env()).stdout.split()
    return out[0] if out else ""


def node_death(root: Path) -> None:
    generate(root / "demo")
    service = service_for(root, MULTI)
    with cluster(MULTI):
        job = service.submit({"template": "image-classification-train", "name": "survivor", "profile": "cpu-small",
                              "params": {"dataset": "demo/shapes", "epochs": 6, "image_size": 48,
                                         "batch_size": 16}})
        metrics = Path(job.folder) / "output" / "metrics.jsonl"
        while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
            time.sleep(0.2)
            service.refresh()
        node = service.get(job.id).node
        killed = time.perf_counter()
        kill_node(node)
        try:
            while squeue_state(job.scheduler_id) == "RUNNING":
                time.sleep(0.2)
            detected = time.perf_counter()
            while squeue_state(job.scheduler_id) != "RUNNING":
                time.sleep(0.2)
            running = time.perf_counter()
            log = Path(job.folder) / "log.txt"
            while "resuming after epoch" not in log.read_text():
                time.sleep(0.1)
            resumed = time.perf_counter()
            while service.get(job.id).status != "completed":
                assert not service.get(job.id).final, service.log(job.id)["text"][-2000:]
                time.sleep(0.5)
                service.refresh()
        finally:
            revive_node(node)
            wait_node_state(node, "idle|mix|alloc", timeout=60)
    print(f"node {node} killed -> trains again on the other node: {resumed - killed:.1f} s")
    print(f"  Slurm's detection (until squeue no longer says RUNNING): {detected - killed:.1f} s")
    print(f"  Slurm's requeue delay (requeued until running again):   {running - detected:.1f} s")
    print(f"  our resume (running again until its checkpoint is loaded): {resumed - running:.1f} s")
    print(f"  the job then completed with {len(metrics.read_text().splitlines())} epochs of metrics, each once")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=9)
    parser.add_argument("--no-death", action="store_true", help="skip the node's death (about 2 minutes)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clusterlab-bench-") as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)
        services = {"single": service_for(root / "single", SINGLE), "multi": service_for(root / "multi", MULTI)}
        for name in services:
            (root / name / "wait.py").parent.mkdir(parents=True, exist_ok=True)
            (root / name / "wait.py").write_text("import time\ntime.sleep(60)\n")
        sides = {"single": SINGLE, "multi": MULTI}
        print("submit-to-running (the job service, polling squeue every 20 ms):")
        pairs(lambda name: submit_to_running(services[name], sides[name]), sides, args.pairs, "submit-to-running")

        common = {"CLUSTERLAB_BACKEND": "slurm", "CLUSTERLAB_CREATE_UNIX_USERS": "1"}
        hubs = {
            "single": Hub(root / "hub-single", env={**common, "CLUSTERLAB_PROFILES": str(SINGLE["profiles"]),
                                                    "SLURM_CONF": None}).start(),
            "multi": Hub(root / "hub-multi", env={**common, "CLUSTERLAB_PROFILES": str(MULTI["profiles"]),
                                                  "SLURM_CONF": CONF, "CLUSTERLAB_HUB_IP": HEAD_IP}).start(),
        }
        try:
            users = {name: f"bench{name}" for name in hubs}
            apis = {name: hubs[name].api(hubs[name].add_user(users[name])) for name in hubs}
            print("spawn-to-ready (POST until the server answers through the proxy):")
            pairs(lambda name: time_spawn(hubs[name], apis[name], users[name], sides[name]["size"]),
                  sides, args.pairs, "spawn-to-ready")
        finally:
            for hub in hubs.values():
                hub.stop()
            accounts.remove_created()
        if not args.no_death:
            node_death(root / "death")
    print("\nBoth compute nodes share this machine's two cores: no scaling figure can be measured here.")


if __name__ == "__main__":
    main()
