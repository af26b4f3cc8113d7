"""ClusterLab on a real Slurm of a head and two compute nodes (`make slurm-cluster`: each node a
slurmd in a network namespace of its own, the hub and slurmctld on the head's bridge address).

Servers land on compute nodes and reach the hub at 10.77.0.1; the proxy reaches them at their
node's address; a job from a JupyterLab on one node runs on the other; a 2-node data-parallel
training learns as a 1-node one does; and when a node dies (its slurmd and every process in its
namespace killed), its job is requeued and finishes on the other node from its checkpoint, and
the JupyterLab that was there is reported as lost. Slow: one module, one hub, run once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import accounts
import pytest
from hub import Hub
from multinode import CONF, HEAD_IP, NODES, kill_node, revive_node, slurm_env, wait_node_state

PROFILES = Path("/etc/clusterlab-netns/profiles.yaml")
DEMO = {"epochs": 5, "image_size": 32, "batch_size": 16, "seed": 0}

pytestmark = pytest.mark.slurm


def squeue_job(job_id: str) -> dict:
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True,
                         env=slurm_env()).stdout
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


@pytest.fixture(scope="module")
def hub(multinode_cluster, tmp_path_factory):
    hub = Hub(
        tmp_path_factory.mktemp("multinode-hub"),
        env={
            "CLUSTERLAB_BACKEND": "slurm",
            "SLURM_CONF": CONF,
            "CLUSTERLAB_HUB_IP": HEAD_IP,  # the hub's API on the head's bridge address, which the nodes reach
            "CLUSTERLAB_PROFILES": str(PROFILES),
            "CLUSTERLAB_POLL_INTERVAL": "2",
        },
        extra_config="c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 3}\n",
    )
    hub.start()
    hub.tokens = {name: hub.add_user(name) for name in ("mina", "noor")}
    accounts.write_as("mina", accounts.home_of("mina") / "where.py",
                      "import socket\nprint('ran on', socket.gethostname())\n")
    yield hub
    for name in hub.tokens:
        subprocess.run(["scancel", f"--user={name}"], env=slurm_env(), capture_output=True)
    hub.stop()


@pytest.fixture(autouse=True)
def no_servers_left(request):
    yield
    if "hub" in request.fixturenames:
        hub = request.getfixturevalue("hub")
        for user in hub.tokens:
            for name in list(hub.admin_api.get(f"{hub.url}/hub/api/users/{user}").json()["servers"]):
                hub.stop_server(hub.admin_api, user, name)


def spawn(hub: Hub, user: str, profile: str) -> str:
    """Start the user's server; returns the node it runs on."""
    response = hub.api(hub.tokens[user]).post(hub.server_url(user), json={"profile": profile})
    assert response.status_code in (201, 202), response.text
    model = hub.wait_ready(user, timeout=120)
    job = squeue_job(model["state"]["job_id"])
    assert job["JobState"] == "RUNNING", job
    return job["NodeList"]


def jobs_api(hub: Hub, user: str) -> tuple:
    return hub.api(hub.tokens[user]), f"{hub.url}/user/{user}/clusterlab/api/jobs"


def wait_job(api, url: str, job_id: str, until, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = api.get(f"{url}/{job_id}").json()
        if until(job):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(1)


def cli_job(user: str, job_id: str) -> dict:
    """The job as ``clusterlab jobs`` shows it to its user on the head (a login node), after asking Slurm:
    what the user reads when no JupyterLab of theirs is running."""
    out = subprocess.run(
        ["runuser", "-u", user, "--", "env", f"SLURM_CONF={CONF}", f"{Path(sys.executable).parent}/clusterlab",
         "--backend", "slurm", "jobs", "--json"],
        capture_output=True, text=True, check=True, cwd=accounts.home_of(user)).stdout
    return next(job for job in json.loads(out)["jobs"] if job["id"] == job_id)


def wait_cli_job(user: str, job_id: str, until, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = cli_job(user, job_id)
        if until(job):
            return job
        facts = {key: job[key] for key in ("status", "reason", "node", "scheduler_id", "requeues", "restarts")}
        assert time.monotonic() < deadline, facts
        time.sleep(1)


def final(job: dict) -> bool:
    return job["status"] in ("completed", "failed", "cancelled")


def test_servers_land_on_compute_nodes_reach_the_hub_there_and_a_job_runs_on_the_other_node(hub):
    server_node = spawn(hub, "mina", "cpu-small")
    assert server_node in NODES
    api, jobs = jobs_api(hub, "mina")
    assert api.get(f"{hub.url}/user/mina/api/status").status_code == 200  # through the proxy, to the node

    # the whole of a node's two cores: not on the server's node, where one is taken
    response = api.post(jobs, json={"template": "python-script", "name": "elsewhere",
                                    "params": {"script": "where.py"}, "profile": "cpu-large"})
    assert response.status_code == 201, response.text
    job = wait_job(api, jobs, response.json()["id"], final)
    other = next(node for node in NODES if node != server_node)
    assert job["status"] == "completed" and job["node"] == other, job
    assert f"ran on {other}" in api.get(f"{jobs}/{job['id']}/log").json()["text"]

    # a GPU size on a compute node as well, for another user
    assert spawn(hub, "noor", "gpu-1") in NODES
    assert hub.api(hub.tokens["noor"]).get(f"{hub.url}/user/noor/api/status").status_code == 200


def copy_demo(user: str, demo_data: Path) -> None:
    target = accounts.home_of(user) / "demo"
    if not target.exists():
        subprocess.run(["cp", "-r", str(demo_data / "demo"), str(target)], check=True)
        accounts.give(user, target)


def metrics_of(job: dict) -> list[dict]:
    path = Path(job["folder"]) / "output" / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_two_node_training_job_learns_as_a_one_node_job_does(hub, demo_data):
    spawn(hub, "mina", "cpu-small")
    api, jobs = jobs_api(hub, "mina")
    copy_demo("mina", demo_data)
    submitted = {}
    for profile in ("cpu-small", "cpu-2node"):  # one process; two, one on each node
        response = api.post(jobs, json={"template": "image-classification-train", "name": profile.replace("-", "_"),
                                        "params": {**DEMO, "dataset": "demo/shapes"}, "profile": profile})
        assert response.status_code == 201, response.text
        submitted[profile] = response.json()["id"]
    ended = {profile: wait_job(api, jobs, job_id, final, timeout=400) for profile, job_id in submitted.items()}
    for job in ended.values():
        assert job["status"] == "completed", api.get(f"{jobs}/{job['id']}/log").json()["text"][-3000:]
    two = ended["cpu-2node"]
    assert two["node"] == "node1,node2"  # its card says on which nodes it ran
    log = api.get(f"{jobs}/{two['id']}/log").json()["text"]
    assert "data-parallel across 2 processes (node[1-2])" in log
    assert log.count("epoch 5/5:") == 1  # rank 0 alone writes the progress lines
    assert [line["epoch"] for line in metrics_of(two)] == [1, 2, 3, 4, 5]  # once per epoch: rank 0's
    output = Path(two["folder"]) / "output"
    assert (output / "checkpoints" / "last.pt").is_file() and (output / "model.pt").is_file()
    accuracy = {profile: metrics_of(job)[-1]["metrics"]["val_accuracy"] for profile, job in ended.items()}
    assert accuracy["cpu-2node"] >= 0.85 and abs(accuracy["cpu-2node"] - accuracy["cpu-small"]) <= 0.15, accuracy


def test_a_node_dies_its_job_finishes_on_the_other_from_its_checkpoint_and_its_server_is_reported(hub, demo_data):
    # placed by size, so that the dying node holds both a server and a job: mina's server on node A;
    # noor's two-core server fills node B; mina's job can only go to A
    node_a = spawn(hub, "mina", "cpu-small")
    node_b = spawn(hub, "noor", "cpu-large")
    assert node_b != node_a
    api, jobs = jobs_api(hub, "mina")
    copy_demo("mina", demo_data)
    params = {**DEMO, "epochs": 20, "image_size": 48, "dataset": "demo/shapes"}
    response = api.post(jobs, json={"template": "image-classification-train", "name": "survivor", "params": params,
                                    "profile": "cpu-small"})
    assert response.status_code == 201, response.text
    job = wait_job(api, jobs, response.json()["id"], lambda j: j["status"] == "running")
    assert job["node"] == node_a

    # a job that must wait (no node has two cores free) shows when Slurm expects it to start
    waiter = api.post(jobs, json={"template": "python-script", "name": "waiter", "profile": "cpu-large",
                                  "params": {"script": "where.py"}, "hours": 0.5}).json()
    waiting = wait_job(api, jobs, waiter["id"], lambda j: j["expected_start"] is not None, timeout=90)
    assert waiting["status"] == "queued", waiting
    assert api.delete(f"{jobs}/{waiter['id']}").json()["status"] == "cancelled"

    hub.stop_server(hub.api(hub.tokens["noor"]), "noor")  # room on B for the job once A is gone
    deadline = time.monotonic() + 120
    while len(metrics_of(job)) < 2:  # two epochs in its checkpoint
        assert time.monotonic() < deadline, api.get(f"{jobs}/{job['id']}/log").json()["text"][-2000:]
        time.sleep(0.2)
    assert len(metrics_of(job)) < 20
    killed_at = time.monotonic()
    kill_node(node_a)
    try:
        # Slurm notices (SlurmdTimeout), requeues it, waits its requeue delay, and starts it on B; mina's
        # JupyterLab died with A, so mina looks from the head, with the CLI
        requeued = wait_cli_job("mina", job["id"], lambda j: j["requeues"] >= 1, timeout=120)
        assert f"node {node_a} failed" in requeued["restart_history"][-1]["reason"], requeued
        done = wait_cli_job("mina", job["id"], final, timeout=400)
        print(f"node death to job done: {time.monotonic() - killed_at:.0f} s")
        assert done["status"] == "completed" and done["requeues"] == 1, done
        assert done["node"] == node_b
        assert [line["epoch"] for line in metrics_of(done)] == list(range(1, 21))  # the full count, each once
        log = (Path(job["folder"]) / "log.txt").read_text()
        assert "Slurm requeued this job (restart 1" in log and "resuming after epoch" in log, log[-3000:]

        # mina's JupyterLab died with A: the hub says so, and a new one starts on B
        deadline = time.monotonic() + 60
        while hub.server_model("mina") is not None:
            assert time.monotonic() < deadline, "the hub still lists a server whose node is dead"
            time.sleep(1)
        browser = hub.browser("mina", "a-long-test-password")
        page = browser.get(f"{hub.url}/hub/spawn").text
        assert f"its node {node_a} failed" in page and "keep running" in page, hub.log_tail(60)
        # where the JupyterLab's address leads now: the hub's "not running" page, saying why
        not_running = browser.get(f"{hub.url}/hub/user/mina/lab")
        assert not_running.status_code == 424 and f"its node {node_a} failed" in not_running.text
        assert spawn(hub, "mina", "cpu-small") == node_b
    finally:
        revive_node(node_a)
    wait_node_state(node_a, "idle|mix|alloc", timeout=60)
