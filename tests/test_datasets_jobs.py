"""Datasets and earlier jobs' outputs as the inputs of real jobs, on the local backend, in-process.

The flow of issue 15: a dataset, its version 2 with one changed file, a job that
mounts version 1 and sees the old file, deleting a version a running job uses
(refused), a training job's output as an inference job's ``model=job:<id>``, and
the records of both. Whether a write into ``input/`` fails is a matter of
permissions, which root ignores: tests/test_datasets_accounts.py runs the same
flow as an ordinary Unix account (local and Slurm), where the write must fail.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from clusterlab_server.demo_data import shapes
from clusterlab_server.experiments.service import ExperimentService
from clusterlab_server.projects import ProjectService
from clusterlab_server.service import JobError
from template_jobs import make_service, run, wait_final

FAST = {"epochs": 2, "image_size": 32, "batch_size": 16, "seed": 0}
PROFILE = "cpu-small"

# reads a file of its input, tries to change the input, and says what it saw
PROBE = """\
import hashlib, json, os, pathlib, sys, time
inputs = pathlib.Path(os.environ["CLUSTERLAB_INPUT"])
seen = {"cwd_sees_input": pathlib.Path("../input").resolve() == inputs.resolve()}
target = inputs / "shapes" / sys.argv[1]
seen["sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
for name, attempt in [("overwrite", lambda: target.write_bytes(b"x")),
                      ("new_file", lambda: (inputs / "shapes" / "new.txt").write_text("x")),
                      ("new_input", lambda: (inputs / "mine").mkdir())]:
    if os.geteuid() == 0:  # permissions do not stop root: it would change the version
        seen[name] = "not tried as root"
        continue
    try:
        attempt()
        seen[name] = "written"
    except OSError as e:
        seen[name] = type(e).__name__
pathlib.Path("seen.json").write_text(json.dumps(seen))
time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0)
"""


def store_bytes(root: Path) -> int:
    """Disk the dataset store takes, in allocated blocks, each hard-linked file counted once."""
    seen, total = set(), 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            info = os.lstat(os.path.join(dirpath, name))
            if info.st_ino not in seen:
                seen.add(info.st_ino)
                total += info.st_blocks * 512
    return total


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets-jobs")
    workspace = root / "workspace"
    shapes(workspace / "shapes", per_class=12, val_per_class=4, size=32)
    (workspace / "probe.py").write_text(PROBE)
    service = make_service(root, workspace)
    return service, workspace


def test_a_job_mounts_the_version_it_names_and_the_record_says_which(lab):
    service, workspace = lab
    first = service.datasets.create({"name": "shapes", "folder": "shapes", "description": "demo shapes"})
    changed = workspace / "shapes" / "train" / "circle" / "circle_0000.png"
    old = hashlib.sha256(changed.read_bytes()).hexdigest()
    before = store_bytes(service.settings.datasets_root)
    changed.write_bytes((workspace / "shapes" / "train" / "square" / "square_0001.png").read_bytes() + b"\0" * 4096)
    second = service.datasets.create({"name": "shapes", "folder": "shapes"})
    grown = store_bytes(service.settings.datasets_root) - before
    assert (first["version"], second["version"]) == (1, 2) and second["files"] == first["files"]
    assert first["digest"] != second["digest"]
    # version 2 stored the one changed file anew; besides it only its folders (of links) and its manifest
    assert second["new_bytes"] == changed.stat().st_size
    version = Path(second["path"]).parent
    folders = sum(1 for p in version.rglob("*") if p.is_dir()) + 1
    manifest = (version / "manifest.json").stat().st_blocks * 512
    # (slack: the stat cache and a folder may each take a block more, as the file system allocates)
    assert grown <= changed.stat().st_blocks * 512 + folders * 4096 + manifest + 3 * 4096, (grown, folders, manifest)

    job = service.submit({"template": "python-script", "name": "probe", "params": {
        "script": "probe.py", "args": ["train/circle/circle_0000.png"]},
        "inputs": [{"dataset": "shapes", "version": 1}]})
    job = wait_final(service, job.id)
    assert job.status == "completed", service.log(job.id)["text"]
    seen = json.loads((Path(job.folder) / "output" / "seen.json").read_text())
    assert seen["sha256"] == old and seen["cwd_sees_input"]  # version 1's file, at ../input/shapes/
    assert job.inputs[0]["dataset"] == "shapes" and job.inputs[0]["version"] == 1
    record = json.loads((Path(job.folder) / "job.json").read_text())
    assert record["inputs"][0]["digest"] == first["digest"] and record["inputs"][0]["as"] == "shapes"
    if os.geteuid() != 0:  # root ignores permissions: test_datasets_accounts.py asks as an ordinary account
        assert seen["overwrite"] == seen["new_file"] == seen["new_input"] == "PermissionError"
    assert hashlib.sha256((Path(first["path"]) / "train/circle/circle_0000.png").read_bytes()).hexdigest() == old


def test_a_version_a_running_job_uses_cannot_be_deleted(lab):
    service, _ = lab
    job = service.submit({"template": "python-script", "name": "holds_v1", "params": {
        "script": "probe.py", "args": ["train/circle/circle_0001.png", "60"]},
        "inputs": [{"dataset": "shapes", "version": 1, "as": "shapes"}]})
    with pytest.raises(JobError) as refused:
        service.datasets.delete("shapes", 1)
    assert refused.value.status == 409 and job.id in refused.value.message
    assert service.datasets.version("shapes", 1)["version"] == 1  # still there, whole
    service.cancel(job.id)
    assert job.id in [used["id"] for used in service.datasets.version("shapes", 1)["used_by"]]


def test_a_training_jobs_output_is_an_inference_jobs_model_by_reference(lab):
    service, _ = lab
    train = run(service, "image-classification-train", {**FAST, "dataset": "shapes"}, name="train_1",
                profile=PROFILE, project="shapes_study")
    assert train.status == "completed", service.log(train.id)["text"][-2000:]
    assert train.params["dataset"] == "shapes:2"  # "shapes" meant its latest: pinned, so a rerun sees the same
    assert [(i["dataset"], i["version"], i["param"]) for i in train.inputs] == [("shapes", 2, "dataset")]
    params_seen = json.loads((Path(train.folder) / "params.json").read_text())
    assert params_seen["dataset"] == str(Path(train.folder) / "input" / "dataset")

    infer = run(service, "image-classification-infer", {"model": f"job:{train.id}", "input": "shapes:2"},
                name="infer_1", profile=PROFILE, project="shapes_study")
    assert infer.status == "completed", service.log(infer.id)["text"][-2000:]
    predictions = (Path(infer.folder) / "output" / "predictions.csv").read_text().splitlines()
    assert len(predictions) - 1 == service.datasets.version("shapes", 2)["files"]
    model_input = next(i for i in infer.inputs if i["as"] == "model")
    assert model_input["job"] == train.id and model_input["job_name"] == "train_1"
    assert model_input["digest"].startswith("sha256:") and model_input["files"] >= 1
    record = json.loads((Path(infer.folder) / "job.json").read_text())
    assert {i["as"]: i.get("job") or f"{i['dataset']}:{i['version']}" for i in record["inputs"]} == {
        "model": train.id, "input": "shapes:2"}

    # the project's page follows the output from the one job into the other
    page = ProjectService(service, ExperimentService(service)).get("shapes_study")
    by_id = {job["id"]: job for job in page["jobs"]}
    assert set(by_id) == {train.id, infer.id} and by_id[train.id]["used_by"] == [infer.id]
    assert [job.id for job in service.list(project="shapes_study")[0]] == [infer.id, train.id]

    # a rerun sees the same versions, even after a newer one
    service.datasets.create({"name": "shapes", "folder": "shapes"})
    again = service.rerun(infer.id, {})
    assert {(i["as"], i.get("version"), i["digest"]) for i in again.inputs} == {
        (i["as"], i.get("version"), i["digest"]) for i in infer.inputs}
    service.cancel(again.id)


def test_inputs_that_cannot_be_mounted_are_refused_naming_the_field_and_leave_no_job(lab):
    service, workspace = lab
    before = sorted(p.name for p in service.settings.jobs_root.iterdir())
    script = {"script": "probe.py", "args": ["x"]}
    cases = [
        ({"inputs": [{"dataset": "nothing_here"}]}, "inputs.0.dataset"),
        ({"inputs": [{"dataset": "shapes", "version": 99}]}, "inputs.0.version"),
        ({"inputs": [{"dataset": "shapes", "as": "../escape"}]}, "inputs.0.as"),
        ({"inputs": [{"dataset": "shapes", "as": "a/b"}]}, "inputs.0.as"),
        ({"inputs": [{"job": "20990101-000000-abcdef"}]}, "inputs.0.job"),
        ({"inputs": [{"dataset": "shapes"}, {"dataset": "shapes", "version": 1}]}, "inputs.1.as"),
        ({"inputs": "shapes"}, "inputs"),
    ]
    for extra, field in cases:
        with pytest.raises(JobError) as refused:
            service.submit({"template": "python-script", "name": "bad", "params": script, **extra})
        assert refused.value.status == 400 and refused.value.field == field, (extra, refused.value.to_json())
    for params, field in [({"dataset": "nothing_here:3"}, "params.dataset"),
                          ({"dataset": "job:20990101-000000-abcdef"}, "params.dataset")]:
        with pytest.raises(JobError) as refused:
            service.submit({"template": "image-classification-train", "name": "bad", "params": {**FAST, **params}})
        assert refused.value.field == field, refused.value.to_json()
    assert sorted(p.name for p in service.settings.jobs_root.iterdir()) == before


def test_a_job_that_has_not_ended_has_no_output_to_mount(lab):
    service, _ = lab
    running = service.submit({"template": "python-script", "name": "slow", "params": {
        "script": "probe.py", "args": ["train/circle/circle_0001.png", "60"]},
        "inputs": [{"dataset": "shapes", "version": 2, "as": "shapes"}]})
    with pytest.raises(JobError) as refused:
        service.submit({"template": "python-script", "name": "early", "params": {"script": "probe.py"},
                        "inputs": [{"job": running.id}]})
    assert refused.value.field == "inputs.0.job" and "ended" in refused.value.message
    service.cancel(running.id)


def test_an_experiments_trials_all_mount_the_version_pinned_when_it_was_created(lab):
    service, _ = lab
    experiments = ExperimentService(service)
    spec = experiments.validate({
        "template": "image-classification-train", "name": "pinned", "params": {**FAST, "dataset": "shapes"},
        "search": {"learning_rate": [0.001, 0.01]}, "searcher": "grid", "metric": "val_accuracy",
        "inputs": [{"dataset": "shapes", "version": 1, "as": "extra"}], "project": "shapes_study",
    })
    latest = service.datasets.get("shapes")["latest"]
    assert spec.params["dataset"] == f"shapes:{latest}" and spec.project == "shapes_study"
    assert spec.inputs == [{"dataset": "shapes", "version": 1, "as": "extra"}]
    assert {(u["as"], u["version"]) for u in spec.uses} == {("extra", 1), ("dataset", latest)}
