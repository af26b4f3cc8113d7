"""The REST API of datasets, job inputs and projects, in a real jupyter_server (pytest-jupyter's jp_fetch).

As in test_jobs_api.py, pytest-jupyter's fixtures are imported into this module
only, and the tests drive the server on its own event loop with ``api``. The
user's datasets are beside the jobs (``<tmp>/datasets``); the site's in
``<tmp>/site``, made as an admin would, in-process. Another user's data being out
of reach is the hub tests' to show (each server runs as its user).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from clusterlab_server.handlers import handlers
from clusterlab_server.openapi import openapi_document
from clusterlab_server.service import JobService, Settings
from pytest_jupyter.jupyter_core import *  # noqa: F403 (fixtures)
from pytest_jupyter.jupyter_server import *  # noqa: F403 (fixtures)
from jupyter_server.utils import url_path_join
from tornado.httpclient import HTTPClientError
from test_jobs_api import wait_status
from test_jobs_service import HELLO, PROFILES, REPO

QUOTA_GB = 0.00005  # 50 kB: the test folders fit, a 60 kB one does not
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
# a job that lists what it was given and leaves an output another job can mount
READER = """\
import os, pathlib
given = pathlib.Path(os.environ["CLUSTERLAB_INPUT"])
for folder, _, names in sorted(os.walk(given, followlinks=True)):  # input/<as> may be a link to the version
    for name in sorted(names):
        path = pathlib.Path(folder, name)
        print("saw", path.relative_to(given), path.read_bytes()[:20], flush=True)
pathlib.Path("model.txt").write_text("weights")
"""
SLEEPY = "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n"


@pytest.fixture
def jp_server_config(tmp_path):
    return {
        "ServerApp": {"jpserver_extensions": {"clusterlab_server": True}},
        "ClusterLabApp": {
            "backend": "local",
            "jobs_root": str(tmp_path / "jobs"),
            "profiles_file": str(PROFILES),
            "site_datasets": str(tmp_path / "site"),
            "datasets_quota_gb": QUOTA_GB,
            "poll_interval": 0.2,
        },
    }


@pytest.fixture
def workspace(jp_root_dir):
    """Folders to make datasets of, and the scripts the jobs run."""
    (jp_root_dir / "shapes" / "circle").mkdir(parents=True)
    (jp_root_dir / "shapes" / "circle" / "a.png").write_bytes(PNG)
    (jp_root_dir / "shapes" / "labels.csv").write_text("file,label\ncircle/a.png,circle\n")
    (jp_root_dir / "shapes" / "notes.txt").write_text("three shapes\n")
    (jp_root_dir / "shapes" / "page.html").write_text("<script>alert(1)</script>")
    (jp_root_dir / "shapes" / "drawing.svg").write_text("<svg onload='alert(1)'/>")
    (jp_root_dir / "big").mkdir()
    (jp_root_dir / "big" / "blob.bin").write_bytes(b"\1" * 60_000)
    (jp_root_dir / "reader.py").write_text(READER)
    (jp_root_dir / "sleepy.py").write_text(SLEEPY)
    (jp_root_dir / "src").mkdir(exist_ok=True)
    (jp_root_dir / "src" / "hello.py").write_text(HELLO)
    return jp_root_dir


@pytest.fixture
def fetch(jp_serverapp, jp_fetch, jp_asyncio_loop):
    """``fetch(method, *path, body=..., **query)`` -> the raw response (errors too)."""

    def call(method, *path, body=None, **query):
        kwargs = {"method": method, "params": query}
        if body is not None:
            kwargs["body"] = body if isinstance(body, (str, bytes)) else json.dumps(body)
        elif method in ("POST", "PUT"):
            kwargs["body"] = "{}"
        try:
            return jp_asyncio_loop.run_until_complete(jp_fetch("clusterlab", "api", *path, **kwargs))
        except HTTPClientError as e:
            return e.response

    return call


@pytest.fixture
def fetch_raw(jp_serverapp, http_server_client, jp_auth_header, jp_base_url, jp_asyncio_loop):
    """``fetch_raw("datasets/x/1/files/%2e%2e/...")``: GET that path of the API as it is, not escaped again."""

    def call(path):
        url = url_path_join(jp_base_url, "clusterlab/api/") + path
        try:
            return jp_asyncio_loop.run_until_complete(http_server_client.fetch(url, headers=jp_auth_header))
        except HTTPClientError as e:
            return e.response

    return call


@pytest.fixture
def api(fetch, workspace):
    """``api(method, *path, body=..., **query)`` -> (status, JSON)."""

    def call(method, *path, body=None, **query):
        response = fetch(method, *path, body=body, **query)
        return response.code, json.loads(response.body or b"null")

    return call


def conforms(body, schema_name: str) -> None:
    """``body`` matches the OpenAPI document's ``components/schemas/<schema_name>``."""
    jsonschema.validate(body, {"$ref": f"#/components/schemas/{schema_name}", **openapi_document()})


def documented(path: str, method: str = "get", status: str = "200") -> dict:
    operation = openapi_document()["paths"][path][method]
    return operation["responses"][status]["content"]["application/json"]["schema"]


def make_site_dataset(tmp_path: Path, workspace: Path, name: str) -> None:
    """What ``clusterlab data create --site`` does for an admin: a version in the site's store."""
    settings = Settings(jobs_root=tmp_path / "admin-jobs", workspace=workspace, template_paths=[REPO / "templates"],
                        profiles_file=PROFILES, site_datasets=tmp_path / "site")
    JobService(settings).datasets.create({"name": name, "folder": "shapes", "description": "the site's"}, site=True)


# ----- making and reading versions ------------------------------------------------------------


def test_a_folder_becomes_numbered_versions(api, workspace):
    status, first = api("POST", "datasets", body={"name": "shapes", "folder": "shapes", "description": "3 shapes",
                                                  "project": "vision"})
    assert status == 201, first
    conforms(first, "DatasetVersion")
    assert (first["name"], first["version"], first["files"], first["project"]) == ("shapes", 1, 5, "vision")
    assert first["new_bytes"] == first["bytes"] and not first["shared"] and first["digest"].startswith("sha256:")
    # unchanged files are stored once: a second version of the same folder adds nothing
    (workspace / "shapes" / "more.txt").write_text("one more\n")
    status, second = api("POST", "datasets", body={"name": "shapes", "folder": str(workspace / "shapes"),
                                                   "project": "vision"})
    assert status == 201 and second["version"] == 2 and second["files"] == 6
    assert second["new_bytes"] == len("one more\n") and second["digest"] != first["digest"]

    status, listed = api("GET", "datasets")
    assert status == 200 and [d["name"] for d in listed["datasets"]] == ["shapes"]
    jsonschema.validate(listed, {**documented("/datasets"), **openapi_document()})
    status, dataset = api("GET", "datasets", "shapes")
    assert status == 200 and dataset["latest"] == 2 and [v["version"] for v in dataset["versions"]] == [2, 1]
    conforms(dataset, "Dataset")
    assert api("GET", "datasets", project="vision")[1]["datasets"][0]["name"] == "shapes"
    assert api("GET", "datasets", project="other") == (200, {"datasets": []})

    status, version = api("GET", "datasets", "shapes", "1")
    assert status == 200 and version["digest"] == first["digest"] and version["used_by"] == []
    conforms(version, "DatasetVersion")
    status, manifest = api("GET", "datasets", "shapes", "1", "manifest")
    assert status == 200 and manifest["digest"] == first["digest"] and manifest["count"] == 5
    assert [f["path"] for f in manifest["files"]] == sorted(f["path"] for f in manifest["files"])
    jsonschema.validate(manifest, documented("/datasets/{name}/{version}/manifest"))
    status, preview = api("GET", "datasets", "shapes", "2", "preview")
    assert status == 200 and preview["images"] == [{"path": "circle/a.png", "size": len(PNG)}]
    assert preview["table"] == {"path": "labels.csv", "header": ["file", "label"], "rows": [["circle/a.png", "circle"]]}
    jsonschema.validate(preview, documented("/datasets/{name}/{version}/preview"))


def test_create_refuses_naming_the_field_and_makes_nothing(api, tmp_path):
    refusals = [
        ({"name": "a b", "folder": "shapes"}, 400, "name"),
        ({"name": "../x", "folder": "shapes"}, 400, "name"),
        ({"folder": "shapes"}, 400, "name"),
        ({"name": "x", "folder": "/etc"}, 400, "folder"),
        ({"name": "x", "folder": "../.."}, 400, "folder"),
        ({"name": "x", "folder": "nope"}, 400, "folder"),
        ({"name": "x", "folder": "reader.py"}, 400, "folder"),
        ({"name": "x"}, 400, "folder"),
        ({"name": "x", "folder": "shapes", "project": "a/b"}, 400, "project"),
        ({"name": "x", "folder": "shapes", "description": "d" * 2001}, 400, "description"),
        ({"name": "x", "folder": "shapes", "site": True}, 400, "site"),  # not the API's: an admin's CLI
        ({"name": "x", "folder": "big"}, 413, "folder"),  # over the user's quota
    ]
    for body, code, field in refusals:
        status, answer = api("POST", "datasets", body=body)
        assert (status, answer["field"]) == (code, field), (body, answer)
    assert api("POST", "datasets", body="{not json")[0] == 400
    assert api("POST", "datasets", body="[]")[0] == 400
    assert api("GET", "datasets") == (200, {"datasets": []})
    objects = tmp_path / "datasets" / "objects"
    assert not objects.exists() or not any(p.is_file() for p in objects.rglob("*"))


def test_unknown_and_malformed_names_and_versions(api):
    assert api("POST", "datasets", body={"name": "shapes", "folder": "shapes"})[0] == 201
    expected = [
        (("datasets", "nope"), 404, "name"),
        (("datasets", "nope", "1"), 404, "name"),
        (("datasets", "shapes", "7"), 404, "version"),
        (("datasets", "shapes", "7", "manifest"), 404, "version"),
        (("datasets", "shapes", "7", "preview"), 404, "version"),
        (("datasets", "shapes", "7", "files", "notes.txt"), 404, "version"),
        (("datasets", "a-b"), 400, "name"),
        (("datasets", "a b", "1"), 400, "name"),
        (("datasets", "x" * 101), 400, "name"),
        (("datasets", "shapes", "latest"), 400, "version"),
        (("datasets", "shapes", "0"), 400, "version"),
        (("datasets", "shapes", "-1", "manifest"), 400, "version"),
        (("datasets", "shapes", "1.5", "preview"), 400, "version"),
        (("datasets", "shapes", "9" * 40), 400, "version"),
        (("datasets", "shapes", "1", "files", "missing.txt"), 404, "path"),
    ]
    for path, code, field in expected:
        status, body = api("GET", *path)
        assert (status, body["field"]) == (code, field), (path, body)
    assert api("DELETE", "datasets", "shapes", "7")[0] == 404
    assert api("DELETE", "datasets", "shapes", "x")[1]["field"] == "version"
    assert api("GET", "datasets", project="a-b")[1]["field"] == "project"


# ----- the file endpoint ----------------------------------------------------------------------


def test_files_are_served_by_type_never_as_a_page(fetch, fetch_raw, api, workspace, monkeypatch):
    assert api("POST", "datasets", body={"name": "shapes", "folder": "shapes"})[0] == 201
    monkeypatch.setattr("clusterlab_server.handlers.FILE_CHUNK_BYTES", 7)  # streamed in pieces, whole at the end
    for path, content_type, disposition in [
        ("circle/a.png", "image/png", "inline"),
        ("labels.csv", "text/csv; charset=utf-8", "inline"),
        ("notes.txt", "text/plain; charset=utf-8", "inline"),
        ("page.html", "application/octet-stream", "attachment"),
        ("drawing.svg", "application/octet-stream", "attachment"),
    ]:
        response = fetch("GET", "datasets", "shapes", "1", "files", *path.split("/"))
        assert response.code == 200, (path, response.body)
        assert response.headers["Content-Type"] == content_type, path
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Disposition"].startswith(disposition)
        assert response.body == (workspace / "shapes" / path).read_bytes()
    assert fetch_raw("datasets/shapes/1/files/circle%2Fa.png").body == PNG  # an encoded slash is a slash


def test_the_file_endpoint_refuses_paths_out_of_the_version(fetch_raw, api, tmp_path):
    assert api("POST", "datasets", body={"name": "shapes", "folder": "shapes"})[0] == 201
    (tmp_path / "secret.txt").write_text("not yours")
    assert fetch_raw("datasets/shapes/1/files/notes.txt").code == 200
    escapes = [
        "../manifest.json",  # the version's own manifest, beside files/
        "%2e%2e/manifest.json",
        "%2e%2e/%2e%2e/next",
        "..%2F..%2F..%2F..%2F..%2Fsecret.txt",
        "circle/../../manifest.json",
        "circle/%2E%2E/%2E%2E/manifest.json",
        "%2Fetc%2Fpasswd",
        "/etc/passwd",  # files//etc/passwd
        "notes.txt%00.png",
        "notes.txt%5C..%5C..%5Cmanifest.json",  # backslashes
        "circle",  # a folder is not a file
        "circle/",
        ".",
        "./notes.txt/..",
    ]
    for path in escapes:
        response = fetch_raw(f"datasets/shapes/1/files/{path}")
        assert response.code == 404, (path, response.code, response.body)
        assert json.loads(response.body)["field"] == "path", path
        assert b"not yours" not in response.body and b"root:" not in response.body


# ----- deleting -------------------------------------------------------------------------------


def test_a_version_in_use_is_not_deleted_and_numbers_are_not_reused(api):
    assert api("POST", "datasets", body={"name": "shapes", "folder": "shapes"})[0] == 201
    status, job = api("POST", "jobs", body={"template": "python-script", "name": "uses_it",
                                            "params": {"script": "sleepy.py"}, "inputs": [{"dataset": "shapes"}]})
    assert status == 201, job
    assert [(i["as"], i["dataset"], i["version"]) for i in job["inputs"]] == [("shapes", "shapes", 1)]
    status, refused = api("DELETE", "datasets", "shapes", "1")
    assert status == 409 and refused["field"] == "version" and job["id"] in refused["error"]
    wait_status(api, job["id"], ("running",))
    assert api("GET", "datasets", "shapes", "1")[1]["used_by"] == [
        {"id": job["id"], "name": "uses_it", "status": "running", "as": "shapes"}]
    assert api("DELETE", "jobs", job["id"])[0] == 200
    assert api("DELETE", "datasets", "shapes", "1") == (204, None)
    assert api("GET", "datasets", "shapes")[1]["field"] == "name"  # its last version: the dataset is gone
    assert api("GET", "datasets") == (200, {"datasets": []})
    status, again = api("POST", "datasets", body={"name": "shapes", "folder": "shapes"})
    assert status == 201 and again["version"] == 2


def test_site_datasets_are_listed_after_ones_own_and_cannot_be_deleted(api, fetch, tmp_path, workspace):
    make_site_dataset(tmp_path, workspace, "common")
    assert api("POST", "datasets", body={"name": "mine", "folder": "shapes"})[0] == 201
    status, listed = api("GET", "datasets")
    assert [(d["name"], d["shared"]) for d in listed["datasets"]] == [("mine", False), ("common", True)]
    status, refused = api("DELETE", "datasets", "common", "1")
    assert (status, refused["field"]) == (403, "name") and "site dataset" in refused["error"]
    jsonschema.validate(refused, {**documented("/datasets/{name}/{version}", "delete", "403"),
                                  **openapi_document()})
    status, taken = api("POST", "datasets", body={"name": "common", "folder": "shapes"})
    assert (status, taken["field"]) == (409, "name")
    assert fetch("GET", "datasets", "common", "1", "files", "notes.txt").body == b"three shapes\n"
    status, shared = api("GET", "datasets", "common", "1")
    assert status == 200 and shared["shared"] and shared["description"] == "the site's"


# ----- job inputs and projects ------------------------------------------------------------------


def test_jobs_mount_versions_and_outputs_and_projects_say_who_used_what(api, fetch):
    assert api("POST", "datasets", body={"name": "shapes", "folder": "shapes", "project": "vision"})[0] == 201
    status, train = api("POST", "jobs", body={
        "template": "python-script", "name": "train", "params": {"script": "reader.py"}, "project": "vision",
        "inputs": [{"dataset": "shapes", "version": 1, "as": "data"}],
    })
    assert status == 201, train
    conforms(train, "Job")
    assert train["project"] == "vision" and train["inputs"][0]["as"] == "data"
    assert wait_status(api, train["id"])["status"] == "completed"
    log = api("GET", "jobs", train["id"], "log")[1]["text"]
    assert "saw data/labels.csv" in log and "saw data/circle/a.png" in log

    status, evaluate = api("POST", "jobs", body={
        "template": "python-script", "name": "evaluate", "params": {"script": "reader.py"}, "project": "vision",
        "inputs": [{"job": train["id"], "as": "model"}, {"dataset": "shapes"}],
    })
    assert status == 201, evaluate
    assert [(i["as"], i.get("job"), i.get("job_name")) for i in evaluate["inputs"]][0] == (
        "model", train["id"], "train")
    assert wait_status(api, evaluate["id"])["status"] == "completed"
    assert "saw model/model.txt b'weights'" in api("GET", "jobs", evaluate["id"], "log")[1]["text"]
    assert api("POST", "jobs", body={"template": "python-script", "name": "other",
                                     "params": {"script": "src/hello.py"}})[0] == 201

    status, page = api("GET", "jobs", project="vision")
    assert status == 200 and {j["id"] for j in page["jobs"]} == {train["id"], evaluate["id"]}
    assert api("GET", "jobs", project="default")[1]["total"] == 1
    assert api("GET", "jobs", project="a b")[1]["field"] == "project"
    assert api("GET", "experiments", project="vision") == (200, {"experiments": [], "total": 0})
    assert api("GET", "experiments", project="a/b")[1]["field"] == "project"

    status, projects = api("GET", "projects")
    assert status == 200
    jsonschema.validate(projects, documented("/projects"))
    assert projects["projects"] == [{"name": "default", "jobs": 1, "experiments": 0, "datasets": 0},
                                    {"name": "vision", "jobs": 2, "experiments": 0, "datasets": 1}]
    status, vision = api("GET", "projects", "vision")
    assert status == 200
    jsonschema.validate(vision, {**documented("/projects/{name}"), **openapi_document()})
    used_by = {j["name"]: j["used_by"] for j in vision["jobs"]}
    assert used_by == {"train": [evaluate["id"]], "evaluate": []}
    assert [d["name"] for d in vision["datasets"]] == ["shapes"]
    assert api("GET", "projects", "nope")[1]["field"] == "name" and api("GET", "projects", "nope")[0] == 404
    assert api("GET", "projects", "a-b")[0] == 400
    assert api("GET", "projects", "default")[0] == 200
    assert {u["id"] for u in api("GET", "datasets", "shapes", "1")[1]["used_by"]} == {train["id"], evaluate["id"]}


def test_bad_inputs_are_refused_naming_the_entry(api):
    assert api("POST", "datasets", body={"name": "shapes", "folder": "shapes"})[0] == 201
    hello = {"template": "python-script", "name": "x", "params": {"script": "src/hello.py"}}
    for inputs, field in [
        ([{"dataset": "nope"}], "inputs.0.dataset"),
        ([{"dataset": "shapes", "version": 9}], "inputs.0.version"),
        ([{"dataset": "shapes", "as": "../etc"}], "inputs.0.as"),
        ([{"dataset": "shapes"}, {"dataset": "shapes"}], "inputs.1.as"),
        ([{"job": "20000101-000000-000000"}], "inputs.0.job"),
        ([{"dataset": "shapes", "path": "/etc"}], "inputs.0.path"),
        ("shapes", "inputs"),
        ([{"dataset": "shapes"}] * 17, "inputs"),
    ]:
        status, body = api("POST", "jobs", body={**hello, "inputs": inputs})
        assert (status, body["field"]) == (400, field), (inputs, body)
    assert api("GET", "jobs")[1]["total"] == 0


# ----- the document -----------------------------------------------------------------------------


def test_every_route_is_in_the_openapi_document(api):
    """Each handler's URL pattern, its groups as {parameters}, is a documented path (and the other way round)."""
    routes = {re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern[len("/base"):]) for pattern, _ in handlers("/base")}
    status, doc = api("GET", "openapi.json")
    assert status == 200 and set(doc["paths"]) == routes
    assert {"/datasets", "/datasets/{name}/{version}/files/{path}", "/projects/{name}"} <= routes
