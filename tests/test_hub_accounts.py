"""One machine, many users: a root hub runs each user as their own Unix account.

On the local backend as root (as `make run` as root, and CI), alice's and
bob's servers and jobs run as the accounts alice and bob. What is checked is
what the kernel says (/proc) and what each user can do from inside a real job
and through their own server: alice cannot read bob's process environment
(his hub token), files or job folders, nor signal his processes, nor read the
hub's database and secrets. System accounts (root, daemon, nobody, a name
that is a system group) are refused before anything starts.

A hub that is not root (run here as an unprivileged account) cannot separate
users: it says so on its pages and keeps sign-up closed until a setting opens it.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path

import accounts
import psutil
import pytest
import requests
from hub import Hub, pid_alive

pytestmark = pytest.mark.hub

PASSWORD = "a-long-test-password"

# from inside a job: try to read, list or signal each target; print what happened
PROBE = r'''
import json, os, signal, sys
seen = {}
for kind, target in json.load(open(sys.argv[1])):
    try:
        if kind == "read":
            with open(target, "rb") as f:
                seen[target] = "READ " + f.read(200).decode(errors="replace")
        elif kind == "list":
            seen[target] = "LISTED " + ",".join(os.listdir(target))
        else:
            os.kill(int(target), signal.SIGTERM if kind == "kill" else 0)
            seen[target] = "SIGNALLED"
    except PermissionError as e:
        seen[target] = "denied"
    except OSError as e:
        seen[target] = f"error {e.errno}"
seen["uid"] = os.getuid()
print("PROBE " + json.dumps(seen), flush=True)
'''


@pytest.fixture(scope="module")
def root():
    if os.geteuid() != 0:
        message = "separate Unix accounts per user need a root hub: run the tests as root (CI does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def hub(root):
    # a data folder others may enter: only the hub's own hub/ folder keeps them out
    data = Path(tempfile.mkdtemp(prefix="clusterlab-test-accounts-"))
    data.chmod(0o755)
    hub = Hub(data, env={"CLUSTERLAB_POLL_INTERVAL": "1"})
    hub.start()
    hub.tokens = {name: hub.add_user(name, PASSWORD) for name in ("alice", "bob")}
    for name, token in hub.tokens.items():
        hub.start_server(hub.api(token), name, profile="cpu-small")
    yield hub
    for name in hub.tokens:
        if hub.server_model(name) is not None:
            hub.stop_server(hub.admin_api, name)
    hub.stop()
    shutil.rmtree(data, ignore_errors=True)


def server_pid(hub, user: str) -> int:
    return hub.server_model(user)["state"]["pid"]


def ids_of(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    line = lambda key: re.search(rf"^{key}:[ \t]*(.*)$", status, re.M).group(1).split()  # noqa: E731
    return {"uids": {int(u) for u in line("Uid")}, "gids": {int(g) for g in line("Gid")},
            "groups": {int(g) for g in line("Groups")}}


def jobs_url(hub, user: str) -> str:
    return f"{hub.url}/user/{user}/clusterlab/api/jobs"


def run_job(hub, user: str, script: str, args: list[str] | None = None, wait: bool = True) -> dict:
    api = hub.api(hub.tokens[user])
    body = {"template": "python-script", "name": script.removesuffix(".py"),
            "params": {"script": script, "args": args or []}}
    response = api.post(jobs_url(hub, user), json=body)
    assert response.status_code == 201, response.text
    job = response.json()
    deadline = time.monotonic() + 60
    while wait and job["status"] not in ("completed", "failed") and time.monotonic() < deadline:
        time.sleep(0.3)
        job = api.get(f"{jobs_url(hub, user)}/{job['id']}").json()
    return job


def job_log(hub, user: str, job: dict) -> str:
    return hub.api(hub.tokens[user]).get(f"{jobs_url(hub, user)}/{job['id']}/log").json()["text"]


# ----- each server as its own account ----------------------------------------------------


def test_each_users_server_runs_as_their_own_account_in_their_private_home(hub):
    uids = set()
    for user in ("alice", "bob"):
        account = pwd.getpwnam(user)
        pid = server_pid(hub, user)
        ids = ids_of(pid)
        assert ids["uids"] == {account.pw_uid}, f"{user}'s server runs as {ids['uids']}"
        assert ids["gids"] == {account.pw_gid}
        assert ids["groups"] == set(os.getgrouplist(user, account.pw_gid))
        environ = psutil.Process(pid).environ()
        assert environ["HOME"] == account.pw_dir and environ["USER"] == user
        assert os.readlink(f"/proc/{pid}/cwd") == account.pw_dir
        home = os.stat(account.pw_dir)
        assert home.st_uid == account.pw_uid and stat.S_IMODE(home.st_mode) == 0o700
        uids.add(account.pw_uid)
    assert len(uids) == 2 and 0 not in uids


def test_no_token_is_on_any_command_line(hub):
    tokens = set(hub.tokens.values())
    for user in hub.tokens:
        tokens.add(psutil.Process(server_pid(hub, user)).environ()["JUPYTERHUB_API_TOKEN"])
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        assert not any(token in line for token in tokens), f"a token is in the command line of {proc.pid}"


def test_the_hubs_database_and_secrets_are_the_hubs_alone(hub):
    folder = hub.data_dir / "hub"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.stat().st_uid == 0
    assert stat.S_IMODE((folder / "jupyterhub_cookie_secret").stat().st_mode) == 0o600


def test_a_job_of_alice_can_reach_nothing_of_bob_nor_of_the_hub(hub):
    bob_home = accounts.home_of("bob")
    accounts.write_as("bob", bob_home / "secret.txt", "bob's unpublished results\n")
    accounts.write_as("bob", bob_home / "wait.py", "import time\ntime.sleep(120)\n")
    bob_job = run_job(hub, "bob", "wait.py", wait=False)
    bob_job_pid = int(bob_job["scheduler_id"].split(":")[0])
    bob_server = server_pid(hub, "bob")
    bob_token = psutil.Process(bob_server).environ()["JUPYTERHUB_API_TOKEN"]
    targets = [
        ["read", f"/proc/{bob_server}/environ"], ["read", f"/proc/{bob_job_pid}/environ"],
        ["read", str(bob_home / "secret.txt")], ["list", str(bob_home)],
        ["list", bob_job["folder"]], ["read", str(Path(bob_job["folder"]) / "params.json")],
        ["read", str(bob_home / ".clusterlab" / "jobs" / "jobs.sqlite")],
        ["signal", str(bob_server)], ["kill", str(bob_job_pid)],
        ["read", str(hub.data_dir / "hub" / "jupyterhub.sqlite")],
        ["read", str(hub.data_dir / "hub" / "jupyterhub_cookie_secret")],
        ["read", str(hub.data_dir / "hub" / "admin-password")],
        ["list", str(hub.data_dir / "hub")],
    ]
    alice_home = accounts.home_of("alice")
    accounts.write_as("alice", alice_home / "probe.py", PROBE)
    accounts.write_as("alice", alice_home / "targets.json", json.dumps(targets))
    job = run_job(hub, "alice", "probe.py", [str(alice_home / "targets.json")])
    assert job["status"] == "completed", job_log(hub, "alice", job)
    log = job_log(hub, "alice", job)
    seen = json.loads(log.split("PROBE ", 1)[1].splitlines()[0])
    assert seen.pop("uid") == pwd.getpwnam("alice").pw_uid  # the job runs as alice
    assert {target: seen[target] for _, target in targets if seen[target] != "denied"} == {}
    assert bob_token not in log
    assert pid_alive(bob_server) and pid_alive(bob_job_pid)
    # the job ran as alice, and its record is hers alone
    facts = Path(job["folder"])
    assert facts.stat().st_uid == pwd.getpwnam("alice").pw_uid
    assert stat.S_IMODE(facts.stat().st_mode) == 0o700
    for private in (alice_home / ".clusterlab", alice_home / ".clusterlab" / "jobs"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o700, private
    assert stat.S_IMODE((alice_home / ".clusterlab" / "jobs" / "jobs.sqlite").stat().st_mode) == 0o600
    hub.api(hub.tokens["bob"]).delete(f"{jobs_url(hub, 'bob')}/{bob_job['id']}")


def test_alices_server_cannot_open_bobs_files_through_its_contents_api(hub):
    alice_home, bob_home = accounts.home_of("alice"), accounts.home_of("bob")
    accounts.write_as("bob", bob_home / "secret.txt", "bob's unpublished results\n")
    bob_token = psutil.Process(server_pid(hub, "bob")).environ()["JUPYTERHUB_API_TOKEN"]
    links = {
        "bob-secret": bob_home / "secret.txt",
        "bob-environ": Path(f"/proc/{server_pid(hub, 'bob')}/environ"),
        "bob-home": bob_home,
        "hub-secret": hub.data_dir / "hub" / "jupyterhub_cookie_secret",
    }
    alice = hub.api(hub.tokens["alice"])
    for name, target in links.items():
        link = alice_home / name
        link.unlink(missing_ok=True)
        link.symlink_to(target)
        accounts.give("alice", link)
        response = alice.get(f"{hub.url}/user/alice/api/contents/{name}?content=1")
        assert response.status_code != 200, f"{name}: {response.text[:200]}"
        assert "unpublished" not in response.text and bob_token not in response.text
        link.unlink()
    # and outside her root the API refuses the path itself
    assert alice.get(f"{hub.url}/user/alice/api/contents/../bob/secret.txt").status_code in (400, 403, 404)


def test_alice_can_use_nothing_of_bobs_through_the_hub(hub):
    alice_api = hub.api(hub.tokens["alice"])
    alice_browser = hub.browser("alice", PASSWORD)
    for client in (alice_api, alice_browser):
        for path in ("/user/bob/api/status", "/user/bob/api/contents", "/user/bob/clusterlab/api/jobs"):
            answer = client.get(hub.url + path, allow_redirects=False)
            assert answer.status_code in (302, 403, 404), (path, answer.status_code)
            if answer.status_code == 302:  # to the hub's login or oauth: never bob's data
                assert "/hub/" in answer.headers["Location"]
        assert client.delete(hub.server_url("bob")).status_code in (403, 404)
    assert hub.server_model("bob")["ready"]


def test_bobs_datasets_and_outputs_are_bobs_alone_through_every_api(hub):
    bob_home = accounts.home_of("bob")
    (bob_home / "private_data").mkdir(exist_ok=True)
    accounts.write_as("bob", bob_home / "private_data" / "rows.csv", "x,y\n1,unpublished\n")
    accounts.give("bob", bob_home / "private_data")
    accounts.write_as("bob", bob_home / "writes.py", "open('model.pt', 'w').write('weights')\n")
    bob = hub.api(hub.tokens["bob"])
    bob_api = f"{hub.url}/user/bob/clusterlab/api"
    made = bob.post(f"{bob_api}/datasets", json={"name": "secret_rows", "folder": "private_data"})
    assert made.status_code == 201, made.text
    output = run_job(hub, "bob", "writes.py")
    assert output["status"] == "completed", output

    alice = hub.api(hub.tokens["alice"])
    alice_api = f"{hub.url}/user/alice/clusterlab/api"
    alice_home = accounts.home_of("alice")
    accounts.write_as("alice", alice_home / "probe.py", PROBE)
    assert "secret_rows" not in alice.get(f"{alice_api}/datasets").text
    assert alice.get(f"{alice_api}/datasets/secret_rows").status_code == 404
    assert alice.delete(f"{alice_api}/datasets/secret_rows/1").status_code == 404
    for inputs, field in [([{"dataset": "secret_rows"}], "inputs.0.dataset"),
                          ([{"job": output["id"]}], "inputs.0.job")]:
        refused = alice.post(f"{alice_api}/jobs", json={"template": "python-script", "name": "steal",
                                                        "params": {"script": "probe.py"}, "inputs": inputs})
        assert refused.status_code == 400 and refused.json()["field"] == field, refused.text
    stolen = {"dataset": made.json()["path"] + "/rows.csv", "target": "y"}
    by_path = alice.post(f"{alice_api}/jobs", json={"template": "tabular-train", "name": "steal", "params": stolen})
    assert by_path.status_code == 400 and "outside your workspace" in by_path.json()["error"], by_path.text
    # and not through bob's server: the hub lets nobody but bob in
    for method, path in [("get", "/datasets"), ("get", "/datasets/secret_rows/1/files/rows.csv"),
                         ("delete", "/datasets/secret_rows/1")]:
        answer = getattr(alice, method)(f"{bob_api}{path}", allow_redirects=False)
        assert answer.status_code in (302, 403, 404) and "unpublished" not in answer.text, (path, answer.status_code)
    # from inside a job of alice's, bob's dataset store cannot even be opened
    targets = [["read", made.json()["path"] + "/rows.csv"], ["list", made.json()["path"]]]
    accounts.write_as("alice", alice_home / "targets.json", json.dumps(targets))
    probe = run_job(hub, "alice", "probe.py", [str(alice_home / "targets.json")])
    assert probe["status"] == "completed", job_log(hub, "alice", probe)
    seen = json.loads(job_log(hub, "alice", probe).split("PROBE ", 1)[1].splitlines()[0])
    assert seen[targets[0][1]] == seen[targets[1][1]] == "denied", seen
    assert bob.get(f"{bob_api}/datasets/secret_rows/1/files/rows.csv").text == "x,y\n1,unpublished\n"


# ----- system accounts --------------------------------------------------------------------


def singleuser_pids() -> set[int]:
    return {p.pid for p in psutil.process_iter(["cmdline"])
            if "clusterlab-singleuser" in " ".join(p.info["cmdline"] or [])}


@pytest.mark.parametrize("name, reason", [
    ("root", "'root' is a system account"),
    ("daemon", "'daemon' is a system account (uid 1, below min_uid 1000)"),
    ("nobody", "'nobody' is a system account"),
])
def test_system_accounts_get_no_server(hub, name, reason):
    token = hub.add_user(name, PASSWORD, account=False)
    before, passwd = singleuser_pids(), Path("/etc/passwd").read_text()
    answer = hub.api(token).post(hub.server_url(name), json={"profile": "cpu-small"})
    assert answer.status_code == 400
    assert reason in answer.json()["message"]
    # the spawn form says so before anything is chosen, and refuses the same when submitted
    browser = hub.browser(name, PASSWORD)
    page = hub.spawn_form(browser).replace("&#39;", "'")
    assert "No server can start for this hub account" in page and reason in page
    assert 'name="profile"' not in page
    form = browser.post(f"{hub.url}/hub/spawn/{name}", data={"profile": "cpu-small", "_xsrf": browser.xsrf})
    assert form.status_code == 400 and reason in form.text.replace("&#39;", "'")
    assert hub.server_model(name) is None
    assert singleuser_pids() == before
    assert Path("/etc/passwd").read_text() == passwd


def test_the_embedded_default_as_root_makes_missing_accounts_but_never_a_groups_name(make_hub):
    hub = make_hub(env={"CLUSTERLAB_CREATE_UNIX_USERS": None})  # as `make run` has it
    assert "a missing one is created" in hub.log_path.read_text()
    assert not accounts.exists("zoe"), "a Unix account zoe exists already here"
    token = hub.add_user("zoe", PASSWORD)  # the hub makes the account itself
    model = hub.start_server(hub.api(token), "zoe", profile="cpu-small")
    account = pwd.getpwnam("zoe")
    assert account.pw_uid >= 1000
    assert ids_of(model["state"]["pid"])["uids"] == {account.pw_uid}
    home = os.stat(account.pw_dir)
    assert home.st_uid == account.pw_uid and stat.S_IMODE(home.st_mode) == 0o700
    hub.stop_server(hub.api(token), "zoe")

    # "staff" is a system group with no account: useradd would make the user a member
    assert not accounts.exists("staff")
    token = hub.add_user("staff", PASSWORD)
    answer = hub.api(token).post(hub.server_url("staff"), json={"profile": "cpu-small"})
    assert answer.status_code == 400
    assert "a group of that name exists" in answer.json()["message"]
    assert not accounts.exists("staff")


# ----- a hub that is not root -------------------------------------------------------------------


@pytest.fixture
def unprivileged_hub(tmp_path):
    """A hub as an ordinary account (the tests' own one when they do not run as root)."""
    hubs = []

    def make(**env):
        run_as = ""
        data = Path(tempfile.mkdtemp(prefix="clusterlab-test-hub-"))
        if os.geteuid() == 0:
            run_as = "clhubtest"
            account = accounts.ensure(run_as)
            os.chown(data, account.pw_uid, account.pw_gid)
        hub = Hub(data, env=env, run_as=run_as)
        hubs.append(hub)
        return hub.start()

    yield make
    for hub in hubs:
        hub.stop()
        shutil.rmtree(hub.data_dir, ignore_errors=True)


def test_a_hub_that_is_not_root_says_everyone_shares_its_account_and_keeps_signup_closed(unprivileged_hub):
    hub = unprivileged_hub()
    account = hub.run_as or pwd.getpwuid(os.geteuid()).pw_name
    shared = f"one and the same Unix account ({account})"
    assert shared in hub.log_path.read_text()
    assert "Sign-up is off" in hub.log_path.read_text()

    page = requests.get(f"{hub.url}/hub/signup")
    assert page.status_code == 403
    assert "Sign-up is closed" in page.text and shared in page.text
    assert f"(<code>{account}</code>)" in page.text and "Back to sign in" in page.text
    assert "CLUSTERLAB_ALLOW_SIGNUP_WITH_SHARED_ACCOUNT=1" in page.text
    assert hub.signup("mallory", "a-long-password-1").status_code == 403
    assert hub.login("mallory", "a-long-password-1").status_code == 403  # no account was made

    login = requests.get(f"{hub.url}/hub/login").text
    assert shared in login and "/hub/signup" not in login
    assert shared in hub.admin().get(f"{hub.url}/hub/home").text


def test_a_hub_that_is_not_root_opens_signup_only_when_told_to(unprivileged_hub):
    hub = unprivileged_hub(CLUSTERLAB_ALLOW_SIGNUP_WITH_SHARED_ACCOUNT="1")
    page = requests.get(f"{hub.url}/hub/signup")
    assert page.status_code == 200
    assert "one and the same Unix account" in page.text  # still said, where people sign up
    assert hub.signup("dora", "a-long-password-1").status_code == 200
    hub.approve("dora")
    assert hub.login("dora", "a-long-password-1").status_code == 302


def test_the_local_backend_needs_no_root_to_run(unprivileged_hub):
    """Not root, a server still starts (as the hub's account, in the data dir's users/ folder)."""
    hub = unprivileged_hub()
    model = hub.start_server(hub.admin_api, "admin", profile="cpu-small")
    pid = model["state"]["pid"]
    assert ids_of(pid)["uids"] == {pwd.getpwnam(hub.run_as).pw_uid if hub.run_as else os.geteuid()}
    assert os.readlink(f"/proc/{pid}/cwd") == str(hub.data_dir / "users" / "admin")
    hub.stop_server(hub.admin_api, "admin")
    assert not pid_alive(pid)
