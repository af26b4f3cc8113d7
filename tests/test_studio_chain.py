"""AI Studio's whole chain through the REST API of a real jupyter server, on the local backend and on Slurm.

Generated shape pictures (no class folders) are frozen as a labelling; the user's real Label Studio is
opened through the server and labelled through Label Studio's own API as the editor's clicks do; the
labels are exported as a dataset version (split by seed); a grid of two trials trains on it; the best
trial is validated on the version's val/ split (a report with pictures); it is registered in the model
registry and published to a local bare git repository, which is cloned and read. The refusals of the
issue's bad inputs are checked on the same server, and so is that a failed push publishes nothing.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import requests
from jupyter_server_process import JupyterServer
from label_studio_helpers import annotate, need_label_studio
from experiment_helpers import wait_for
from studio_helpers import label_studio_of, unlabelled_detection, unlabelled_shapes

TRIAL_PARAMS = {
    "classification": {"epochs": 2, "image_size": 32, "batch_size": 16, "model_size": "small", "num_workers": 0},
    "detection": {"epochs": 2, "image_size": 64, "batch_size": 8, "num_workers": 0},
}


def call(server: JupyterServer, method: str, path: str, expect: int, timeout: float = 60, **kwargs):
    answer = requests.request(method, f"{server.api}/studio/{path}", headers=server.headers, timeout=timeout,
                              **kwargs)
    assert answer.status_code == expect, (method, path, answer.status_code, answer.text)
    return answer.json() if answer.content else None


def refused(server: JupyterServer, method: str, path: str, body: dict, status: int, field: str) -> str:
    answer = server.call(method, f"studio/{path}", json=body)
    assert answer.status_code == status, (path, body, answer.status_code, answer.text)
    assert answer.json()["field"] == field, answer.json()
    return answer.json()["error"]


def label_everything(server: JupyterServer, labelling: dict, truth: dict) -> None:
    opened = call(server, "POST", f"labellings/{labelling['id']}/open", 200, timeout=300)
    # its page, through the server's proxy, with the server's token: Label Studio's app, not its login
    page = requests.get(f"{server.url}{opened['url']}", headers=server.headers, timeout=60)
    assert page.status_code == 200 and "label" in page.text.lower(), page.text[:300]
    prefix = f"{labelling['id']}/images/"
    annotate(label_studio_of(server.root / "jobs"), opened["label_studio_project"],
             {prefix + path: label for path, label in truth.items()})
    shown = call(server, "GET", f"labellings/{labelling['id']}", 200)
    assert shown["labelled"] == len(truth) == shown["images"]


def wait_experiment(server: JupyterServer, experiment_id: str, timeout: float) -> dict:
    def ended():
        experiment = server.call("GET", f"experiments/{experiment_id}").json()
        return experiment if experiment["status"] != "running" else None

    experiment = wait_for(f"experiment {experiment_id}", ended, timeout, interval=2)
    assert experiment["status"] == "completed", json.dumps(experiment)[:2000]
    return experiment


def run_chain(server: JupyterServer, kind: str, truth: dict, images: str, classes: list[str], name: str,
              timeout: float) -> dict:
    labelling = call(server, "POST", "labellings", 201, json={
        "name": name, "kind": kind, "classes": classes, "images": images, "project": "studio"})
    assert labelling["images"] == len(truth) and labelling["labelled"] == 0
    label_everything(server, labelling, truth)

    version = call(server, "POST", f"labellings/{labelling['id']}/export", 201,
                   json={"dataset": name, "val_fraction": 0.25, "seed": 7})
    files = Path(version["path"])
    assert version["labelling"]["id"] == labelling["id"] and version["labelling"]["seed"] == 7
    if kind == "classification":
        val = {p.name for p in (files / "val").rglob("*.png")}
        train = {p.name for p in (files / "train").rglob("*.png")}
        for picture in (files / "val").rglob("*.png"):  # each in its class's folder, as labelled
            original = picture.name.replace("__", "/")
            assert truth[original] == picture.parent.name
        assert len(val) + len(train) == len(truth) and not val & train
        assert {p.parent.name for p in (files / "val").rglob("*.png")} == set(classes)  # stratified
    else:
        assert (files / "classes.txt").read_text().split() == classes
        val = {p.name for p in (files / "images" / "val").iterdir()}
        assert len(val) + len(list((files / "images" / "train").iterdir())) == len(truth)
        one = next((files / "labels" / "val").iterdir())
        assert len(one.read_text().split("\n")) - 1 == len(truth[one.stem + ".png"])
    again = call(server, "POST", f"labellings/{labelling['id']}/export", 201,
                 json={"dataset": name, "val_fraction": 0.25, "seed": 7})
    assert again["version"] == version["version"] + 1 and again["digest"] == version["digest"]  # the same split

    experiment = call(server, "POST", "experiments", 201, json={
        "dataset": f"{name}:{version['version']}", "params": TRIAL_PARAMS[kind],
        "search": {"learning_rate": [0.001, 0.003]}})
    assert experiment["searcher"] == "grid" and experiment["template"].endswith("-train")
    experiment = wait_experiment(server, experiment["id"], timeout)
    assert experiment["counts"]["completed"] == 2
    best = experiment["best"]["job_id"]

    validation = call(server, "POST", "validations", 201, json={"job": best})
    assert validation["dataset"] == {"name": name, "version": version["version"]}

    def done():
        found = call(server, "GET", f"validations/{validation['id']}", 200)
        return found if found["status"] != "running" else None

    validation = wait_for("the validation", done, timeout, interval=2)
    assert validation["status"] == "done", validation
    report = validation["report"]
    report_md = Path(report["folder"]) / "report.md"
    assert report_md.is_file() and list(Path(report["folder"]).rglob("*.png"))
    if kind == "classification":
        assert 0 <= report["accuracy"] <= 1 and set(report["classes"]) <= set(classes)
    else:
        assert 0 <= report["map50"] <= 1

    registered = call(server, "POST", "models", 201, json={"name": f"{name}_model", "job": best})
    assert registered["version"] == 1 and registered["validation"] == validation["id"]
    assert registered["dataset"] == {"name": name, "version": version["version"]}
    assert registered["published"] is None

    bare = server.workspace / f"{name}.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    published = call(server, "POST", f"models/{name}_model/1/publish", 200, json={"repository": f"file://{bare}"})
    assert published["published"]["branch"] == "main" and published["published"]["tag"] == f"{name}_model-v1"
    clone = server.root / f"{name}-clone"
    subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True)
    card = (clone / "README.md").read_text()
    assert f"# {name}_model, version 1" in card and f"`{name}:{version['version']}`" in card
    assert (clone / "model.pt").read_bytes() == Path(registered["model_file"]).read_bytes()
    assert (clone / "report" / "report.md").is_file()
    assert json.loads((clone / "model.json").read_text())["job"] == best
    head = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert head.strip() == published["published"]["commit"]

    chains = call(server, "GET", "chains", 200, params={"project": "studio"})["chains"]
    chain = next(c for c in chains if c["labelling"]["id"] == labelling["id"])
    assert [s["step"] for s in chain["steps"]] == ["label", "export", "train", "validate", "register", "publish"]
    assert [s["state"] for s in chain["steps"]] == ["done"] * 6, chain["steps"]
    return {"labelling": labelling, "version": again, "best": best, "bare": bare}


@pytest.fixture(scope="module")
def local_server(tmp_path_factory):
    need_label_studio()
    server = JupyterServer(tmp_path_factory.mktemp("studio-local")).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def classification_chain(local_server):
    truth = unlabelled_shapes(local_server.workspace, per_class=12)
    return run_chain(local_server, "classification", truth, "unlabelled", ["circle", "square", "triangle"],
                     "shapes_labelled", timeout=300)


def test_classification_chain_on_the_local_backend(classification_chain):
    assert classification_chain["version"]["labelling"]["kind"] == "classification"


def test_detection_chain_on_the_local_backend(local_server):
    truth = unlabelled_detection(local_server.workspace, count=16)
    run_chain(local_server, "detection", truth, "unlabelled-boxes", ["circle", "square", "triangle"], "boxes",
              timeout=400)


@pytest.mark.slurm
def test_classification_chain_on_slurm(slurm, tmp_path_factory):
    need_label_studio()
    server = JupyterServer(tmp_path_factory.mktemp("studio-slurm"), backend="slurm", poll_interval=0.5).start()
    try:
        truth = unlabelled_shapes(server.workspace, per_class=8)
        run_chain(server, "classification", truth, "unlabelled", ["circle", "square", "triangle"], "shapes_slurm",
                  timeout=400)
    finally:
        server.close()


def test_bad_input_is_refused_naming_the_field(local_server, classification_chain, tmp_path):
    s = local_server
    (s.workspace / "empty").mkdir(exist_ok=True)
    base = {"name": "x", "kind": "classification", "classes": ["a", "b"], "images": "unlabelled"}
    assert "two or more" in refused(s, "POST", "labellings", {**base, "classes": ["a"]}, 400, "classes")
    refused(s, "POST", "labellings", {**base, "classes": ["a", "a"]}, 400, "classes")
    assert "no pictures" in refused(s, "POST", "labellings", {**base, "images": "empty"}, 400, "images")
    refused(s, "POST", "labellings", {**base, "images": "/etc"}, 400, "images")
    refused(s, "POST", "labellings", {**base, "kind": "segmentation"}, 400, "kind")
    labelling = classification_chain["labelling"]["id"]
    for fraction in (0, 1, 1.5, "half"):
        refused(s, "POST", f"labellings/{labelling}/export", {"dataset": "d", "val_fraction": fraction}, 400,
                "val_fraction")
    short = call(s, "POST", "labellings", 201, json=base)  # too short a name for a Label Studio title: opens
    assert call(s, "POST", f"labellings/{short['id']}/open", 200, timeout=120)["url"]
    fresh = call(s, "POST", "labellings", 201, json={**base, "name": "never_labelled"})
    assert "label" in refused(s, "POST", f"labellings/{fresh['id']}/export", {"dataset": "d"}, 409, "labelling")
    refused(s, "POST", "models", {"name": "m", "job": "20250101-000000-abcdef"}, 404, "job")
    refused(s, "POST", "validations", {"job": "20250101-000000-abcdef"}, 404, "job")
    refused(s, "POST", "experiments", {"dataset": "nothing_here:1"}, 404, "dataset")

    # a failed push leaves the version unpublished; a scheme other than https/ssh/file is refused first
    best = classification_chain["best"]
    version = call(s, "POST", "models", 201, json={"name": "second", "job": best})
    for url, status in (("git://example.org/x.git", 400), ("http://example.org/x.git", 400),
                        ("ext::sh -c touch% /tmp/pwned", 400), ("file:///etc", 400),
                        (f"file://{s.workspace / 'empty'}", 502)):
        refused(s, "POST", f"models/second/{version['version']}/publish", {"repository": url}, status, "repository")
    assert call(s, "GET", f"models/second/{version['version']}", 200)["published"] is None
    assert not Path("/tmp/pwned").exists()
    # the same tag twice: refused, and the first publication stands
    refused(s, "POST", "models/shapes_labelled_model/1/publish",
            {"repository": f"file://{classification_chain['bare']}"}, 409, "repository")
    assert call(s, "GET", "models/shapes_labelled_model/1", 200)["published"] is not None
