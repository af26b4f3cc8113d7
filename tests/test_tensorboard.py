"""The embedded TensorBoard: a real TensorBoard behind jupyter-server-proxy, in a real ``jupyter server``.

Two python-script jobs write scalars with torch's SummaryWriter into
``$CLUSTERLAB_OUTPUT/tensorboard``; the API starts one TensorBoard over one
of them, then both, and the tests read its data through the server's
``/proxy/<port>/`` route with the server's token, as the panel's IFrame does.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import psutil
import pytest
import requests
from jupyter_server_process import JupyterServer

WRITE_EVENTS = """\
import os, sys
from torch.utils.tensorboard import SummaryWriter

writer = SummaryWriter(os.path.join(os.environ["CLUSTERLAB_OUTPUT"], "tensorboard"))
for step in range(5):
    for tag in sys.argv[1:]:
        writer.add_scalar(tag, 1.0 / (step + 1), step)
writer.close()
"""


def make_server(root: Path, **config) -> JupyterServer:
    """A server in its own HOME; ``config`` goes to ClusterLabApp through HOME/.jupyter."""
    (root / "workspace").mkdir(parents=True)
    (root / "workspace" / "write_events.py").write_text(WRITE_EVENTS)
    if config:
        (root / ".jupyter").mkdir()
        (root / ".jupyter" / "jupyter_server_config.json").write_text(json.dumps({"ClusterLabApp": config}))
    return JupyterServer(root).start()


def tensorboard(server: JupyterServer, method: str, body=None) -> tuple[int, dict]:
    kwargs = {} if body is None else {"data": body if isinstance(body, str) else json.dumps(body)}
    response = server.call(method, "tensorboard", **kwargs)
    return response.status_code, response.json()


def proxied(server: JupyterServer, url: str, path: str = "", **kwargs) -> requests.Response:
    kwargs.setdefault("headers", server.headers)
    return requests.get(f"{server.url}{url}{path}", timeout=10, allow_redirects=False, **kwargs)


def scalar_tags(server: JupyterServer, url: str, runs: set[str], timeout: float = 20) -> dict:
    """``data/plugin/scalars/tags`` through the proxy, once TensorBoard has loaded these runs."""
    deadline = time.monotonic() + timeout
    while True:
        response = proxied(server, url, "data/plugin/scalars/tags")
        assert response.status_code == 200, response.text
        tags = response.json()
        if set(tags) >= runs or time.monotonic() > deadline:
            return tags
        time.sleep(0.2)


def gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("tensorboard"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def jobs(server):
    """Two finished jobs with scalars: {"a": job, "b": job}."""
    submitted = {}
    for key, name, tags in (("a", "mnist", ["loss/train", "accuracy"]), ("b", "cifar", ["loss/train", "lr"])):
        response = server.call("POST", "jobs", json={"template": "python-script", "name": name,
                                                     "params": {"script": "write_events.py", "args": tags}})
        assert response.status_code == 201, response.text
        submitted[key] = response.json()
    deadline = time.monotonic() + 40
    for key, job in submitted.items():
        while (job := server.call("GET", f"jobs/{job['id']}").json())["status"] not in ("completed", "failed"):
            assert time.monotonic() < deadline, "the event-writing jobs did not finish"
            time.sleep(0.2)
        assert job["status"] == "completed", server.call("GET", f"jobs/{job['id']}/log").json()["text"]
        submitted[key] = job
    return submitted


def run(job: dict) -> str:
    return f"{job['name']}-{job['id']}"


def workdir(state: dict) -> Path:
    """TensorBoard's folder of links and log in the temp folder (it runs in it)."""
    return Path(os.readlink(f"/proc/{state['pid']}/cwd"))


def removed(path: Path, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not path.exists()


def test_installing_jupyter_server_proxy_enables_it():
    enabled = Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d" / "jupyter-server-proxy.json"
    assert json.loads(enabled.read_text())["ServerApp"]["jpserver_extensions"]["jupyter_server_proxy"] is True


def test_one_job_then_both_through_the_proxy(server, jobs):
    a, b = jobs["a"], jobs["b"]
    status, state = tensorboard(server, "GET")
    assert status == 200 and state["running"] is False and state["url"] is None

    status, one = tensorboard(server, "POST", {"jobs": [a["id"]]})
    assert status == 200 and one["running"] and one["jobs"] == [a["id"]], one
    assert one["url"].startswith(f"/proxy/{one['port']}/") and one["url"].endswith("/")
    assert one["runs"] == [{"job": a["id"], "run": run(a)}]
    tags = scalar_tags(server, one["url"], {run(a)})
    assert set(tags) == {run(a)} and set(tags[run(a)]) == {"loss/train", "accuracy"}
    index = proxied(server, one["url"])
    # the page and its script load through it too (the page names everything relative to itself)
    assert index.status_code == 200 and "<tb-webapp>" in index.text and 'src="index.js' in index.text
    assert proxied(server, one["url"], "index.js").status_code == 200
    assert tensorboard(server, "GET")[1] == one

    status, both = tensorboard(server, "POST", {"jobs": [b["id"], a["id"]]})
    assert status == 200 and set(both["jobs"]) == {a["id"], b["id"]} and both["pid"] != one["pid"]
    assert gone(one["pid"]), "the TensorBoard over one job still runs"
    tags = scalar_tags(server, both["url"], {run(a), run(b)})
    assert set(tags) == {run(a), run(b)} and set(tags[run(b)]) == {"loss/train", "lr"}

    # the same jobs again (the panel reopening, or its keep-alive): the same TensorBoard
    assert tensorboard(server, "POST", {"jobs": [a["id"], b["id"], a["id"]]})[1]["pid"] == both["pid"]
    status, every = tensorboard(server, "POST", {})  # no jobs named: all of them
    assert status == 200 and set(every["jobs"]) == {a["id"], b["id"]}
    assert set(scalar_tags(server, every["url"], {run(a), run(b)})) == {run(a), run(b)}


def test_the_page_fonts_load_under_its_prefix(server, jobs):
    """TensorBoard's page names its fonts ``url(/font-roboto/…)``, from the site's root: behind the
    proxy that is the hub's, which answers 404 (four ``/hub/font-roboto/*.woff2`` per load). The page
    we serve names them relative to itself, as a browser resolves them, under TensorBoard's prefix."""
    status, state = tensorboard(server, "POST", {"jobs": [jobs["a"]["id"]]})
    assert status == 200
    page_url = f"{server.url}{state['url']}"
    page = proxied(server, state["url"])
    assert page.status_code == 200
    fonts = set(re.findall(r"url\(['\"]?([^'\")]+\.woff2)", page.text))
    assert len(fonts) >= 4, "TensorBoard's page names no fonts any more: update this test"
    for font in sorted(fonts):
        url = urljoin(page_url, font)
        assert urlsplit(url).path.startswith(state["url"]), f"{font} resolves outside TensorBoard: {url}"
        response = requests.get(url, headers=server.headers, timeout=10, allow_redirects=False)
        assert response.status_code == 200 and response.content, (font, response.status_code)


def test_unknown_jobs_and_bad_bodies_are_refused(server, jobs):
    status, body = tensorboard(server, "POST", {"jobs": [jobs["a"]["id"], "20990101-000000-abcdef"]})
    assert status == 404 and body["field"] == "jobs" and "20990101-000000-abcdef" in body["error"]
    assert tensorboard(server, "POST", {"jobs": "all"}) == (400, {"error": "jobs must be a list of job ids",
                                                                 "field": "jobs"})
    assert tensorboard(server, "POST", {"jobs": [1]})[1]["field"] == "jobs"
    assert tensorboard(server, "POST", {"logdir": "/"})[1]["field"] == "logdir"
    assert tensorboard(server, "POST", "[]")[0] == 400
    assert tensorboard(server, "POST", "{nope")[0] == 400


def test_only_the_owner_gets_through(server, jobs, tmp_path):
    status, state = tensorboard(server, "POST", {"jobs": [jobs["a"]["id"]]})
    assert status == 200
    assert run(jobs["a"]) in scalar_tags(server, state["url"], {run(jobs["a"])})
    for headers in ({}, {"Authorization": "token not-the-token"}):
        refused = proxied(server, state["url"], "data/plugin/scalars/tags", headers=headers)
        assert refused.status_code in (302, 403), refused.status_code
        assert "loss/train" not in refused.text
        if refused.status_code == 302:
            assert "/login" in refused.headers["Location"]
    assert requests.get(f"{server.api}/tensorboard", timeout=10).status_code == 403
    # another user on the node, straight to the port (or through their own server's proxy):
    # without the private prefix TensorBoard has nothing to say
    direct = requests.get(f"http://127.0.0.1:{state['port']}/data/plugin/scalars/tags", timeout=10)
    assert direct.status_code == 404 and "loss" not in direct.text
    assert proxied(server, f"/proxy/{state['port']}/", "data/plugin/scalars/tags").status_code == 404
    # and the prefix is nowhere `ps` shows it to them
    prefix = state["url"].rstrip("/").rsplit("/", 1)[1]
    assert len(prefix) == 32
    assert not any(prefix in " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"]))


def test_delete_stops_it(server, jobs):
    status, state = tensorboard(server, "POST", {"jobs": [jobs["b"]["id"]]})
    assert status == 200 and psutil.pid_exists(state["pid"])
    folder = workdir(state)
    assert folder.name.startswith("clusterlab-tensorboard-") and (folder / "runs").is_dir()
    status, stopped = tensorboard(server, "DELETE")
    assert status == 200 and stopped["running"] is False and stopped["pid"] is None
    assert gone(state["pid"], timeout=1)
    assert not folder.exists(), "a stopped TensorBoard left its folder in the temp folder"
    assert tensorboard(server, "GET")[1]["running"] is False
    assert tensorboard(server, "DELETE")[0] == 200  # stopping a stopped one is no error


def test_idle_stop_and_stop_with_the_server(tmp_path, server):
    other = make_server(tmp_path, tensorboard_idle_timeout=2)
    try:
        status, state = tensorboard(other, "POST")  # no jobs at all yet: an empty TensorBoard
        assert status == 200 and state["running"] and state["jobs"] == [] and state["idle_timeout"] == 2
        folder = workdir(state)
        # another user's token (this second server's) does not open the first one's TensorBoard
        _, mine = tensorboard(server, "POST")
        assert proxied(server, mine["url"], "data/runs", headers=other.headers).status_code in (302, 403)

        # in use through the proxy: it stays up past its idle timeout
        used_until = time.monotonic() + 4
        while time.monotonic() < used_until:
            assert proxied(other, state["url"], "data/runs").status_code == 200
            time.sleep(0.3)
        assert tensorboard(other, "GET")[1]["pid"] == state["pid"]
        # then left alone: stopped
        deadline = time.monotonic() + 10
        while tensorboard(other, "GET")[1]["running"]:
            assert time.monotonic() < deadline, "an idle TensorBoard was not stopped"
            time.sleep(0.2)
        assert gone(state["pid"], timeout=1)
        assert removed(folder), "an idle-stopped TensorBoard left its folder"

        _, again = tensorboard(other, "POST")
        assert again["running"] and again["pid"] != state["pid"]
        folder = workdir(again)
    finally:
        other.stop()
    assert gone(again["pid"], timeout=1), "TensorBoard outlived its server"
    assert not folder.exists(), "TensorBoard's folder outlived its server"
    assert "Traceback" not in other.log_text()


def test_a_server_ended_without_its_cleanup_leaves_no_folder(tmp_path):
    """SIGINT ends a jupyter server whose stdin is no terminal at once (KeyboardInterrupt), without
    stopping its extensions: TensorBoard goes with it (the parent-death signal), its folder at exit."""
    other = make_server(tmp_path)
    try:
        status, state = tensorboard(other, "POST")
        assert status == 200
        folder = workdir(state)
        other.proc.send_signal(signal.SIGINT)
        other.proc.wait(timeout=30)
    finally:
        other.stop()
    assert gone(state["pid"]), "TensorBoard outlived its interrupted server"
    assert removed(folder, timeout=1), "an interrupted server left TensorBoard's folder"
