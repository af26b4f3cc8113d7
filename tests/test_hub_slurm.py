"""The hub on the Slurm backend, against the real single-node Slurm of `make slurm`.

Every server here is a real Slurm job run as a real Unix account (alice, bob,
carol, dora: created by the hub's create_unix_users switch). What is checked
is what Slurm itself reports (squeue, scontrol) and what the server process
sees (/proc/<pid>/environ).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hub import Hub, terminal_run
from slurm_commands import calls, counting_bin

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "tests" / "data" / "slurm-profiles.yaml"
PASSWORD = "a-long-test-password"

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def hub(slurm, tmp_path_factory):
    data = tmp_path_factory.mktemp("slurm-hub")
    # the real Slurm commands, counted; in /tmp, where job users can reach them
    commands = counting_bin(Path(tempfile.mkdtemp(prefix="clusterlab-test-slurm-bin-")))
    hub = Hub(
        data,
        env={
            "CLUSTERLAB_BACKEND": "slurm",
            "CLUSTERLAB_PROFILES": str(PROFILES),
            "CLUSTERLAB_CREATE_UNIX_USERS": "1",
            "CLUSTERLAB_POLL_INTERVAL": "1",
        },
        # answer a queued spawn request (202) after 3 s rather than 10, and read sinfo afresh
        extra_config="c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 3}\n"
                     "c.SlurmClusterSpawner.availability_max_age = 1\n"
                     f"c.SlurmClusterSpawner.slurm_bin_dir = {str(commands)!r}\n",
    )
    hub.commands = commands
    hub.start()
    hub.tokens = {name: hub.add_user(name) for name in ("alice", "bob", "carol", "dora")}
    yield hub
    for user in hub.tokens:
        cancel_jobs_of(user)
    hub.stop()
    shutil.rmtree(commands, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_servers_left(request):
    yield
    if "hub" in request.fixturenames:
        hub = request.getfixturevalue("hub")
        if hub.proc:
            for user in hub.tokens:
                for name in list((hub.admin_api.get(f"{hub.url}/hub/api/users/{user}").json())["servers"]):
                    hub.stop_server(hub.admin_api, user, name)


# ----- what Slurm says --------------------------------------------------------------


def squeue(user: str) -> list[dict]:
    out = subprocess.run(
        ["squeue", "--noheader", f"--user={user}", "--format=%i|%T|%r|%j"],
        capture_output=True, text=True, check=True,
    ).stdout
    return [dict(zip(("id", "state", "reason", "name"), line.split("|"))) for line in out.splitlines()]


def node_name() -> str:
    """The all-in-one node's Slurm name (this machine's short host name)."""
    return subprocess.run(
        ["sinfo", "--noheader", "--Node", "--format=%N"], capture_output=True, text=True, check=True
    ).stdout.split()[0]


def scontrol_job(job_id: str) -> dict:
    out = subprocess.run(
        ["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True
    ).stdout
    return dict(re.findall(r"(\S+?)=(\S*)", out))


def cancel_jobs_of(user: str) -> None:
    subprocess.run(["scancel", f"--user={user}"], capture_output=True)


def job_id_of(hub: Hub, user: str, server: str = "") -> str:
    model = hub.admin_api.get(f"{hub.url}/hub/api/users/{user}").json()["servers"][server]
    return model["state"]["job_id"]


def server_environment(job_id: str) -> dict:
    """The environment of the JupyterLab process of a job, from /proc."""
    pids = subprocess.run(
        ["scontrol", "listpids", job_id], capture_output=True, text=True, check=True
    ).stdout.split()[5::5]  # the PID column, after the five-word header
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"clusterlab-singleuser" in cmdline:
                raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                return dict(item.decode().split("=", 1) for item in raw if b"=" in item)
        except OSError:
            continue
    raise AssertionError(f"no JupyterLab process found in job {job_id} (pids {pids})")


def progress_events(hub: Hub, user: str, until, timeout: float = 30) -> list[dict]:
    """The spawn page's progress events, read until ``until(event)`` is true."""
    api = hub.api(hub.tokens[user])
    events = []
    with api.get(f"{hub.url}/hub/api/users/{user}/server/progress", stream=True, timeout=timeout) as r:
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + timeout
        for line in r.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                events.append(json.loads(line[5:]))
                if until(events[-1]) or events[-1].get("failed") or events[-1].get("ready"):
                    return events
            if time.monotonic() > deadline:
                break
    return events


def spawn(hub: Hub, user: str, server: str = "", **options) -> dict:
    api = hub.api(hub.tokens[user])
    response = api.post(hub.server_url(user, server), json=options)
    assert response.status_code in (201, 202), response.text
    return hub.wait_ready(user, server, timeout=90)


# ----- the tests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "profile, hours, cpus, memory, gres, partition",
    [
        ("cpu-1", 1.5, "1", "1G", None, "cpu"),
        ("cpu-2", 0.5, "2", "1.50G", None, "cpu"),
        ("gpu-1", 1, "1", "1G", "gres:gpu:1", "gpu"),
    ],
)
def test_each_size_is_a_slurm_job_of_that_size(hub, profile, hours, cpus, memory, gres, partition):
    spawn(hub, "alice", profile=profile, hours=hours)
    job_id = job_id_of(hub, "alice")
    job = scontrol_job(job_id)
    assert job["JobState"] == "RUNNING"
    assert job["UserId"].startswith("alice(")
    assert job["JobName"] == "clusterlab-alice"
    assert job["NumCPUs"] == cpus
    assert job["MinMemoryNode"] == memory
    assert job["Partition"] == partition
    expected_time = time.strftime("%H:%M:%S", time.gmtime(hours * 3600))
    assert job["TimeLimit"] == expected_time
    assert job.get("TresPerNode", "(null)") == (gres or "(null)")
    assert job["StdOut"] == f"/home/alice/.clusterlab/logs/jupyterlab-default-{job_id}.log"

    env = server_environment(job_id)
    assert env["CLUSTERLAB_PROFILE"] == profile
    assert env["HOME"] == "/home/alice" and env["USER"] == "alice"
    if gres:
        assert env["CUDA_VISIBLE_DEVICES"] in ("0", "1")
    else:
        assert not env.get("CUDA_VISIBLE_DEVICES")

    # the server answers through the hub's proxy, as the user
    status = hub.api(hub.tokens["alice"]).get(f"{hub.url}/user/alice/api/status")
    assert status.status_code == 200

    # batchspawner's start commits the deprecated shared Spawner.db; ours does not touch it
    assert "Spawner.db is deprecated" not in hub.log_path.read_text()

    hub.stop_server(hub.api(hub.tokens["alice"]), "alice")
    assert scontrol_job(job_id)["JobState"] in ("CANCELLED", "COMPLETED", "COMPLETING")
    assert not [j for j in squeue("alice") if j["state"] in ("RUNNING", "PENDING")]


@pytest.mark.parametrize(
    "options, field",
    [
        ({"profile": "cpu-1", "gres": "gpu:2"}, "gres"),
        ({"profile": "cpu-1", "partition": "gpu"}, "partition"),
        ({"profile": "cpu-1", "options": "--gres=gpu:2"}, "options"),
        ({"profile": "cpu-1", "cmd": "rm -rf ~"}, "cmd"),
        ({"profile": "cpu-1", "hours": 100}, "hours"),
        ({"profile": "gpu-8"}, "profile"),
    ],
)
def test_smuggled_or_impossible_options_are_refused_and_nothing_is_submitted(hub, options, field):
    response = hub.api(hub.tokens["bob"]).post(hub.server_url("bob"), json=options)
    assert response.status_code == 400
    assert f"({field})" in response.json()["message"]
    assert squeue("bob") == []


@pytest.mark.parametrize("name, reason", [
    ("root", "'root' is a system account"),
    ("daemon", "'daemon' is a system account (uid 1, below min_uid 1000)"),
    ("nobody", "'nobody' is a system account"),
])
def test_system_accounts_get_no_slurm_job(hub, name, reason):
    token = hub.add_user(name, account=False)
    passwd = Path("/etc/passwd").read_text()
    response = hub.api(token).post(hub.server_url(name), json={"profile": "cpu-1"})
    assert response.status_code == 400
    assert reason in response.json()["message"] and "(user)" in response.json()["message"]
    assert hub.server_model(name) is None
    assert squeue(name) == []
    all_jobs = subprocess.run(["squeue", "--noheader", "--format=%u"], capture_output=True, text=True).stdout
    assert name not in all_jobs.split()
    assert Path("/etc/passwd").read_text() == passwd  # and no account was made


def test_the_form_shows_live_availability_from_sinfo(hub):
    browser = hub.browser("carol", PASSWORD)
    page = hub.spawn_form(browser)
    free, total = map(int, re.search(r"(\d+) of (\d+) cores", page).groups())
    assert free == total and re.search(r"2 of 2 GPUs", page)  # nothing runs yet
    eight = page[page.index('data-profile="gpu-8"'):]
    eight = eight[:eight.index("</label>")]
    assert "disabled" in eight and "cannot run here" in eight and "GPUs" in eight

    spawn(hub, "alice", profile="cpu-2")  # two cores of the node
    deadline = time.monotonic() + 15
    while f"{total - 2} of {total} cores" not in page and time.monotonic() < deadline:
        time.sleep(0.5)
        page = hub.spawn_form(browser)
    assert f"{total - 2} of {total} cores" in page
    if total == 2:  # the all-in-one node of a 2-core machine is now full
        one_core = page[page.index('data-profile="cpu-1"'):]
        assert "will queue: needs 1 core(s)" in one_core[:one_core.index("</label>")]


def test_two_users_get_different_gpus_and_a_third_waits_and_is_told_why(hub):
    spawn(hub, "alice", profile="gpu-1")
    spawn(hub, "bob", profile="gpu-1")
    gpus = {
        server_environment(job_id_of(hub, user))["CUDA_VISIBLE_DEVICES"] for user in ("alice", "bob")
    }
    assert gpus == {"0", "1"}

    response = hub.api(hub.tokens["carol"]).post(hub.server_url("carol"), json={"profile": "gpu-1"})
    assert response.status_code == 202
    # every step is shown: first "being scheduled", then Slurm's reason once its scheduler gave one
    events = progress_events(hub, "carol", until=lambda e: "waiting for free cores" in e.get("message", ""))
    waiting = events[-1]["message"]
    assert "pending in partition gpu, position 1 of 1" in waiting
    assert "waiting for free cores, memory or GPUs" in waiting  # Slurm's reason: Resources
    assert squeue("carol")[0]["reason"] == "Resources"

    alices_gpu = server_environment(job_id_of(hub, "alice"))["CUDA_VISIBLE_DEVICES"]
    hub.stop_server(hub.api(hub.tokens["alice"]), "alice")
    later = [e["message"] for e in progress_events(hub, "carol", until=lambda e: False, timeout=60)]
    assert any(f"is running on {node_name()}: starting JupyterLab" in m for m in later), later
    assert "Server ready" in later[-1]
    hub.wait_ready("carol", timeout=60)
    assert server_environment(job_id_of(hub, "carol"))["CUDA_VISIBLE_DEVICES"] == alices_gpu


def test_one_squeue_per_poll_interval_answers_every_server(hub):
    spawn(hub, "alice", profile="cpu-1")
    spawn(hub, "bob", profile="gpu-1")  # the node's two cores are taken
    time.sleep(2)  # past the spawns' own fresh looks at the queue
    before = calls(hub.commands, "squeue")
    time.sleep(10)  # ten poll intervals of 1 s; each server is polled once in each
    per_interval = (calls(hub.commands, "squeue") - before) / 10
    # batchspawner runs one squeue per server per interval (2 here); ours one for all
    assert 0.5 <= per_interval <= 1.1, per_interval


def test_a_hub_restart_reconnects_to_the_running_job(hub):
    spawn(hub, "alice", profile="cpu-1")
    job_id = job_id_of(hub, "alice")
    hub.restart()
    model = hub.server_model("alice")
    assert model and model["ready"]
    assert job_id_of(hub, "alice") == job_id
    assert scontrol_job(job_id)["JobState"] == "RUNNING"
    assert hub.api(hub.tokens["alice"]).get(f"{hub.url}/user/alice/api/status").status_code == 200


def test_an_outside_scancel_is_noticed(hub):
    spawn(hub, "alice", profile="cpu-1")
    subprocess.run(["scancel", job_id_of(hub, "alice")], check=True)
    deadline = time.monotonic() + 20
    while hub.server_model("alice") is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert hub.server_model("alice") is None


def slurmctld(action: str) -> None:
    if action == "stop":
        # this cluster's slurmctld only (by its pid file): the multi-node test cluster runs one too
        subprocess.run(
            ["start-stop-daemon", "--stop", "--retry", "10", "--pidfile", "/run/slurm/slurmctld.pid",
             "--exec", "/usr/sbin/slurmctld"],
            check=True,
        )
    else:
        subprocess.run(["/usr/sbin/slurmctld"], check=True)
        deadline = time.monotonic() + 30
        while subprocess.run(["scontrol", "ping"], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, "slurmctld did not come back"
            time.sleep(0.5)


def test_a_slurmctld_outage_loses_no_server(hub):
    spawn(hub, "alice", profile="cpu-1")
    job_id = job_id_of(hub, "alice")
    slurmctld("stop")
    try:
        time.sleep(12)  # about 12 polls (poll interval 1 s), every squeue failing
        model = hub.server_model("alice")
        assert model and model["ready"], "the hub dropped a live server while Slurm was down"
    finally:
        slurmctld("start")
    time.sleep(3)  # polls again with Slurm back
    assert job_id_of(hub, "alice") == job_id
    assert hub.api(hub.tokens["alice"]).get(f"{hub.url}/user/alice/api/status").status_code == 200
    assert "keeping the last known state" in hub.log_path.read_text()


def test_the_job_can_report_its_port_and_nothing_else(hub):
    spawn(hub, "alice", profile="cpu-1")
    token = server_environment(job_id_of(hub, "alice"))["JUPYTERHUB_API_TOKEN"]
    as_server = hub.api(token)
    url = f"{hub.url}/hub/api/batchspawner"
    # batchspawner's own handler would set these attributes on the hub's spawner
    for body in ({"exec_prefix": "touch /tmp/owned"}, {"port": 1234, "ip": "evil.example"},
                 {"port": "80"}, {"port": 70000}):
        response = as_server.post(url, json=body)
        assert response.status_code == 400, body
    assert hub.api(hub.tokens["alice"]).get(f"{hub.url}/user/alice/api/status").status_code == 200


def test_a_job_that_dies_shows_its_slurm_log_tail(hub):
    # dora's own Jupyter config stops the server at start: the job ends before it answers
    if subprocess.run(["id", "dora"], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--create-home", "dora"], check=True)
    jupyter = Path("/home/dora/.jupyter")
    jupyter.mkdir(exist_ok=True)
    (jupyter / "jupyter_server_config.py").write_text(
        "import sys\nprint('dora-config: refusing to start', flush=True)\nsys.exit(3)\n"
    )
    try:
        response = hub.api(hub.tokens["dora"]).post(hub.server_url("dora"), json={"profile": "cpu-1"})
        assert response.status_code in (202, 500)  # 500: it failed within slow_spawn_timeout
        events = progress_events(hub, "dora", until=lambda e: False, timeout=60)
    finally:
        (jupyter / "jupyter_server_config.py").unlink()
    failed = events[-1]
    assert failed.get("failed"), events
    assert "ended before JupyterLab" in failed["message"]
    assert "dora-config: refusing to start" in failed["message"]
    assert "/home/dora/.clusterlab/logs/jupyterlab-default-" in failed["message"]
    assert hub.server_model("dora") is None


def test_a_jupyterlab_on_slurm_submits_its_users_jobs_to_slurm_as_that_user(hub):
    spawn(hub, "alice", profile="cpu-1")
    Path("/home/alice/hello_job.py").write_text("import os\nprint('job as', os.environ['USER'], flush=True)\n")
    alice = hub.api(hub.tokens["alice"])
    jobs = f"{hub.url}/user/alice/clusterlab/api/jobs"

    # a size no node could ever run: refused before Slurm is asked, as the form (GET profiles) says
    before = alice.get(jobs).json()["total"]
    huge = alice.post(jobs, json={"template": "python-script", "name": "huge",
                                  "params": {"script": "hello_job.py"}, "profile": "gpu-8"})
    assert huge.status_code == 400 and huge.json()["field"] == "profile", huge.text
    never = "needs 1 core · 1 GB · 8 GPUs; the largest node of partition gpu has "
    assert huge.json()["error"].startswith(f"gpu-8 cannot run here: {never}")
    sizes = alice.get(f"{hub.url}/user/alice/clusterlab/api/profiles").json()["profiles"]
    assert next(p for p in sizes if p["id"] == "gpu-8")["availability"]["reason"].startswith(never)
    assert alice.get(jobs).json()["total"] == before
    assert "clusterlab-alice-huge" not in [j["name"] for j in squeue("alice")]

    response = alice.post(jobs, json={"template": "python-script", "name": "from_lab",
                                      "params": {"script": "hello_job.py"}, "profile": "cpu-1"})
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["backend"] == "slurm" and job["folder"].startswith("/home/alice/.clusterlab/jobs/")
    facts = scontrol_job(job["scheduler_id"])
    assert facts["UserId"].startswith("alice(") and facts["JobName"] == "clusterlab-alice-from_lab"
    deadline = time.monotonic() + 60
    while job["status"] not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.5)
        job = alice.get(f"{jobs}/{job['id']}").json()
    assert job["status"] == "completed", job
    assert "job as alice" in alice.get(f"{jobs}/{job['id']}/log").json()["text"]
    assert hub.api(hub.tokens["bob"]).get(jobs).status_code == 403


def test_a_terminal_in_a_slurm_jupyterlab_finds_the_cli_and_the_environments_python(hub):
    spawn(hub, "alice", profile="cpu-1")
    screen = terminal_run(hub, "alice", hub.tokens["alice"],
                          "clusterlab --version; python -c 'import sys; print(\"python at\", sys.prefix)'; "
                          "echo DONE-$((6*7))", until="DONE-42")
    assert "clusterlab 0.1.0" in screen and f"python at {sys.prefix}" in screen, screen
