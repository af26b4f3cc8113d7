"""The REST API of the job service, in a real jupyter_server (pytest-jupyter's jp_fetch).

pytest-jupyter's fixtures are imported into this module only: its autouse
fixtures would otherwise start a ServerApp around every test of the suite.
The server runs on pytest-jupyter's own event loop, so the tests are plain
functions that drive it with ``call``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jsonschema
import pytest
from clusterlab_server.openapi import openapi_document
from pytest_jupyter.jupyter_core import *  # noqa: F403 (fixtures)
from pytest_jupyter.jupyter_server import *  # noqa: F403 (fixtures)
from tornado.httpclient import HTTPClientError
from test_jobs_service import CANARY, HELLO, HOSTILE, PROFILES, make_sized_template


@pytest.fixture
def jp_server_config(tmp_path):
    return {
        "ServerApp": {"jpserver_extensions": {"clusterlab_server": True}},
        "ClusterLabApp": {
            "backend": "local",
            "jobs_root": str(tmp_path / "jobs"),
            "profiles_file": str(PROFILES),
            "template_paths": [str(make_sized_template(tmp_path, "gpu-1"))],
            "poll_interval": 0.2,
        },
    }


@pytest.fixture
def api(jp_root_dir, jp_serverapp, jp_fetch, jp_asyncio_loop):
    """``api(method, *path, body=..., **query)`` -> (status, JSON), against the running server."""
    (jp_root_dir / "src").mkdir(exist_ok=True)
    (jp_root_dir / "src" / "hello.py").write_text(HELLO)
    (jp_root_dir / "sleepy.py").write_text("import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n")

    def call(method, *path, body=None, **query):
        kwargs = {"method": method, "params": query}
        if body is not None:
            kwargs["body"] = body if isinstance(body, (str, bytes)) else json.dumps(body)
        elif method in ("POST", "PUT"):
            kwargs["body"] = "{}"
        try:
            response = jp_asyncio_loop.run_until_complete(jp_fetch("clusterlab", "api", *path, **kwargs))
        except HTTPClientError as e:
            response = e.response
        return response.code, json.loads(response.body or b"null")

    return call


def wait_status(api, job_id, statuses=("completed", "failed", "cancelled"), timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, job = api("GET", "jobs", job_id)
        assert status == 200
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    raise TimeoutError(job)


def test_templates_and_profiles_are_listed(api):
    status, body = api("GET", "templates")
    assert status == 200 and body["problems"] == []
    script = next(t for t in body["templates"] if t["id"] == "python-script")
    assert script["kind"] == "script" and "script" in script["parameters"]["properties"]
    assert api("GET", "templates", "python-script")[1]["name"] == "Python script"
    status, missing = api("GET", "templates", "nope")
    assert status == 404 and missing["field"] == "id"
    status, sizes = api("GET", "profiles")
    assert status == 200 and {p["id"] for p in sizes["profiles"]} >= {"cpu-small", "gpu-1"}


def test_submit_follow_log_and_list(api, jp_root_dir):
    status, job = api("POST", "jobs", body={
        "template": "python-script", "name": "hello_api", "params": {"script": "src/hello.py", "args": ["x"]},
        "profile": "cpu-small",
    })
    assert status == 201, job
    assert job["status"] == "queued" and job["params"] == {"script": "src/hello.py", "args": ["x"], "options": {}}
    done = wait_status(api, job["id"])
    assert done["status"] == "completed" and done["exit_code"] == 0
    status, log = api("GET", "jobs", job["id"], "log", offset="0")
    assert status == 200 and "hello from ['x']" in log["text"] and log["done"]
    status, rest = api("GET", "jobs", job["id"], "log", offset=str(log["offset"]), follow="1")
    assert status == 200 and rest["text"] == ""  # the job is over: follow does not wait
    status, page = api("GET", "jobs", status="completed", template="python-script")
    assert status == 200 and page["total"] == 1 and page["jobs"][0]["id"] == job["id"]
    assert api("GET", "jobs", limit="0")[0] == 400
    assert api("GET", "jobs", status="bogus")[1]["field"] == "status"


def test_follow_mode_waits_for_new_log_lines(api):
    _, job = api("POST", "jobs", body={"template": "python-script", "name": "s", "params": {"script": "sleepy.py"}})
    started, text, offset = time.monotonic(), "", 0
    while "sleeping" not in text and time.monotonic() - started < 15:
        status, chunk = api("GET", "jobs", job["id"], "log", offset=str(offset), follow="1")
        assert status == 200 and chunk["text"], "follow answered with nothing new"
        text, offset = text + chunk["text"], chunk["offset"]
    assert "sleeping" in text
    status, cancelled = api("DELETE", "jobs", job["id"])
    assert status == 200 and cancelled["status"] == "cancelled"
    assert api("DELETE", "jobs", job["id"])[0] == 409


def test_rerun_with_changed_params(api):
    _, first = api("POST", "jobs", body={"template": "python-script", "name": "r",
                                         "params": {"script": "src/hello.py", "args": ["1"]}})
    status, second = api("POST", "jobs", first["id"], "rerun", body={"params": {"args": ["2"]}})
    assert status == 201 and second["rerun_of"] == first["id"] and second["params"]["args"] == ["2"]
    assert api("POST", "jobs", "nope", "rerun", body={})[0] == 404
    assert api("POST", "jobs", first["id"], "rerun", body={"params": {"bogus": 1}})[1]["field"] == "params.bogus"


@pytest.mark.parametrize("request_body, field", HOSTILE)
def test_bad_input_is_a_4xx_naming_the_field(api, tmp_path, request_body, field):
    status, body = api("POST", "jobs", body=request_body)
    assert 400 <= status < 500 and body["field"] == field, body
    assert api("GET", "jobs")[1]["total"] == 0
    assert [p.name for p in (tmp_path / "jobs").iterdir() if not p.name.startswith("jobs.sqlite")] == []
    assert not Path(CANARY).exists()


def test_malformed_and_oversized_bodies(api):
    assert api("POST", "jobs", body="{not json")[0] == 400
    status, body = api("POST", "jobs", body=json.dumps({"template": "python-script", "name": "x" * 300_000}))
    assert status == 413 and "larger" in body["error"]


def test_installing_the_package_enables_the_extension_and_quiets_jupyterlab():
    installed = Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d" / "clusterlab_server.json"
    assert json.loads(installed.read_text())["ServerApp"]["jpserver_extensions"]["clusterlab_server"] is True
    overrides = json.loads((Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json").read_text())
    assert overrides["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"


def test_gpu_status_says_when_none_is_granted(api, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    status, body = api("GET", "gpus")
    assert status == 200 and body == {"granted": [], "gpus": [], "message": "no GPU granted"}



def metrics_line(epoch, epochs, **metrics):
    return json.dumps({"step": epoch * 10, "epoch": epoch, "epochs": epochs, "time": 1700000000.0 + epoch,
                       "metrics": metrics}) + "\n"


def test_progress_and_metrics_come_from_metrics_jsonl(api):
    _, job = api("POST", "jobs", body={"template": "python-script", "name": "m", "params": {"script": "src/hello.py"}})
    job = wait_status(api, job["id"])
    assert job["progress"] is None  # no metrics.jsonl
    assert api("GET", "jobs", job["id"], "metrics") == (200, {"points": []})
    metrics = Path(job["folder"]) / "output" / "metrics.jsonl"
    metrics.write_text(metrics_line(1, 4, loss=0.9) + '{"step": 20, "epoch": 2, "epo')  # killed mid-write
    assert api("GET", "jobs", job["id"])[1]["progress"] == {
        "epoch": 1, "epochs": 4, "fraction": 0.25, "metrics": {"loss": 0.9}}
    metrics.write_text(metrics_line(1, 4, loss=0.9) + metrics_line(2, 4, loss=0.5, accuracy=0.8) + '{"step": 30, "ep')
    expected = {"epoch": 2, "epochs": 4, "fraction": 0.5, "metrics": {"loss": 0.5, "accuracy": 0.8}}
    assert api("GET", "jobs", job["id"])[1]["progress"] == expected
    _, page = api("GET", "jobs")
    assert page["jobs"][0]["progress"] == expected
    status, body = api("GET", "jobs", job["id"], "metrics")
    assert status == 200 and [p["epoch"] for p in body["points"]] == [1, 2]
    documented = api("GET", "openapi.json")[1]["paths"]["/jobs/{job_id}/metrics"]["get"]["responses"]["200"]
    jsonschema.validate(body, documented["content"]["application/json"]["schema"])
    jsonschema.validate(page["jobs"][0], openapi_document()["components"]["schemas"]["Job"])
    assert body["points"][1] == {"step": 20, "epoch": 2, "epochs": 4, "time": 1700000002.0,
                                 "metrics": {"loss": 0.5, "accuracy": 0.8}}
    metrics.write_text("")
    assert api("GET", "jobs", job["id"])[1]["progress"] is None
    status, missing = api("GET", "jobs", "nope", "metrics")
    assert status == 404 and missing["field"] == "id"


def test_profiles_say_whether_this_server_can_run_them(api, monkeypatch):
    monkeypatch.setattr("clusterlab_server.backends.local.server_cores", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    status, body = api("GET", "profiles")
    availability = {p["id"]: p["availability"] for p in body["profiles"]}
    assert status == 200 and body["backend"] == "local"
    assert availability["cpu-small"] == {"state": "free", "reason": ""}
    assert availability["gpu-1"] == {"state": "impossible", "reason": "needs 1 GPU; this server was granted none"}
    assert availability["cpu-large"] == {"state": "impossible", "reason": "needs 8 cores; this server was granted 4"}

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    availability = {p["id"]: p["availability"] for p in api("GET", "profiles")[1]["profiles"]}
    assert availability["gpu-1"] == {"state": "free", "reason": ""}
    assert availability["gpu-4"] == {"state": "impossible", "reason": "needs 4 GPUs; this server was granted 1"}


def test_a_size_this_server_cannot_run_is_refused_and_nothing_is_made(api, tmp_path, monkeypatch):
    """What GET profiles marks impossible (the form greys it out), POST jobs refuses: one rule."""
    monkeypatch.setattr("clusterlab_server.backends.local.server_cores", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    hello = {"template": "python-script", "name": "too_big", "params": {"script": "src/hello.py"}}
    for profile, why in [("gpu-4", "needs 4 GPUs; this server was granted none"),
                         ("cpu-large", "needs 8 cores; this server was granted 4")]:
        status, body = api("POST", "jobs", body={**hello, "profile": profile})
        assert (status, body) == (400, {"error": f"{profile} cannot run here: {why}", "field": "profile"})
        sizes = api("GET", "profiles")[1]["profiles"]
        assert next(p for p in sizes if p["id"] == profile)["availability"] == {"state": "impossible", "reason": why}
    assert api("GET", "jobs")[1]["total"] == 0
    assert [p.name for p in (tmp_path / "jobs").iterdir() if not p.name.startswith("jobs.sqlite")] == []


def test_without_a_size_the_templates_default_is_used_only_if_it_can_run(api, monkeypatch):
    monkeypatch.setattr("clusterlab_server.backends.local.server_cores", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    request = {"template": "sized-script", "name": "sized", "params": {"script": "src/hello.py"}}  # default: gpu-1
    status, job = api("POST", "jobs", body=request)
    assert status == 201 and job["profile"] == "cpu-small", job  # no GPU here: the first size that can run
    # the job form's first choice is the same (it asks GET profiles?template=)
    form = api("GET", "profiles", template="sized-script")[1]["default"]
    assert form == {"id": "cpu-small", "why": "the first size that can run here; the template's default, gpu-1, "
                                              "cannot: needs 1 GPU; this server was granted none"}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    status, on_gpu = api("POST", "jobs", body=request)
    assert status == 201 and on_gpu["profile"] == "gpu-1", on_gpu
    assert api("GET", "profiles", template="sized-script")[1]["default"]["id"] == "gpu-1"
    wait_status(api, job["id"]), wait_status(api, on_gpu["id"])

    # a rerun keeps its size, or takes another, by the same rule
    assert api("POST", "jobs", job["id"], "rerun", body={"profile": "gpu-4"}) == (
        400, {"error": "gpu-4 cannot run here: needs 4 GPUs; this server was granted 1", "field": "profile"})
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert api("POST", "jobs", on_gpu["id"], "rerun", body={}) == (
        400, {"error": "gpu-1 cannot run here: needs 1 GPU; this server was granted none", "field": "profile"})
    assert api("GET", "jobs")[1]["total"] == 2
