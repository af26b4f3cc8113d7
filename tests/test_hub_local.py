"""The embedded default end to end: a real hub, real proxy, real JupyterLab servers.

The hub lends two fake GPUs ("0", "1"); cores are this machine's.
"""

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import accounts
import psutil
import pytest
from clusterlab_server.service import JobService, Settings
from hub import ADMIN_PASSWORD, REPO, pid_alive, process_facts, terminal_run
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.hub

MACHINE_CORES = sorted(os.sched_getaffinity(0))
PROFILE_NAMES = {"cpu-small": "CPU small", "cpu-large": "CPU large", "gpu-1": "1 GPU", "gpu-4": "4 GPUs"}


def reachable_through_proxy(hub, api, user, server=""):
    """The user's JupyterLab answers its REST API through the hub's proxy."""
    path = f"/user/{user}/{server}/api/status" if server else f"/user/{user}/api/status"
    response = api.get(hub.url + path)
    return response.status_code == 200 and "started" in response.json()


# ----- login -----------------------------------------------------------------------


@pytest.mark.postgresql
def test_login_right_wrong_and_unapproved(hub):
    assert hub.login("admin", ADMIN_PASSWORD).status_code == 302

    wrong = hub.login("admin", "not-the-password")
    assert wrong.status_code == 403
    assert "Invalid username or password" in wrong.text

    assert hub.signup("dora", "dora-long-password").status_code == 200
    waiting = hub.login("dora", "dora-long-password")
    assert waiting.status_code == 403
    assert "has not been approved by an administrator yet" in waiting.text

    hub.approve("dora")
    assert hub.login("dora", "dora-long-password").status_code == 302
    assert hub.login("dora", "wrong-password-here").status_code == 403


@pytest.mark.postgresql
def test_passwords_are_stored_hashed(hub):
    [(stored,)] = hub.db_rows("select password from users_info where username='admin'")
    assert ADMIN_PASSWORD.encode() not in stored
    assert stored.startswith(b"$2")  # bcrypt


# ----- the database -------------------------------------------------------------------


@pytest.mark.postgresql
def test_the_hub_keeps_its_state_in_the_database_it_is_given(hub, hub_db):
    """CLUSTERLAB_DB_URL is the hub's whole database: nothing falls back to the SQLite file."""
    assert hub.db_url.startswith({"sqlite": "sqlite:", "postgresql": "postgresql+pg8000:"}[hub_db])
    # the database starts empty (tests/postgres.py): only this hub can have written its users
    assert ("admin",) in hub.db_rows("select name from users")
    assert (hub.data_dir / "hub" / "jupyterhub.sqlite").exists() == (hub_db == "sqlite")
    password = make_url(hub.db_url).password
    assert not password or password not in hub.log_path.read_text()


# ----- the form -----------------------------------------------------------------------


def test_form_lists_every_size_with_live_availability(hub):
    api = hub.admin_api
    page = hub.spawn_form(hub.admin())
    for profile_id, name in PROFILE_NAMES.items():
        assert f'value="{profile_id}"' in page
        assert name in page
    assert "4 cores · 16 GB · 1 GPU" in page
    assert f"{len(MACHINE_CORES)} of {len(MACHINE_CORES)} cores" in page
    assert "2 of 2 GPUs" in page
    assert "needs 4 GPU(s); this machine has 2" in page  # gpu-4 cannot run here
    if len(MACHINE_CORES) < 8:  # cpu-large: what it gets here, not a bare "can start now"
        assert f"gets {len(MACHINE_CORES)} of the 8 cores it asks for (this machine has {len(MACHINE_CORES)})" in page

    hub.start_server(api, "admin", "busy", profile="gpu-1", hours=1)
    page = hub.spawn_form(hub.admin())
    assert "1 of 2 GPUs" in page
    hub.stop_server(api, "admin", "busy")
    assert "2 of 2 GPUs" in hub.spawn_form(hub.admin())


@pytest.mark.postgresql
def test_spawn_through_the_form(hub):
    browser = hub.admin()
    response = browser.post(
        hub.url + "/hub/spawn/admin/fromform",
        data={"profile": "cpu-small", "hours": "1.5", "_xsrf": browser.xsrf},
    )
    assert "/hub/spawn-pending/admin/fromform" in response.url
    model = hub.wait_ready("admin", "fromform")
    assert model["user_options"] == {"profile": "cpu-small", "hours": 1.5}
    assert reachable_through_proxy(hub, hub.admin_api, "admin", "fromform")
    hub.stop_server(hub.admin_api, "admin", "fromform")


def test_form_shows_the_error_and_starts_nothing(hub):
    browser = hub.admin()
    response = browser.post(
        hub.url + "/hub/spawn/admin/toolong",
        data={"profile": "cpu-small", "hours": "13", "_xsrf": browser.xsrf},
    )
    assert response.status_code == 400
    assert "hours 13 is over the 12 h maximum of cpu-small" in response.text
    assert 'name="profile"' in response.text  # the form again, to correct
    assert hub.server_model("admin", "toolong") is None


# ----- each size, for real -----------------------------------------------------------------


def test_each_size_gets_its_cores_threads_memory_and_gpus(hub):
    token = hub.add_user("erin")
    api = hub.api(token)
    sizes = {"small": ("cpu-small", 1, 2), "large": ("cpu-large", 8, 32), "gpu": ("gpu-1", 4, 16)}
    for server, (profile, _, _) in sizes.items():
        api.post(hub.server_url("erin", server), json={"profile": profile, "hours": 2})
    models = {server: hub.wait_ready("erin", server) for server in sizes}

    for server, (profile, cpus, memory_gb) in sizes.items():
        model = models[server]
        facts = process_facts(model["state"]["pid"])
        granted = min(cpus, len(MACHINE_CORES))
        assert len(facts["cores"]) == granted
        assert set(facts["cores"]) <= set(MACHINE_CORES)
        for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            assert facts["env"][variable] == str(granted)
        assert facts["rlimit_data"] == memory_gb * 1024**3
        assert facts["env"]["CLUSTERLAB_PROFILE"] == profile
        assert facts["cwd"] == str(hub.home_of("erin"))
        assert reachable_through_proxy(hub, api, "erin", server)

    assert process_facts(models["small"]["state"]["pid"])["env"]["CUDA_VISIBLE_DEVICES"] == ""
    assert process_facts(models["gpu"]["state"]["pid"])["env"]["CUDA_VISIBLE_DEVICES"] in {"0", "1"}

    pids = [m["state"]["pid"] for m in models.values()]
    for server in sizes:
        hub.stop_server(api, "erin", server)
    assert not any(pid_alive(pid) for pid in pids)


# ----- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, message",
    [
        ({"profile": "cpu-small", "gres": "gpu:1"}, "unknown option 'gres'"),
        ({"profile": "cpu-small", "cmd": ["/bin/sh"]}, "unknown option 'cmd'"),
        ({"profile": "huge"}, "unknown profile 'huge'"),
        ({}, "profile is required"),
        ({"profile": "cpu-small", "hours": 13}, "over the 12 h maximum"),
        ({"profile": "cpu-small", "hours": -1}, "hours must be more than 0"),
        ({"profile": "cpu-small", "hours": "2; rm -rf /"}, "hours must be a number"),
        ({"profile": "gpu-4"}, "needs 4 GPU(s); this machine has 2"),
    ],
)
def test_bad_options_are_refused_and_nothing_starts(hub, options, message):
    # a fresh server name each time: JupyterHub reuses a server's last options when none are sent
    server = f"bad{abs(hash(message)) % 10**6}"
    before = _singleuser_pids()
    response = hub.admin_api.post(hub.server_url("admin", server), json=options)
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert hub.server_model("admin", server) is None
    assert _singleuser_pids() == before


def _singleuser_pids():
    return {
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if "clusterlab-singleuser" in " ".join(p.info["cmdline"] or [])
    }


@pytest.mark.parametrize(
    "quotas, second, message",
    [
        ({"CLUSTERLAB_MAX_SERVERS_PER_USER": "1"}, "cpu-small", "the limit is 1. Stop one first"),
        ({"CLUSTERLAB_MAX_GPUS_PER_USER": "1"}, "gpu-1", "the limit is 1 GPU(s) per user"),
    ],
)
def test_quotas_refuse_a_second_server(make_hub, quotas, second, message):
    hub = make_hub(env=quotas)
    api = hub.admin_api
    hub.start_server(api, "admin", "one", profile="gpu-1")
    response = api.post(hub.server_url("admin", "two"), json={"profile": second})
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert hub.server_model("admin", "two") is None


# ----- sharing the machine --------------------------------------------------------------------


def test_two_users_never_share_a_gpu_and_a_third_is_told_why(hub):
    apis = {name: hub.api(hub.add_user(name)) for name in ("alice", "bob", "carol")}
    hub.start_server(apis["alice"], "alice", profile="gpu-1")
    hub.start_server(apis["bob"], "bob", profile="gpu-1")
    gpus = {
        user: process_facts(hub.server_model(user)["state"]["pid"])["env"]["CUDA_VISIBLE_DEVICES"]
        for user in ("alice", "bob")
    }
    assert sorted(gpus.values()) == ["0", "1"]

    refused = apis["carol"].post(hub.server_url("carol"), json={"profile": "gpu-1"})
    assert refused.status_code == 400
    assert "0 free now" in refused.json()["message"]
    assert hub.server_model("carol") is None

    hub.stop_server(apis["alice"], "alice")
    hub.start_server(apis["carol"], "carol", profile="gpu-1")
    carol_gpu = process_facts(hub.server_model("carol")["state"]["pid"])["env"]["CUDA_VISIBLE_DEVICES"]
    assert carol_gpu == gpus["alice"]
    hub.stop_server(apis["bob"], "bob")
    hub.stop_server(apis["carol"], "carol")


@pytest.mark.postgresql
def test_one_user_cannot_touch_another_users_server(hub):
    frank, grace = (hub.api(hub.add_user(name)) for name in ("frank", "grace"))
    hub.start_server(frank, "frank", profile="cpu-small")
    assert grace.get(hub.url + "/user/frank/api/status").status_code == 403
    assert grace.delete(hub.server_url("frank")).status_code == 404
    assert grace.post(hub.server_url("frank", "x"), json={"profile": "cpu-small"}).status_code == 404
    assert reachable_through_proxy(hub, frank, "frank")
    hub.stop_server(frank, "frank")


def test_each_users_jupyterlab_runs_their_jobs_and_only_theirs(hub):
    """The job service is in every user's JupyterLab, behind the hub's auth and proxy."""
    henry, iris = (hub.api(hub.add_user(name)) for name in ("henry", "iris"))
    hub.start_server(henry, "henry", profile="cpu-small")
    workspace = hub.home_of("henry")
    accounts.write_as("henry", workspace / "hello.py", "print('hello from a job')\n")
    jobs = f"{hub.url}/user/henry/clusterlab/api/jobs"
    response = henry.post(jobs, json={"template": "python-script", "name": "first", "params": {"script": "hello.py"}})
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["profile"] == "cpu-small" and job["folder"].startswith(str(workspace))
    deadline = time.monotonic() + 30
    while job["status"] not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.3)
        job = henry.get(f"{jobs}/{job['id']}").json()
    assert job["status"] == "completed"
    assert "hello from a job" in henry.get(f"{jobs}/{job['id']}/log").json()["text"]
    assert iris.get(jobs).status_code == 403  # not hers to see
    assert iris.delete(f"{jobs}/{job['id']}").status_code == 403
    experiments = f"{hub.url}/user/henry/clusterlab/api/experiments"  # nor his experiments
    assert henry.get(experiments).status_code == 200
    assert iris.get(experiments).status_code == 403
    assert iris.post(experiments, json={"template": "python-script", "name": "x", "search": {}}).status_code == 403
    assert iris.post(f"{experiments}/any/cancel").status_code == 403
    hub.stop_server(henry, "henry")


def test_the_hubs_quotas_and_site_datasets_reach_the_servers(make_hub):
    """The hub's site settings (the trial quota, the dataset quota, the site's datasets) rule each server."""
    site = Path(tempfile.mkdtemp(prefix="clusterlab-test-site-datasets-"))
    site.chmod(0o755)  # the servers run as their users: an admin's store everyone reads
    (site / "source").mkdir()
    (site / "source" / "rows.csv").write_text("x,y\n1,2\n")
    publisher = JobService(Settings(jobs_root=site / "jobs", workspace=site, template_paths=[REPO / "templates"],
                                    profiles_file=REPO / "hub_config" / "profiles.yaml", site_datasets=site / "store"))
    publisher.datasets.create({"name": "reference", "folder": "source", "description": "the site's"}, site=True)
    hub = make_hub(env={"CLUSTERLAB_MAX_CONCURRENT_TRIALS": "2", "CLUSTERLAB_DATASETS_QUOTA_GB": "0.000001",
                        "CLUSTERLAB_SITE_DATASETS": str(site / "store")})
    api = hub.admin_api
    hub.start_server(api, "admin", profile="cpu-small")
    base = f"{hub.url}/user/admin/clusterlab/api"
    request = {"template": "python-script", "name": "quota", "params": {"script": "x.py"},
               "search": {"options.lr": [0.1, 0.01, 0.001]}, "searcher": "grid", "max_concurrent_trials": 3}
    response = api.post(f"{base}/experiments", json=request)
    assert response.status_code == 400, response.text
    assert response.json() == {"field": "max_concurrent_trials",
                               "error": "max_concurrent_trials: 3 is over your quota of 2 trials at once"}

    listed = api.get(f"{base}/datasets").json()["datasets"]
    assert [(d["name"], d["shared"]) for d in listed] == [("reference", True)]
    big = hub.home_of("admin") / "big"
    big.mkdir(exist_ok=True)
    (big / "blob.bin").write_bytes(os.urandom(4096))  # over the 1,000-byte quota
    accounts.give("admin", big)
    refused = api.post(f"{base}/datasets", json={"name": "big", "folder": "big"})
    assert refused.status_code == 413 and refused.json()["field"] == "folder", refused.text
    assert [d["name"] for d in api.get(f"{base}/datasets").json()["datasets"]] == ["reference"]
    shutil.rmtree(site, ignore_errors=True)


def test_a_terminal_finds_the_cli_and_the_environments_python(hub):
    """A JupyterLab terminal is a login shell, whose /etc/profile resets PATH: the environment stays first."""
    token = hub.add_user("ivan")
    hub.start_server(hub.api(token), "ivan", profile="cpu-small")
    screen = terminal_run(hub, "ivan", token, "clusterlab --version; python -c 'import sys, torch; "
                          "print(\"python at\", sys.prefix, \"torch\", torch.__version__)'; echo DONE-$((6*7))",
                          until="DONE-42")
    assert "clusterlab 0.1.0" in screen, screen
    assert f"python at {sys.prefix} torch " in screen, screen
    assert "command not found" not in screen
    hub.stop_server(hub.api(token), "ivan")


# ----- time and restarts ------------------------------------------------------------------------


@pytest.mark.postgresql
def test_server_survives_a_hub_restart(make_hub):
    hub = make_hub()
    api = hub.admin_api
    model = hub.start_server(api, "admin", profile="gpu-1")
    pid = model["state"]["pid"]
    gpu = process_facts(pid)["env"]["CUDA_VISIBLE_DEVICES"]

    hub.restart()

    model = hub.wait_ready("admin")
    assert model["state"]["pid"] == pid
    assert reachable_through_proxy(hub, api, "admin")
    assert "1 of 2 GPUs" in hub.spawn_form(hub.admin(), "admin/second")  # its GPU still counts
    other = hub.start_server(api, "admin", "second", profile="gpu-1")
    assert process_facts(other["state"]["pid"])["env"]["CUDA_VISIBLE_DEVICES"] != gpu
    hub.stop_server(api, "admin")
    hub.stop_server(api, "admin", "second")
    assert not pid_alive(pid)


def test_wall_time_stops_the_server(make_hub):
    hub = make_hub(extra_config="c.Spawner.poll_interval = 1")
    api = hub.admin_api
    pid = hub.start_server(api, "admin", profile="cpu-small", hours=5 / 3600)["state"]["pid"]
    deadline = time.monotonic() + 30
    while hub.server_model("admin") is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert hub.server_model("admin") is None
    assert not pid_alive(pid)


@pytest.mark.postgresql
def test_idle_servers_are_culled(make_hub):
    hub = make_hub(env={"CLUSTERLAB_IDLE_TIMEOUT": "6"})
    api = hub.admin_api
    services = api.get(hub.url + "/hub/api/services").json()
    assert "idle-culler" in services
    pid = hub.start_server(api, "admin", profile="cpu-small")["state"]["pid"]
    deadline = time.monotonic() + 45
    while hub.server_model("admin") is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert hub.server_model("admin") is None, "the idle culler did not stop the server"
    assert not pid_alive(pid)


@pytest.mark.postgresql
def test_first_start_without_a_password_gives_admin_a_random_one(make_hub):
    hub = make_hub(env={"CLUSTERLAB_ADMIN_PASSWORD": ""})
    password_file = hub.data_dir / "hub" / "admin-password"
    assert oct(password_file.stat().st_mode & 0o777) == "0o600"
    password = password_file.read_text().strip()
    assert len(password) >= 12
    assert hub.login("admin", password).status_code == 302
    # nobody can take `admin` by signing up
    hub.signup("admin", "an-attackers-password")
    assert hub.login("admin", "an-attackers-password").status_code == 403
